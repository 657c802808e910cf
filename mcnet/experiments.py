"""The experiments behind ``mcnet train / compare / ablate / curvature``, as functions.

A *problem* is a model, a loss and the data it trains on, named by the command line's
flags (`ProblemSpec`). `load_problem` reads the data once; `Problem.build` then makes a
fresh, seeded model for every run, so that runs of one comparison start from the same
parameters. `run` trains one solver and returns the JSON-ready record. `compare`,
`ablate` and their tables and figures are built from such records only, so a summary can
be redrawn from the JSON files alone.

Data decisions (also in ``mcnet train --help``):

- ``digits`` (1797 8x8 images shipped in scikit-learn) has no test split: the last
  ``DIGITS_HOLDOUT`` = 297 images are the test set, the first 1500 the training set.
- ``--holdout N`` does the same for any data set: the last N examples of the training split
  become the test set. This is how MNIST is used when only its 10k test split is on disk
  (``--train-split test --holdout 2000``): the JSON then says so under ``data``.
- LeNet-5 and the autoencoder take 28x28 images. The 8x8 digits are enlarged to 24x24 by
  repeating each pixel 3x3 and padded by 2 zero pixels on each side, as MNIST centres its
  20x20 digits in 28x28; colour images (CIFAR-10, SVHN) and feature vectors (LIBSVM) are
  refused for them. VGG-11 takes 3x32x32 images only.
- ``--subset N`` keeps the first N training examples, ``--test-subset N`` the first N test
  examples (after the hold-out, so the two never overlap).
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import inspect
import io
import json
import math
import os
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numba
import numpy as np

import mcnet
from mcnet import datasets, nn
from mcnet.errors import TrainingError
from mcnet.nn import Objective, models
from mcnet.nn.vector import parameter_count, parameters_to_vector
from mcnet.solvers import SOLVERS, make
from mcnet.training import fit
from mcnet.training.history import History, write_atomic

MODELS = ("lenet5", "autoencoder", "vgg11", "mlp", "logistic_regression", "linear_svm")
DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10", "svhn", "libsvm")
# "none" is the identity; models.ACTIVATIONS has no entry for it, so `build_model` swaps
# the layers of a sigmoid network for Identity (same parameters, same layout).
ACTIVATIONS = (*sorted(models.ACTIVATIONS), "none")
DEFAULT_ACTIVATION = {"lenet5": "sigmoid", "autoencoder": "sigmoid", "vgg11": "elu",
                      "mlp": "sigmoid"}
DTYPES = ("float32", "float64")
DEVICES = ("cpu", "cuda")
DIGITS_HOLDOUT = 297
DEFAULT_LRS = (1e-1, 1e-2, 1e-3, 1e-4)
# L-BFGS takes an lr too, but it is the first trial of its line search (1 is its natural
# value), not a step size to tune; every other solver with an lr is run over the grid.
NOT_ON_LR_GRID = frozenset({"lbfgs"})

ETAS = (0.001, 0.01, 0.05, 0.1, 0.2, 0.5)
# The "krylov" study: Algorithm 1 as this project reads it, each NUMERICS.md decision as
# printed instead, the warm starts, and the loop's stopping rules.
KRYLOV_SETTINGS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("Algorithm 1 (defaults)", {}),
    ("alpha = ||r|| / kappa as printed", {"cg_alpha": "paper"}),
    ("post-screening (1 + cos) dw as printed", {"post_screening": "paper"}),
    ("flat curvature 0.01 ||p|| as printed", {"flat_curvature": "paper"}),
    ("warm start = direction", {"warm_start": "direction"}),
    ("no warm start", {"warm_start": "none"}),
    ("CG through negative curvature", {"early_stop": False}),
    ("truncated Newton (forcing term)", {"krylov_stop": "forcing"}),
    ("max_krylov 5", {"max_krylov": 5}),
    ("Gauss-Newton G + lambda I", {"curvature": "gauss-newton", "damping": 1e-3}),
    ("Gauss-Newton, eta 0.2 (newton-krylov-gn)",
     {"curvature": "gauss-newton", "damping": 1e-3, "eta": 0.2}),
    ("newton-krylov-gn, curvature on a quarter of the batch",
     {"curvature": "gauss-newton", "damping": 1e-3, "eta": 0.2, "curvature_fraction": 0.25}),
)
BATCH_SIZES = (32, 128, 512)
ABLATION_ACTIVATIONS = ("sigmoid", "relu", "sin", "none")
STUDIES = ("eta", "step", "batch", "activation", "krylov")


class ProblemError(ValueError):
    """A problem the flags describe cannot be built; ``flag`` names the flag to blame."""

    def __init__(self, flag: str, message: str) -> None:
        super().__init__(f"{flag}: {message}")
        self.flag = flag


# --- solvers ----------------------------------------------------------------------------------
def solver_parameters(name: str) -> dict[str, inspect.Parameter]:
    """The constructor parameters of solver ``name``."""
    parameters = inspect.signature(SOLVERS[name].__init__).parameters
    return {k: p for k, p in parameters.items() if k != "self"}


def takes_lr(name: str) -> bool:
    return "lr" in solver_parameters(name)


def takes_eta(name: str) -> bool:
    """Whether the solver has Newton-Krylov's Taylor ratio (``--eta``)."""
    return "eta" in solver_parameters(name)


def on_lr_grid(name: str) -> bool:
    """Whether `compare` tunes this solver's learning rate over the grid."""
    return takes_lr(name) and name not in NOT_ON_LR_GRID


def is_first_order(name: str) -> bool:
    """The baselines NK is measured against: the solvers on the lr grid (SGD, Adam,
    AdaGrad, RMSprop and Shampoo, the one preconditioned method among them)."""
    return on_lr_grid(name)


def solver_options(name: str, lr: float | None = None, eta: float | None = None,
                   extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The options for `mcnet.solvers.make`: ``lr`` and ``eta`` only where the solver takes
    them; SGD has no default lr, so it gets 1e-2 unless one is given."""
    options = dict(extra or {})
    parameters = solver_parameters(name)
    if lr is not None and "lr" in parameters:
        options["lr"] = lr
    elif "lr" in parameters and parameters["lr"].default is inspect.Parameter.empty:
        options.setdefault("lr", 1e-2)
    if eta is not None and "eta" in parameters:
        options["eta"] = eta
    return options


# --- problems ---------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ProblemSpec:
    """What to train on: the model and data flags of the command line."""

    model: str = "mlp"
    activation: str | None = None  # None: the model's default (DEFAULT_ACTIVATION)
    hidden: tuple[int, ...] = (32,)  # mlp hidden layer sizes
    dataset: str = "digits"
    data_dir: str | None = None
    train_file: str | None = None  # libsvm
    test_file: str | None = None  # libsvm
    train_split: str = "train"
    holdout: int | None = None  # None: 297 for digits, else 0
    subset: int | None = None
    test_subset: int | None = None
    dtype: str = "float64"
    device: str = "cpu"

    def resolved_activation(self) -> str | None:
        return self.activation if self.activation is not None else DEFAULT_ACTIVATION.get(
            self.model)


@dataclasses.dataclass
class Problem:
    """Loaded data plus the recipe for the model: `build` gives a fresh seeded one."""

    spec: ProblemSpec
    train: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray] | None
    n_features: int
    n_classes: int
    description: dict[str, Any]
    warm_up_seconds: float | None = None  # set by `warm_up`, once per process and problem

    def build(self, seed: int, activation: str | None = None) -> tuple[nn.Module, nn.Loss]:
        """(module, loss) with parameters drawn from ``seed`` (the same seed, the same start)."""
        return build_model(self.spec, self.n_features, self.n_classes, seed, activation)


def check_device(device: str) -> None:
    """Fail early, with what to install, when CUDA is asked for and cannot be had."""
    if device != "cuda":
        return
    try:
        import cupy
    except ImportError:
        raise ProblemError("--device", "cuda needs CuPy, which is not installed "
                                       "(pip install 'mcnet[cuda]'); use --device cpu") from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDA driver errors have no common base class
        raise ProblemError("--device", f"cuda: CuPy finds no usable GPU ({exc}); "
                                       "use --device cpu") from None
    if count < 1:
        raise ProblemError("--device", "cuda: no GPU found; use --device cpu")


def load_problem(spec: ProblemSpec) -> Problem:
    """Read the data of ``spec``, split and adapt it for the model; ProblemError (naming a
    flag) when the combination cannot work, DatasetNotFoundError when files are missing."""
    check_device(spec.device)
    dtype = np.dtype(spec.dtype)
    inputs, targets, test, source = _read(spec, dtype)
    holdout = spec.holdout if spec.holdout is not None else (
        DIGITS_HOLDOUT if spec.dataset == "digits" else 0)
    described: dict[str, Any] = {"dataset": spec.dataset, "train_split": spec.train_split}
    if holdout:
        if holdout >= len(inputs):
            raise ProblemError("--holdout", f"{holdout} leaves no training data ({source} has "
                                            f"{len(inputs)} examples)")
        test = (inputs[-holdout:], targets[-holdout:])
        inputs, targets = inputs[:-holdout], targets[:-holdout]
        described["test"] = (f"the last {holdout} examples of {source} (held out; "
                             f"examples {len(inputs)}..{len(inputs) + holdout - 1})")
    elif test is not None:
        kind = "test file" if spec.dataset == "libsvm" else "test split"
        described["test"] = f"{spec.dataset} {kind}"
    else:
        described["test"] = "none"
    if spec.subset is not None:
        if spec.subset > len(inputs):
            raise ProblemError("--subset", f"{spec.subset} is more than the {len(inputs)} "
                                           f"training examples of {source} (expected at most "
                                           f"{len(inputs)})")
        inputs, targets = inputs[: spec.subset], targets[: spec.subset]
    if spec.test_subset is not None:
        if test is None:
            raise ProblemError("--test-subset", f"there is no test data ({described['test']})")
        if spec.test_subset > len(test[0]):
            raise ProblemError("--test-subset", f"{spec.test_subset} is more than the "
                                                f"{len(test[0])} test examples (expected at "
                                                f"most {len(test[0])})")
        test = (test[0][: spec.test_subset], test[1][: spec.test_subset])
    described["train"] = f"the first {len(inputs)} examples of {source}"
    described["train_examples"] = len(inputs)
    described["test_examples"] = 0 if test is None else len(test[0])

    labels = targets if test is None else np.concatenate([targets, test[1]])
    n_classes = int(labels.max()) + 1 if labels.size else 1
    inputs, targets = adapt(spec, inputs, targets)
    if test is not None:
        test = adapt(spec, *test)
    described["input_shape"] = list(inputs.shape[1:])
    described["classes"] = n_classes
    if spec.model == "autoencoder":
        described["targets"] = "the inputs (flattened 784 pixels)"
    n_features = int(np.prod(inputs.shape[1:]))
    return Problem(spec, (inputs, targets), test, n_features, n_classes, described)


def _read(spec: ProblemSpec, dtype: np.dtype):
    """(train inputs, train targets, test pair or None, a name of the training source)."""
    if spec.dataset == "digits":
        if spec.train_split != "train":
            raise ProblemError("--train-split", "digits has one split only; use the default "
                                                "(the test set is its last 297 images)")
        x, y = datasets.digits(dtype=dtype)
        return x, y, None, "digits (1797 images)"
    if spec.dataset == "libsvm":
        if spec.train_file is None:
            raise ProblemError("--train-file", "--dataset libsvm needs --train-file PATH "
                                               "(a LIBSVM text file)")
        if spec.train_split != "train":
            raise ProblemError("--train-split", "libsvm reads --train-file; use --holdout N "
                                                "to test on its last N examples")
        x, y = _libsvm(spec.train_file, None, dtype, "--train-file")
        test = None
        if spec.test_file is not None:
            test = _libsvm(spec.test_file, x.shape[1], dtype, "--test-file",
                           like=spec.train_file)
        return x, y, test, os.path.basename(spec.train_file)
    if spec.train_file is not None or spec.test_file is not None:
        raise ProblemError("--train-file", "only --dataset libsvm reads files by name; use "
                                           "--data-dir for the image data sets")
    loader: Callable[..., tuple[np.ndarray, np.ndarray]] = getattr(datasets, spec.dataset)
    x, y = loader(spec.data_dir, spec.train_split, dtype=dtype)
    test = None
    if spec.train_split == "train" and not spec.holdout:
        test = loader(spec.data_dir, "test", dtype=dtype)
    return x, y, test, f"{spec.dataset} {spec.train_split} split"


def _libsvm(path: str, n_features: int | None, dtype: np.dtype, flag: str,
            like: str | None = None):
    if not os.path.isfile(path):
        raise ProblemError(flag, f"{path}: no such file")
    try:
        return datasets.libsvm(path, n_features, dtype=dtype, like=like)
    except ValueError as exc:
        raise ProblemError(flag, str(exc)) from None


def enlarge_digits(images: np.ndarray) -> np.ndarray:
    """8x8 digits as 28x28 images: each pixel repeated 3x3 (24x24), 2 zero pixels around."""
    big = images.repeat(3, axis=2).repeat(3, axis=3)
    return np.pad(big, ((0, 0), (0, 0), (2, 2), (2, 2)))


def adapt(spec: ProblemSpec, inputs: np.ndarray, targets: np.ndarray
          ) -> tuple[np.ndarray, np.ndarray]:
    """The data in the shape the model takes (see the module docstring)."""
    shape = tuple(inputs.shape[1:])
    if spec.model in ("lenet5", "autoencoder"):
        if shape == (1, 8, 8):
            inputs, shape = enlarge_digits(inputs), (1, 28, 28)
        if shape != (1, 28, 28):
            raise ProblemError("--model", f"{spec.model} takes 1x28x28 images; --dataset "
                                          f"{spec.dataset} gives {_shape_text(shape)} (use mlp, "
                                          "logistic_regression or linear_svm)")
        if spec.model == "autoencoder":
            flat = np.ascontiguousarray(inputs.reshape(len(inputs), -1))
            return flat, flat
        return inputs, targets
    if spec.model == "vgg11":
        if shape != (3, 32, 32):
            raise ProblemError("--model", f"vgg11 takes 3x32x32 images (cifar10, svhn); "
                                          f"--dataset {spec.dataset} gives {_shape_text(shape)}")
        return inputs, targets
    return np.ascontiguousarray(inputs.reshape(len(inputs), -1)), targets


def _shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape)) + (" images" if len(shape) == 3 else " features")


def build_model(spec: ProblemSpec, n_features: int, n_classes: int, seed: int,
                activation: str | None = None) -> tuple[nn.Module, nn.Loss]:
    """(module, loss) for ``spec``, initialised from ``seed``, in its dtype and device."""
    activation = activation if activation is not None else spec.resolved_activation()
    if spec.model in ("logistic_regression", "linear_svm") and activation is not None:
        raise ProblemError("--activation", f"{spec.model} is linear and has no activation")
    # "none": build with sigmoid layers, then put Identity in their places
    built = "sigmoid" if activation == "none" else activation
    nn.manual_seed(seed)
    loss: nn.Loss = nn.CrossEntropyLoss()
    if spec.model == "lenet5":
        module: nn.Module = models.lenet5(built)
    elif spec.model == "autoencoder":
        module = models.autoencoder(built)
    elif spec.model == "vgg11":
        module = models.VGG(models.VGG11_CONFIG, num_classes=n_classes, activation=built)
    elif spec.model == "mlp":
        module = models.mlp([n_features, *spec.hidden, n_classes], built)
    elif spec.model == "logistic_regression":
        module = models.logistic_regression(n_features, n_classes)
    elif spec.model == "linear_svm":
        module, loss = models.linear_svm(n_features, n_classes), nn.SquaredHingeLoss()
    else:
        raise ProblemError("--model", f"unknown model {spec.model!r} (expected one of "
                                      f"{', '.join(MODELS)})")
    if activation == "none":
        _replace(module, nn.Sigmoid, nn.Identity)
    if spec.model == "autoencoder":
        # squared error on pixels: the logits go through a sigmoid (models.autoencoder's doc)
        module, loss = nn.Sequential(module, nn.Sigmoid()), nn.MSELoss()
    if spec.dtype != "float64" or spec.device != "cpu":
        module.to(device=None if spec.device == "cpu" else spec.device,
                  dtype=np.dtype(spec.dtype))
    return module, loss


def _replace(module: nn.Module, kind: type, factory: Callable[[], nn.Module]) -> None:
    for name, child in list(module.named_children()):
        if isinstance(child, kind):
            setattr(module, name, factory())  # same key: the layer order is kept
        else:
            _replace(child, kind, factory)


# --- one run ----------------------------------------------------------------------------------
def warm_up(problem: Problem, batch_size: int, seed: int = 0) -> float:
    """One evaluation of each kind (real, complex, bicomplex, Gauss-Newton, and Gauss-Newton
    in float32) on a batch and one full-data gradient, on a throwaway model, before anything
    is timed; seconds spent.

    The first evaluation of each kind in a process compiles or loads the fused Numba
    kernels (about a second for the small MLP, measured): without this, whichever solver
    runs first in a comparison would pay it in its wall time.
    """
    if problem.warm_up_seconds is not None:
        return 0.0
    start = time.perf_counter()
    module, loss = problem.build(seed)
    objective = Objective(module, loss)
    w = parameters_to_vector(module)
    v = np.random.default_rng(seed).standard_normal(w.size).astype(w.dtype)
    inputs, targets = problem.train
    n = min(batch_size, len(inputs))
    batch = (inputs[:n], targets[:n])
    chunk = (inputs[:2048], targets[:2048])  # the Oracle's default chunk of full-data sums
    objective.value(w, batch)
    objective.value_and_grad(w, chunk)
    objective.value_grad_and_hvp(w, v, batch)
    objective.curvature(w, v, batch)
    objective.gauss_newton_product(w, v, batch)
    if w.dtype != np.float32:  # newton-krylov-fast's products run in float32
        Objective(module.to(dtype=np.float32), loss).gauss_newton_product(w, v, batch)
    problem.warm_up_seconds = time.perf_counter() - start
    return problem.warm_up_seconds


def versions() -> dict[str, str]:
    """The versions that decide a run's numbers."""
    try:
        mcnet_version = importlib.metadata.version("mcnet")
    except importlib.metadata.PackageNotFoundError:  # running from a source tree
        mcnet_version = mcnet.__version__
    found = {"mcnet": mcnet_version, "numpy": np.__version__, "numba": numba.__version__,
             "python": platform.python_version()}
    try:
        found["cupy"] = importlib.metadata.version("cupy-cuda12x")
    except importlib.metadata.PackageNotFoundError:
        pass
    return found


def run(problem: Problem, solver: str, options: dict[str, Any], epochs: int, batch_size: int,
        seed: int = 0, *, activation: str | None = None, checkpoint: str | None = None,
        resume: bool = False, progress: bool | None = None,
        extra: dict[str, Any] | None = None, **fit_options: Any) -> dict[str, Any]:
    """Train a fresh model with one solver; the record `History.to_json` writes, plus
    ``problem``, ``wall_time`` (seconds, evaluation included), ``failed`` (None or why).
    ``fit_options`` go to `mcnet.fit` (``scheduler``, ``workers``, ...)."""
    warm_up(problem, batch_size, seed)
    module, loss = problem.build(seed, activation)
    instance = make(solver, **options)
    # wall times mean little on a shared machine without the load they were taken under
    load_before = os.getloadavg()
    start = time.perf_counter()
    failed = None
    try:
        history = fit(module, loss, problem.train, instance, epochs, batch_size=batch_size,
                      seed=seed, test_data=problem.test, checkpoint=checkpoint, resume=resume,
                      progress=progress, **fit_options)
    except TrainingError as exc:
        # a diverged lr of a grid is a result, not a crash: recorded with an infinite loss
        failed = str(exc)
        history = History(solver=solver, config=instance.config())
    record = history.to_dict()
    record.update({
        "problem": {**dataclasses.asdict(problem.spec), **problem.description,
                    "activation": activation or problem.spec.resolved_activation(),
                    "parameters": parameter_count(module)},
        "epochs": epochs, "batch_size": batch_size, "seed": seed, "options": options,
        "wall_time": time.perf_counter() - start, "warm_up_seconds": problem.warm_up_seconds,
        "load_average": {"start": load_before, "end": os.getloadavg(),
                         "cpus": os.cpu_count()},
        "failed": failed, "versions": versions(),
        **(extra or {}),
    })
    # kept out of the JSON (keys starting with "_"): for --save-params and callers
    record["_history"] = history
    record["_params"] = parameters_to_vector(module)
    return record


def write_record(record: dict[str, Any], path: str | os.PathLike) -> None:
    """The run record as JSON, atomically (non-finite numbers as null)."""
    history: History = record["_history"]
    extra = {k: v for k, v in record.items() if not k.startswith("_")}
    history.to_json(path, **extra)


def final_loss(record: dict[str, Any]) -> float:
    """The last training loss, +inf for a failed or non-finite run (so it never wins)."""
    losses = record.get("train_loss") or []
    if record.get("failed") or len(losses) < record["epochs"] + 1:
        return math.inf
    value = losses[-1]
    return value if value is not None and math.isfinite(value) else math.inf


def measured_losses(record: dict[str, Any]) -> list[tuple[float, float]]:
    """(solver time, full training loss) of every measurement of a run record, in time
    order: the epoch ends (``epoch_time``, ``train_loss``) and, if the run had
    ``evaluate_every``, the measurements inside epochs (``interim_loss``); a diverged
    (None) loss as infinity."""
    points = [*zip(record["epoch_time"], record["train_loss"]),
              *((p["time"], p["train_loss"]) for p in record.get("interim_loss", ()))]
    return sorted(((time_, math.inf if loss is None else float(loss))
                   for time_, loss in points), key=lambda point: point[0])


def loss_at_time(record: dict[str, Any], t: float) -> float:
    """The training loss a run had *measured* by solver time ``t``: its loss at the last
    measurement (`measured_losses`) at or before t. Not interpolated: a run whose first
    measurement after the start comes after t is credited with its initial loss, not with a
    share of a decrease it had not made yet (a line from the start to the first epoch end
    flatters a run that leaves a plateau late in its epoch)."""
    points = measured_losses(record)
    reached = int(np.searchsorted([time_ for time_, _ in points], t, side="right")) - 1
    return points[max(reached, 0)][1]


def losses_at_equal_time(record: dict[str, Any], other: dict[str, Any]
                         ) -> tuple[float, float, float]:
    """(T, the two runs' training losses at T), T = the shorter of their total solver times."""
    t = min(record["epoch_time"][-1], other["epoch_time"][-1])
    return t, loss_at_time(record, t), loss_at_time(other, t)


def time_to_loss(record: dict[str, Any], target: float) -> float | None:
    """The solver time of the first measurement (`measured_losses`) whose training loss is
    at most ``target`` (as measured, not interpolated); None if none is."""
    for time_, loss in measured_losses(record):
        if loss <= target:
            return time_
    return None


# --- compare ----------------------------------------------------------------------------------
def compare(problem: Problem, solvers: Sequence[str], lrs: Sequence[float], epochs: int,
            batch_sizes: Sequence[int], seed: int = 0, eta: float | None = None,
            progress: bool | None = None, log: Callable[[str], None] | None = None,
            extra: dict[str, Any] | None = None, evaluate_every: int | None = None
            ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every solver on ``problem`` at every batch size, the lr-grid ones once per lr;
    (records, summary). Several batch sizes are the seed's protocol for LR and SVM (full
    batch, 1024, 128; the best kept), applied to every solver alike. ``evaluate_every``:
    `mcnet.fit`'s, for every run."""
    records = []
    n = len(problem.train[0])
    for name in solvers:
        grid: Sequence[float | None] = lrs if on_lr_grid(name) else [None]
        sizes = [n] if SOLVERS[name].full_batch else batch_sizes  # one step per epoch anyway
        for size in sizes:
            for lr in grid:
                options = solver_options(name, lr=lr, eta=eta)
                record = run(problem, name, options, epochs, size, seed, progress=progress,
                             evaluate_every=evaluate_every,
                             extra={**(extra or {}), "lr": options.get("lr"),
                                    "run_index": len(records),
                                    "batch_grid": len(batch_sizes) > 1,
                                    "full_batch": size == n or SOLVERS[name].full_batch})
                if log is not None:
                    log(f"{label(record)}: final training loss {fmt(final_loss(record))} in "
                        f"{record['wall_time']:.1f} s"
                        + (" (FAILED)" if record["failed"] else ""))
                records.append(record)
    return records, summarize(records)


def setting(record: dict[str, Any]) -> str:
    """The grid point of a run: ``lr=0.01``, ``b=1024``, ``lr=0.01 b=full`` or ``""``."""
    parts = []
    if record.get("lr") is not None and on_lr_grid(record["solver"]):
        parts.append(f"lr={record['lr']:g}")
    if record.get("batch_grid"):
        parts.append("b=" + batch_text(record))
    return " ".join(parts)


def batch_text(record: dict[str, Any]) -> str:
    return "full" if record.get("full_batch") else str(record["batch_size"])


def label(record: dict[str, Any]) -> str:
    """``adam lr=0.01``, ``newton-krylov b=1024`` or ``newton-krylov``."""
    return " ".join(filter(None, [record["solver"], setting(record)]))


def best_runs(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The run with the lowest final training loss per solver (the first on ties)."""
    best: dict[str, dict[str, Any]] = {}
    for record in records:
        name = record["solver"]
        if name not in best or final_loss(record) < final_loss(best[name]):
            best[name] = record
    return best


def summarize(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Final losses, best grid points and the ratios to the best first-order solver.

    Equal epochs: final training loss / the reference's final training loss (both ran the
    same epochs). Equal wall time: T = the shorter of the two runs' total solver times
    (``epoch_time[-1]``, evaluation excluded); each run's training loss as measured by T (at
    its last epoch end at or before T); the ratio of the two.
    A ratio below 1 means the solver is ahead.
    """
    best = best_runs(records)
    first_order = [r for n, r in best.items() if is_first_order(n)]
    reference = min(first_order, key=final_loss) if first_order else None
    if reference is not None and not math.isfinite(final_loss(reference)):
        reference = None
    rows = []
    for name, record in best.items():
        mine_all = [r for r in records if r["solver"] == name]
        grid = {setting(r): _finite_or_none(final_loss(r)) for r in mine_all}
        row: dict[str, Any] = {
            "solver": name, "lr": record.get("lr") if on_lr_grid(name) else None,
            "batch_size": record["batch_size"], "full_batch": bool(record.get("full_batch")),
            "final_loss": _finite_or_none(final_loss(record)),
            "final_test_loss": _last(record.get("test_loss")),
            "final_test_accuracy": _last(record.get("test_accuracy")),
            "solver_time": record["epoch_time"][-1] if record["epoch_time"] else None,
            "wall_time": record["wall_time"], "grid": grid if len(mine_all) > 1 else None,
            "failed": record["failed"],
        }
        if reference is not None and math.isfinite(final_loss(record)):
            ref_loss = final_loss(reference)
            t, mine, theirs = losses_at_equal_time(record, reference)
            row.update({
                "ratio_equal_epochs": final_loss(record) / ref_loss,
                "equal_time": t, "loss_at_equal_time": mine,
                "reference_loss_at_equal_time": theirs, "ratio_equal_time": mine / theirs,
                "time_to_reference_loss": time_to_loss(record, ref_loss),
                "reference_time": reference["epoch_time"][-1],
            })
        rows.append(row)
    return {
        "reference": None if reference is None else {
            "solver": reference["solver"], "lr": reference.get("lr"),
            "batch_size": reference["batch_size"]},
        "epochs": records[0]["epochs"] if records else None,
        "problem": records[0]["problem"] if records else None,
        "definitions": {
            "best": "each solver's grid point (lr, batch size) with the lowest final training "
                    "loss",
            "reference": "the first-order solver (lr grid) with the lowest final training loss",
            "ratio_equal_epochs": "final training loss / reference's final training loss",
            "ratio_equal_time": "training loss at T / reference's training loss at T, T = the "
                                "shorter of the two total solver times (evaluation excluded), "
                                "each loss as measured by T (the last epoch end at or before T)",
            "time_to_reference_loss": "solver time at which the training loss first reaches "
                                      "the reference's final training loss (at an epoch end); "
                                      "the reference needed reference_time",
        },
        "solvers": rows,
    }


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _last(values):
    return values[-1] if values else None


def fmt(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}g}"


def compare_markdown(summary: dict[str, Any]) -> str:
    """The summary as a Markdown table with its definitions."""
    ref = summary["reference"]
    ref_text = "none" if ref is None else ref["solver"] + "".join(
        [f" lr={ref['lr']:g}" if ref["lr"] is not None else "",
         f" batch {ref['batch_size']}"])
    lines = [
        f"Problem: {problem_text(summary['problem'])}; {summary['epochs']} epochs.",
        f"Reference (best first-order solver by final training loss): {ref_text}.",
        "",
        "| solver | best lr | batch | final train loss | test acc | solver time (s) | "
        "ratio, equal epochs | ratio, equal time (T s) | time to reference's final loss (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in summary["solvers"]:
        equal_time = "-" if "ratio_equal_time" not in row else (
            f"{row['ratio_equal_time']:.3g} ({row['equal_time']:.3g})")
        lr = "-" if row["lr"] is None else f"{row['lr']:g}"
        batch = "full" if row["full_batch"] else str(row["batch_size"])
        lines.append(
            f"| {row['solver']} | {lr} | {batch} | "
            f"{fmt(row['final_loss'])} | {fmt(row['final_test_accuracy'])} | "
            f"{fmt(row['solver_time'], 3)} | {fmt(row.get('ratio_equal_epochs'), 3)} | "
            f"{equal_time} | {fmt(row.get('time_to_reference_loss'), 3)} |")
    grids = [(row["solver"], row["grid"]) for row in summary["solvers"] if row["grid"]]
    if grids:
        lines += ["", "Final training loss at every grid point:", ""]
        for name, grid in grids:
            lines.append(f"- {name}: " + ", ".join(f"{point} {fmt(loss)}"
                                                   for point, loss in grid.items()))
    lines += ["", "Ratios below 1: the solver's training loss is lower than the reference's. "
              "Equal time: " + summary["definitions"]["ratio_equal_time"] + ". Time to the "
              "reference's final loss: '-' where the solver never reached it. Solver time "
              "excludes the per-epoch evaluation; the load average of the machine during each "
              "run is in its JSON."]
    return "\n".join(lines) + "\n"


def problem_text(problem: dict[str, Any] | None, short: bool = False) -> str:
    if not problem:
        return "-"
    model = problem["model"]
    if model == "mlp":
        sizes = [int(np.prod(problem["input_shape"])), *problem.get("hidden", []),
                 problem["classes"]]
        model += " " + "-".join(map(str, sizes))
    if problem.get("activation"):
        model += f" ({problem['activation']})"
    text = f"{model} on {problem['dataset']}, {problem['train_examples']} training examples"
    return text if short else f"{text}, test: {problem['test']}"


def curve_table(records: Sequence[dict[str, Any]]) -> str:
    """Training loss and cumulative solver time per epoch, one column pair per run."""
    names = [label(r) for r in records]
    width = max(21, *(len(n) + 2 for n in names))
    head = "epoch" + "".join(f"{n:>{width}}" for n in names)
    sub = "     " + "".join(f"{'loss':>{width - 9}}{'time s':>9}" for _ in names)
    lines = [head, sub]
    for epoch in range(max(len(r["train_loss"]) for r in records)):
        cells = []
        for r in records:
            if epoch < len(r["train_loss"]):
                loss = fmt(r["train_loss"][epoch])
                cells.append(f"{loss:>{width - 9}}{r['epoch_time'][epoch]:>9.2f}")
            else:
                cells.append(" " * width)
        lines.append(f"{epoch:>5}" + "".join(cells))
    return "\n".join(lines)


# --- figures ----------------------------------------------------------------------------------
def require_matplotlib() -> None:
    """ImportError with the install command when the `plot` extra is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ImportError("the figures need matplotlib: pip install 'mcnet[plot]' "
                          "(or pass --no-plots)") from None


def save_figure(fig, path: str | os.PathLike) -> Path:
    """PNG via a buffer and `write_atomic`: the path never holds half an image."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    write_atomic(Path(path), buffer.getvalue())
    return Path(path)


def plot_curves(curves: Sequence[tuple[str, dict[str, Any]]], path: str | os.PathLike,
                x: str = "epoch", title: str = "") -> Path:
    """Training loss (log scale) against epoch or solver wall time, one line per run (against
    time, every measurement: the steps inside epochs too for runs with ``evaluate_every``)."""
    require_matplotlib()
    from matplotlib.figure import Figure  # no pyplot: the caller's backend is left alone

    fig = Figure(figsize=(6, 4.2))
    ax = fig.add_subplot()
    for name, record in curves:
        if x == "epoch":
            losses = np.array([np.nan if v is None else v for v in record["train_loss"]], float)
            xs = np.arange(len(losses))
        else:
            points = measured_losses(record)
            xs = np.array([time_ for time_, _ in points], float)
            losses = np.array([loss if math.isfinite(loss) else np.nan for _, loss in points])
        if losses.size:
            ax.plot(xs, losses, marker="o", markersize=2 if len(losses) > 40 else 3, label=name)
    ax.set_yscale("log")
    ax.set_xlabel("epoch" if x == "epoch" else "solver wall time (s)")
    ax.set_ylabel("training loss")
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def write_compare(records: Sequence[dict[str, Any]], summary: dict[str, Any], out_dir: Path,
                  plots: bool = True, runs: bool = True) -> list[Path]:
    """Every run's JSON (unless ``runs`` is False: a redraw leaves the records as they are),
    the summary (JSON and Markdown) and Fig. 3's two panels as PNGs."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for record in records if runs else ():
        name = label(record).replace(" lr=", "-lr").replace(" b=", "-b")
        path = out_dir / "runs" / f"{name}.json"
        write_record(record, path)
        written.append(path)
    path = out_dir / "summary.json"
    write_atomic(path, json.dumps(json_safe(summary), indent=1).encode())
    written.append(path)
    path = out_dir / "summary.md"
    write_atomic(path, compare_markdown(summary).encode())
    written.append(path)
    if plots:
        best = best_runs(records)
        curves = [(label(r), r) for r in best.values()]
        title = problem_text(summary["problem"], short=True)
        written.append(plot_curves(curves, out_dir / "loss_vs_epoch.png", "epoch", title))
        written.append(plot_curves(curves, out_dir / "loss_vs_time.png", "time", title))
    return written


def read_compare(out_dir: Path) -> list[dict[str, Any]]:
    """The run records of a `write_compare` folder, in the order they were run."""
    paths = sorted((out_dir / "runs").glob("*.json"))
    if not paths:
        raise FileNotFoundError(f"no run records in {out_dir / 'runs'}")
    records = [json.loads(p.read_text()) for p in paths]
    records.sort(key=lambda r: r.get("run_index", 0))
    for record in records:
        record["_history"] = History.from_dict(
            {k: record[k] for k in ("solver", "config", "train_loss", "test_loss",
                                    "test_accuracy", "epoch_time", "iterations",
                                    "seconds_by_kind", "evaluations", "meta")}
            | {"interim_loss": record.get("interim_loss", [])})
    return records


def json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


# --- ablations --------------------------------------------------------------------------------
def mean_adjustments(record: dict[str, Any], epoch: int) -> float | None:
    """Step-size trials beyond the first, per iteration that took a step, in ``epoch``
    (iterations skipped by the screening have no step to size and are not counted)."""
    values = [r["adjustments"] for r in record["iterations"]
              if r["epoch"] == epoch and not r["skipped"] and not r["rejected"]]
    return float(np.mean(values)) if values else None


def ablation_row(name: str, record: dict[str, Any]) -> dict[str, Any]:
    """What one ablation table shows of a run."""
    epochs = record["epochs"]
    steps = [r for r in record["iterations"] if not r["skipped"]]
    return {
        "setting": name,
        "final_loss": _finite_or_none(final_loss(record)),
        "final_test_accuracy": _last(record.get("test_accuracy")),
        "solver_time": record["epoch_time"][-1] if record["epoch_time"] else None,
        "iterations": len(record["iterations"]),
        "skipped": len(record["iterations"]) - len(steps),
        "krylov_per_iteration": float(np.mean([r["krylov_iterations"] for r in steps]))
        if steps else None,
        "adjustments_epoch_1": mean_adjustments(record, 1),
        f"adjustments_epoch_{epochs}": mean_adjustments(record, epochs),
        "failed": record["failed"],
    }


def study_settings(study: str, etas: Sequence[float] = ETAS,
                   batch_sizes: Sequence[int] = BATCH_SIZES,
                   activations: Sequence[str] = ABLATION_ACTIVATIONS
                   ) -> list[tuple[str, dict[str, Any]]]:
    """(label, overrides) per setting: ``options`` for the solver, ``batch_size``,
    ``activation``; everything else is Algorithm 1's defaults."""
    if study == "eta":
        return [(f"eta={e:g}", {"options": {"eta": e}}) for e in etas]
    if study == "step":
        return [("taylor ratio", {"options": {"step": "taylor"}}),
                ("armijo backtracking", {"options": {"step": "armijo"}})]
    if study == "batch":
        return [(f"batch={b}", {"batch_size": b}) for b in batch_sizes]
    if study == "activation":
        return [(a, {"activation": a}) for a in activations]
    if study == "krylov":  # Algorithm 1's decisions and the Krylov loop's stopping rules
        return [(label, {"options": options}) for label, options in KRYLOV_SETTINGS]
    raise ValueError(f"unknown study {study!r}; expected one of {', '.join(STUDIES)}")


def ablate(problem: Problem, study: str, epochs: int, batch_size: int, seed: int = 0,
           eta: float | None = None, progress: bool | None = None,
           log: Callable[[str], None] | None = None, extra: dict[str, Any] | None = None,
           cache: dict[str, dict[str, Any]] | None = None,
           **settings: Any) -> list[tuple[str, dict[str, Any]]]:
    """Newton-Krylov over the settings of one study; [(label, record)].

    ``cache`` (a dict kept across studies) reuses a run whose options, batch size and
    activation were already run -- the defaults appear in every study -- instead of
    training the same thing again: runs are deterministic, only the timings would differ.
    """
    out = []
    for name, override in study_settings(study, **settings):
        options = solver_options("newton-krylov", eta=eta)
        options.update(override.get("options", {}))
        size = override.get("batch_size", batch_size)
        activation = override.get("activation") or problem.spec.resolved_activation()
        # keyed by the solver's full configuration: {"eta": 0.05} and {"step": "taylor"}
        # are the same run
        key = repr((sorted(make("newton-krylov", **options).config().items()), size,
                    activation))
        tags = {"study": study, "setting": name}
        if cache is not None and key in cache:
            record = {**cache[key], **tags}
        else:
            record = run(problem, "newton-krylov", options, epochs, size, seed,
                         activation=activation, progress=progress,
                         extra={**(extra or {}), **tags})
            if cache is not None:
                cache[key] = record
        if log is not None:
            log(f"{study}: {name}: final training loss {fmt(final_loss(record))} in "
                f"{record['wall_time']:.1f} s" + (" (FAILED)" if record["failed"] else ""))
        out.append((name, record))
    return out


STUDY_TITLES = {
    "eta": "Taylor-ratio threshold eta",
    "step": "Step rule: Taylor ratio vs Armijo backtracking",
    "batch": "Batch size",
    "activation": "Activation",
    "krylov": "Algorithm 1's decisions as printed, warm starts, Krylov stopping rules and the "
              "Gauss-Newton matrix",
}


def ablation_markdown(study: str, runs: Sequence[tuple[str, dict[str, Any]]]) -> str:
    """One study's table."""
    epochs = runs[0][1]["epochs"]
    lines = [f"### {STUDY_TITLES[study]}", "",
             f"Newton-Krylov (Algorithm 1 defaults otherwise), {epochs} epochs, "
             f"{problem_text(runs[0][1]['problem'])}.", "",
             f"| setting | final train loss | test acc | solver time (s) | iterations | "
             f"skipped | Krylov its/iter | adjustments/iter, epoch 1 | "
             f"adjustments/iter, epoch {epochs} |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, record in runs:
        row = ablation_row(name, record)
        lines.append(
            f"| {name} | {fmt(row['final_loss'])} | {fmt(row['final_test_accuracy'])} | "
            f"{fmt(row['solver_time'], 3)} | {row['iterations']} | {row['skipped']} | "
            f"{fmt(row['krylov_per_iteration'], 3)} | {fmt(row['adjustments_epoch_1'], 3)} | "
            f"{fmt(row[f'adjustments_epoch_{epochs}'], 3)} |")
    lines += ["", "Adjustments: step-size trials beyond the first per iteration that took a "
              "step (Taylor: x0.5 / x1.5 changes of gamma; Armijo: backtracks)."]
    return "\n".join(lines) + "\n"


def write_ablation(study: str, runs: Sequence[tuple[str, dict[str, Any]]], out_dir: Path,
                   plots: bool = True) -> list[Path]:
    """``<study>.md``, ``<study>.png`` and each run's JSON under ``<study>/``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, record in runs:
        slug = "".join(c if c.isalnum() or c in "-_." else "-" for c in name)
        path = out_dir / study / f"{slug}.json"
        write_record(record, path)
        written.append(path)
    path = out_dir / f"{study}.md"
    write_atomic(path, ablation_markdown(study, runs).encode())
    written.append(path)
    if plots:
        title = f"{STUDY_TITLES[study]}\n{problem_text(runs[0][1]['problem'], short=True)}"
        written.append(plot_curves(list(runs), out_dir / f"{study}.png", "epoch", title))
    return written


def ablation_text(study: str, runs: Sequence[tuple[str, dict[str, Any]]]) -> str:
    """A plain-text version of the table for the terminal."""
    epochs = runs[0][1]["epochs"]
    lines = [STUDY_TITLES[study],
             f"{'setting':<22}{'loss':>10}{'test acc':>10}{'time s':>9}{'adj ep1':>9}"
             f"{f'adj ep{epochs}':>10}"]
    for name, record in runs:
        row = ablation_row(name, record)
        lines.append(f"{name:<22}{fmt(row['final_loss']):>10}"
                     f"{fmt(row['final_test_accuracy'], 3):>10}"
                     f"{fmt(row['solver_time'], 3):>9}{fmt(row['adjustments_epoch_1'], 3):>9}"
                     f"{fmt(row[f'adjustments_epoch_{epochs}'], 3):>10}")
    return "\n".join(lines)


__all__ = [
    "ACTIVATIONS",
    "DATASETS",
    "DEFAULT_LRS",
    "MODELS",
    "STUDIES",
    "Problem",
    "ProblemError",
    "ProblemSpec",
    "ablate",
    "compare",
    "load_problem",
    "run",
    "summarize",
]
