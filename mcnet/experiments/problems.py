"""Problems: a model, a loss and the data it trains on, named by the command line's flags.

`ProblemSpec` holds the flags; `load_problem` reads the data once; `Problem.build` then makes
a fresh, seeded model for every run, so that runs of one comparison start from the same
parameters.

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
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from mcnet import datasets, nn
from mcnet.nn import models

MODELS = ("lenet5", "autoencoder", "vgg11", "mlp", "logistic_regression", "linear_svm")

DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10", "svhn", "libsvm")

# "none" is the identity; models.ACTIVATIONS has no entry for it, so `build_model` swaps
# the layers of a sigmoid network for Identity (same parameters, same layout).
ACTIVATIONS = (*sorted(models.ACTIVATIONS), "none")

DEFAULT_ACTIVATION = {
    "lenet5": "sigmoid",
    "autoencoder": "sigmoid",
    "vgg11": "elu",
    "mlp": "sigmoid",
}

DTYPES = ("float32", "float64")

DEVICES = ("cpu", "cuda")

DIGITS_HOLDOUT = 297


class ProblemError(ValueError):
    """A problem the flags describe cannot be built; ``flag`` names the flag to blame."""

    def __init__(self, flag: str, message: str) -> None:
        super().__init__(f"{flag}: {message}")
        self.flag = flag


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
        return (
            self.activation if self.activation is not None else DEFAULT_ACTIVATION.get(self.model)
        )


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
        raise ProblemError(
            "--device",
            "cuda needs CuPy, which is not installed (pip install 'mcnet[cuda]'); use --device cpu",
        ) from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDA driver errors have no common base class
        raise ProblemError(
            "--device", f"cuda: CuPy finds no usable GPU ({exc}); use --device cpu"
        ) from None
    if count < 1:
        raise ProblemError("--device", "cuda: no GPU found; use --device cpu")


def load_problem(spec: ProblemSpec) -> Problem:
    """Read the data of ``spec``, split and adapt it for the model; ProblemError (naming a
    flag) when the combination cannot work, DatasetNotFoundError when files are missing."""
    check_device(spec.device)
    dtype = np.dtype(spec.dtype)
    inputs, targets, test, source = _read(spec, dtype)
    holdout = (
        spec.holdout
        if spec.holdout is not None
        else (DIGITS_HOLDOUT if spec.dataset == "digits" else 0)
    )
    described: dict[str, Any] = {"dataset": spec.dataset, "train_split": spec.train_split}
    if holdout:
        if holdout >= len(inputs):
            raise ProblemError(
                "--holdout",
                f"{holdout} leaves no training data ({source} has {len(inputs)} examples)",
            )
        test = (inputs[-holdout:], targets[-holdout:])
        inputs, targets = inputs[:-holdout], targets[:-holdout]
        described["test"] = (
            f"the last {holdout} examples of {source} (held out; "
            f"examples {len(inputs)}..{len(inputs) + holdout - 1})"
        )
    elif test is not None:
        kind = "test file" if spec.dataset == "libsvm" else "test split"
        described["test"] = f"{spec.dataset} {kind}"
    else:
        described["test"] = "none"
    if spec.subset is not None:
        if spec.subset > len(inputs):
            raise ProblemError(
                "--subset",
                f"{spec.subset} is more than the {len(inputs)} "
                f"training examples of {source} (expected at most "
                f"{len(inputs)})",
            )
        inputs, targets = inputs[: spec.subset], targets[: spec.subset]
    if spec.test_subset is not None:
        if test is None:
            raise ProblemError("--test-subset", f"there is no test data ({described['test']})")
        if spec.test_subset > len(test[0]):
            raise ProblemError(
                "--test-subset",
                f"{spec.test_subset} is more than the "
                f"{len(test[0])} test examples (expected at "
                f"most {len(test[0])})",
            )
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
            raise ProblemError(
                "--train-split",
                "digits has one split only; use the default (the test set is its last 297 images)",
            )
        x, y = datasets.digits(dtype=dtype)
        return x, y, None, "digits (1797 images)"
    if spec.dataset == "libsvm":
        if spec.train_file is None:
            raise ProblemError(
                "--train-file", "--dataset libsvm needs --train-file PATH (a LIBSVM text file)"
            )
        if spec.train_split != "train":
            raise ProblemError(
                "--train-split",
                "libsvm reads --train-file; use --holdout N to test on its last N examples",
            )
        x, y = _libsvm(spec.train_file, None, dtype, "--train-file")
        test = None
        if spec.test_file is not None:
            test = _libsvm(spec.test_file, x.shape[1], dtype, "--test-file", like=spec.train_file)
        return x, y, test, os.path.basename(spec.train_file)
    if spec.train_file is not None or spec.test_file is not None:
        raise ProblemError(
            "--train-file",
            "only --dataset libsvm reads files by name; use --data-dir for the image data sets",
        )
    loader: Callable[..., tuple[np.ndarray, np.ndarray]] = getattr(datasets, spec.dataset)
    x, y = loader(spec.data_dir, spec.train_split, dtype=dtype)
    test = None
    if spec.train_split == "train" and not spec.holdout:
        test = loader(spec.data_dir, "test", dtype=dtype)
    return x, y, test, f"{spec.dataset} {spec.train_split} split"


def _libsvm(path: str, n_features: int | None, dtype: np.dtype, flag: str, like: str | None = None):
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


def adapt(
    spec: ProblemSpec, inputs: np.ndarray, targets: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The data in the shape the model takes (see the module docstring)."""
    shape = tuple(inputs.shape[1:])
    if spec.model in ("lenet5", "autoencoder"):
        if shape == (1, 8, 8):
            inputs, shape = enlarge_digits(inputs), (1, 28, 28)
        if shape != (1, 28, 28):
            raise ProblemError(
                "--model",
                f"{spec.model} takes 1x28x28 images; --dataset "
                f"{spec.dataset} gives {_shape_text(shape)} (use mlp, "
                "logistic_regression or linear_svm)",
            )
        if spec.model == "autoencoder":
            flat = np.ascontiguousarray(inputs.reshape(len(inputs), -1))
            return flat, flat
        return inputs, targets
    if spec.model == "vgg11":
        if shape != (3, 32, 32):
            raise ProblemError(
                "--model",
                f"vgg11 takes 3x32x32 images (cifar10, svhn); "
                f"--dataset {spec.dataset} gives {_shape_text(shape)}",
            )
        return inputs, targets
    return np.ascontiguousarray(inputs.reshape(len(inputs), -1)), targets


def _shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape)) + (" images" if len(shape) == 3 else " features")


def build_model(
    spec: ProblemSpec, n_features: int, n_classes: int, seed: int, activation: str | None = None
) -> tuple[nn.Module, nn.Loss]:
    """(module, loss) for ``spec``, initialised from ``seed``, in its dtype and device."""
    activation = activation if activation is not None else spec.resolved_activation()
    if spec.model in ("logistic_regression", "linear_svm") and activation is not None:
        raise ProblemError("--activation", f"{spec.model} is linear and has no activation")
    # "none": build with sigmoid layers, then put Identity in their places (None: a linear
    # model, which builds none)
    built = "sigmoid" if activation is None or activation == "none" else activation
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
        raise ProblemError(
            "--model", f"unknown model {spec.model!r} (expected one of {', '.join(MODELS)})"
        )
    if activation == "none":
        _replace(module, nn.Sigmoid, nn.Identity)
    if spec.model == "autoencoder":
        # squared error on pixels: the logits go through a sigmoid (models.autoencoder's doc)
        module, loss = nn.Sequential(module, nn.Sigmoid()), nn.MSELoss()
    if spec.dtype != "float64" or spec.device != "cpu":
        module.to(device=None if spec.device == "cpu" else spec.device, dtype=np.dtype(spec.dtype))
    return module, loss


def _replace(module: nn.Module, kind: type, factory: Callable[[], nn.Module]) -> None:
    for name, child in list(module.named_children()):
        if isinstance(child, kind):
            setattr(module, name, factory())  # same key: the layer order is kept
        else:
            _replace(child, kind, factory)
