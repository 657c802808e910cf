"""Run records: one solver trained on one problem, as the JSON-ready dict `run` returns,
and what is read off such records (final loss, loss at a solver time, the best run).

A record is `History.to_dict` plus the problem, the options and the machine; keys starting
with ``_`` (the `History`, the trained parameters) stay out of the files. A study's records
are kept together in one gzip-compressed JSON file (`write_runs`, `read_runs`), from which
every summary and figure can be redrawn.
"""

from __future__ import annotations

import dataclasses
import gzip
import importlib.metadata
import inspect
import json
import math
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numba
import numpy as np

import mcnet
from mcnet.errors import TrainingError
from mcnet.experiments.problems import Problem
from mcnet.nn import Objective
from mcnet.nn.vector import parameter_count, parameters_to_vector
from mcnet.solvers import SOLVERS, make
from mcnet.training import fit
from mcnet.training.history import History, json_safe, write_atomic

# L-BFGS takes an lr too, but it is the first trial of its line search (1 is its natural
# value), not a step size to tune; every other solver with an lr is run over the grid.
NOT_ON_LR_GRID = frozenset({"lbfgs"})
# the one file of a comparison's or an ablation's run records
RUNS_FILE = "runs.json.gz"


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


def solver_options(
    name: str,
    lr: float | None = None,
    eta: float | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
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
    found = {
        "mcnet": mcnet_version,
        "numpy": np.__version__,
        "numba": numba.__version__,
        "python": platform.python_version(),
    }
    try:
        found["cupy"] = importlib.metadata.version("cupy-cuda12x")
    except importlib.metadata.PackageNotFoundError:
        pass
    return found


def run(
    problem: Problem,
    solver: str,
    options: dict[str, Any],
    epochs: int,
    batch_size: int,
    seed: int = 0,
    *,
    activation: str | None = None,
    checkpoint: str | None = None,
    resume: bool = False,
    progress: bool | None = None,
    extra: dict[str, Any] | None = None,
    **fit_options: Any,
) -> dict[str, Any]:
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
        history = fit(
            module,
            loss,
            problem.train,
            instance,
            epochs,
            batch_size=batch_size,
            seed=seed,
            test_data=problem.test,
            checkpoint=checkpoint,
            resume=resume,
            progress=progress,
            **fit_options,
        )
    except TrainingError as exc:
        # a diverged lr of a grid is a result, not a crash: recorded with an infinite loss
        failed = str(exc)
        history = History(solver=solver, config=instance.config())
    record = history.to_dict()
    record.update(
        {
            "problem": {
                **dataclasses.asdict(problem.spec),
                **problem.description,
                "activation": activation or problem.spec.resolved_activation(),
                "parameters": parameter_count(module),
            },
            "epochs": epochs,
            "batch_size": batch_size,
            "seed": seed,
            "options": options,
            "wall_time": time.perf_counter() - start,
            "warm_up_seconds": problem.warm_up_seconds,
            "load_average": {"start": load_before, "end": os.getloadavg(), "cpus": os.cpu_count()},
            "failed": failed,
            "versions": versions(),
            **(extra or {}),
        }
    )
    # kept out of the JSON (keys starting with "_"): for --save-params and callers
    record["_history"] = history
    record["_params"] = parameters_to_vector(module)
    return record


def write_record(record: dict[str, Any], path: str | os.PathLike) -> None:
    """The run record as JSON, atomically (non-finite numbers as null)."""
    history: History = record["_history"]
    history.to_json(path, **_json_part(record))


def write_runs(records: Sequence[dict[str, Any]], path: str | os.PathLike) -> Path:
    """The records of a study as one gzip-compressed JSON list, written atomically (keys
    starting with ``_`` left out, non-finite numbers as null). The gzip header carries no
    time stamp, so the same records give the same bytes."""
    payload = json.dumps([json_safe(_json_part(record)) for record in records], indent=0)
    write_atomic(Path(path), gzip.compress(payload.encode(), compresslevel=9, mtime=0))
    return Path(path)


def read_runs(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a `write_runs` file, each with its `History` under ``_history``."""
    records = json.loads(gzip.decompress(Path(path).read_bytes()))
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise ValueError(f"{path}: expected a list of run records")
    for record in records:
        record["_history"] = History.from_dict(
            {
                k: record[k]
                for k in (
                    "solver",
                    "config",
                    "train_loss",
                    "test_loss",
                    "test_accuracy",
                    "epoch_time",
                    "iterations",
                    "seconds_by_kind",
                    "evaluations",
                    "meta",
                )
            }
            | {"interim_loss": record.get("interim_loss", [])}
        )
    return records


def _json_part(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if not k.startswith("_")}


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
    points = [
        *zip(record["epoch_time"], record["train_loss"]),
        *((p["time"], p["train_loss"]) for p in record.get("interim_loss", ())),
    ]
    return sorted(
        ((time_, math.inf if loss is None else float(loss)) for time_, loss in points),
        key=lambda point: point[0],
    )


def loss_at_time(record: dict[str, Any], t: float) -> float:
    """The training loss a run had *measured* by solver time ``t``: its loss at the last
    measurement (`measured_losses`) at or before t. Not interpolated: a run whose first
    measurement after the start comes after t is credited with its initial loss, not with a
    share of a decrease it had not made yet (a line from the start to the first epoch end
    flatters a run that leaves a plateau late in its epoch)."""
    points = measured_losses(record)
    reached = int(np.searchsorted([time_ for time_, _ in points], t, side="right")) - 1
    return points[max(reached, 0)][1]


def losses_at_equal_time(
    record: dict[str, Any], other: dict[str, Any]
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


def finite_or_none(value: float) -> float | None:
    """``value``, or None (JSON's null) where it is not finite."""
    return value if math.isfinite(value) else None


def last_or_none(values: Sequence[Any] | None) -> Any:
    """The last of ``values``, None where there are none."""
    return values[-1] if values else None
