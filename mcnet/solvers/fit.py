"""`mcnet.fit`: the training loop shared by every solver.

Each epoch walks seeded minibatches (`mcnet.datasets.batches` with ``(seed, epoch)``; a
full-batch solver takes one step on the whole data instead). Every step is checked: one
that leaves a non-finite loss or parameter is rejected -- parameters and solver state stay
as they were -- and recorded. After each epoch the full training loss (and test loss and
accuracy) is evaluated with the module in eval mode, and a checkpoint is written
atomically; ``resume=True`` continues from it to bit-identical parameters.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from mcnet.datasets.batching import batches
from mcnet.nn.dropout import resample_dropout
from mcnet.nn.module import Module
from mcnet.nn.objective import Objective
from mcnet.nn.vector import vector_to_parameters
from mcnet.solvers import checkpoint as checkpoints
from mcnet.solvers.base import Solver, State
from mcnet.solvers.distributed import DEFAULT_TIMEOUT, close_oracle, make_oracle
from mcnet.solvers.history import History


class TrainingError(RuntimeError):
    """Training cannot go on (every step of an epoch was rejected)."""


def fit(
    module: Module,
    loss: Module,
    data: tuple[Any, Any],
    solver: Solver,
    epochs: int,
    batch_size: int = 128,
    seed: int = 0,
    test_data: tuple[Any, Any] | None = None,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool | None = None,
    chunk_size: int = 2048,
    scheduler: Any = None,
    workers: int | None = None,
    scheduler_timeout: float = DEFAULT_TIMEOUT,
    evaluate_every: int | None = None,
) -> History:
    """Train ``module`` under ``loss`` on ``data = (inputs, targets)`` with ``solver``.

    Leaves the trained parameters in ``module`` and returns the `History`. ``progress``:
    a progress bar (tqdm) when True, none when False, and only on a terminal when None.
    ``chunk_size`` bounds the examples per pass of full-data sums (global gradient, loss).
    ``scheduler``: run the full-data sums of the solver (NewtonKrylov's global gradient,
    full-batch solvers' steps) on a Dask cluster -- "local" starts ``workers`` processes on
    this machine, or give a scheduler's address (``pip install "mcnet[distributed]"``,
    `mcnet.solvers.distributed.DaskOracle`); ``scheduler_timeout`` bounds reaching it.
    ``evaluate_every=N`` also measures the full training loss after every N-th step inside
    an epoch (`History.interim_loss`), for loss-against-time curves finer than epochs; like
    the epoch-end evaluations it is left out of the solver time and does not change the run.
    The same arguments give bit-identical parameters, with or without a resume in between.
    """
    if not isinstance(solver, Solver):
        raise TypeError(
            f"solver must be an mcnet.solvers solver instance (e.g. NewtonKrylov()), "
            f"got {type(solver).__name__}"
        )
    epochs = _check_count("epochs", epochs)
    batch_size = _check_count("batch_size", batch_size)
    seed = _check_count("seed", seed, minimum=0)
    if evaluate_every is not None:
        evaluate_every = _check_count("evaluate_every", evaluate_every)
    n = _check_data("data", data)
    if batch_size > n:
        raise ValueError(f"batch_size {batch_size} is larger than the data ({n} examples)")
    if test_data is not None:
        _check_data("test_data", test_data)
    if not module.parameters():
        raise ValueError(f"{type(module).__name__} has no parameters to train")
    _check_module_takes(module, loss, data)
    if resume and checkpoint is None:
        raise ValueError("resume=True needs checkpoint=DIR to resume from")

    oracle = make_oracle(Objective(module, loss), data, chunk_size, scheduler=scheduler,
                         workers=workers, timeout=scheduler_timeout)
    oracle.seed = seed
    run = {
        "solver": solver.name, "config": solver.config(), "seed": seed,
        "batch_size": batch_size, "examples": n, "parameters": oracle.initial_point().size,
        "dtype": str(oracle.dtype),
    }
    loaded = checkpoints.load(Path(checkpoint), oracle.xp) if resume else None
    if loaded is not None:
        w, state, meta = loaded
        _check_same_run(Path(checkpoint), meta["run"], run)
        history = History.from_dict(meta["history"])
        oracle.counts.update(history.evaluations)
        oracle.seconds.update(history.seconds_by_kind)
        start_epoch = meta["epoch"]
    else:
        w = oracle.initial_point()
        history = History(solver=solver.name, config=solver.config())
        start = time.perf_counter()
        state = solver.init(oracle, w)
        history.epoch_time.append(time.perf_counter() - start)
        _evaluate_epoch(history, module, loss, solver.evaluation_point(state, w), data,
                        test_data, chunk_size)
        start_epoch = 0

    show = sys.stderr.isatty() if progress is None else bool(progress)
    try:
        for epoch in range(start_epoch, epochs):
            w, state = _train_epoch(
                oracle, module, solver, w, state, history, data, epoch, epochs, batch_size,
                seed, show, evaluate_every, loss, chunk_size,
            )
            _evaluate_epoch(history, module, loss, solver.evaluation_point(state, w), data,
                            test_data, chunk_size)
            history.evaluations = dict(oracle.counts)
            history.seconds_by_kind = dict(oracle.seconds)
            if checkpoint is not None:
                meta = {"epoch": epoch + 1, "run": run, "history": history.to_dict()}
                checkpoints.save(Path(checkpoint), w, state, meta)
    finally:
        # the last accepted parameters, never a NaN
        vector_to_parameters(solver.evaluation_point(state, w), module)
        close_oracle(oracle)  # stops the cluster that scheduler="local" started
    return history


def _train_epoch(oracle, module, solver, w, state, history, data, epoch, epochs, batch_size,
                 seed, show, evaluate_every, loss, chunk_size) -> tuple[Any, State]:
    if solver.full_batch:
        epoch_batches: Any = [None]
    else:
        epoch_batches = batches(data, batch_size, seed=seed, epoch=epoch, dtype=oracle.dtype,
                                device=oracle.device)
    steps = 1 if solver.full_batch else -(-oracle.size // batch_size)
    bar = _progress_bar(show, steps, f"{solver.name} epoch {epoch + 1}/{epochs}")
    elapsed = history.epoch_time[-1]
    accepted = 0
    for index, batch in enumerate(epoch_batches):
        iteration = len(history.records) + 1
        # Dropout masks: fresh for every step, the same for every pass within it
        resample_dropout(module, [seed, epoch, index])
        if batch is not None:  # BatchNorm's running statistics: once per step, at its w
            oracle.objective.update_running_statistics(w, batch)
        counts = Counter(oracle.counts)
        start = time.perf_counter()
        w_new, new_state, info = solver.step(oracle, w, batch, state)
        finite = math.isfinite(info.loss) and bool(oracle.xp.isfinite(w_new).all())
        seconds = time.perf_counter() - start
        elapsed += seconds
        if finite:
            w, state = w_new, new_state
            accepted += 1
        evaluations = {k: v - counts[k] for k, v in oracle.counts.items() if v - counts[k]}
        history.records.append({
            "epoch": epoch + 1, "iteration": iteration, "loss": info.loss, "time": seconds,
            "step_size": info.step_size, "krylov_iterations": info.krylov_iterations,
            "adjustments": info.adjustments, "skipped": info.skipped, "rejected": not finite,
            "reason": info.reason if finite else "rejected: non-finite loss or parameters",
            "evaluations": evaluations,
        })
        if evaluate_every and iteration % evaluate_every == 0 and index + 1 < steps:
            # the epoch's last step is measured by the epoch-end evaluation
            vector_to_parameters(solver.evaluation_point(state, w), module)
            train_loss, _ = evaluate(module, loss, data, chunk_size)
            history.interim_loss.append(
                {"iteration": iteration, "time": elapsed, "train_loss": train_loss})
        if bar is not None:
            bar.set_postfix(loss=f"{info.loss:.4g}", refresh=False)
            bar.update()
    if bar is not None:
        bar.close()
    history.epoch_time.append(elapsed)
    if accepted == 0:
        raise TrainingError(
            f"{solver!r}: every step of epoch {epoch + 1} was rejected (non-finite loss or "
            f"parameters), the last at iteration {len(history.records)}; the parameters "
            "are those before that epoch"
        )
    return w, state


def _evaluate_epoch(history, module, loss, w, data, test_data, chunk_size) -> None:
    vector_to_parameters(w, module)
    train_loss, _ = evaluate(module, loss, data, chunk_size)
    history.train_loss.append(train_loss)
    if test_data is not None:
        test_loss, accuracy = evaluate(module, loss, test_data, chunk_size)
        history.test_loss.append(test_loss)
        history.test_accuracy.append(accuracy)


def evaluate(module: Module, loss: Module, data: tuple[Any, Any], chunk_size: int = 2048
             ) -> tuple[float, float | None]:
    """(mean loss, accuracy or None) of ``module`` on ``data``, in eval mode, chunk by chunk.

    Accuracy is the fraction of arg-max logits equal to integer labels (or of logits on the
    right side of 0 for one-output binary models); None for real-valued targets.
    """
    import mcnet as mc

    inputs, targets = data
    n = len(inputs)
    dtype = module.parameters()[0].value.dtype
    device = module.parameters()[0].value.device
    was_training = module.training
    module.eval()
    total, correct, counted = 0.0, 0, True
    try:
        for start in range(0, n, chunk_size):
            x, y = inputs[start : start + chunk_size], targets[start : start + chunk_size]
            logits = module(mc.tensor(x, dtype=dtype, device=device))
            total += float(loss(logits, y).real) * len(x) / n
            hits = _hits(logits.real, y)
            if hits is None:
                counted = False
            else:
                correct += hits
    finally:
        module.train(was_training)
    return total, (correct / n if counted else None)


def _hits(logits, targets) -> int | None:
    xp_targets = np.asarray(targets.get() if hasattr(targets, "get") else targets)
    logits = logits.get() if hasattr(logits, "get") else np.asarray(logits)
    if logits.ndim != 2 or not np.issubdtype(xp_targets.dtype, np.integer):
        if logits.ndim == 2 and logits.shape[1] == 1 and xp_targets.shape == logits.shape:
            # one-output binary model with 0/1 targets
            if np.isin(xp_targets, (0, 1)).all():
                return int(((logits > 0) == (xp_targets > 0.5)).sum())
        return None
    if logits.shape[1] == 1:
        return int(((logits[:, 0] > 0) == (xp_targets > 0)).sum())
    return int((logits.argmax(axis=1) == xp_targets).sum())


# --- argument checks ------------------------------------------------------------------------
def _check_count(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_data(name: str, data: Any) -> int:
    try:
        inputs, targets = data
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a pair (inputs, targets), got {type(data).__name__}"
                        ) from None
    if len(inputs) != len(targets):
        raise ValueError(
            f"{name}: inputs and targets must have the same length, got {len(inputs)} inputs "
            f"and {len(targets)} targets"
        )
    if len(inputs) == 0:
        raise ValueError(f"{name} is empty")
    return len(inputs)


def _check_module_takes(module: Module, loss: Module, data) -> None:
    """One forward of two examples (in eval mode, so no running statistics move): a module
    and data that disagree fail here with a message naming both, not deep in epoch 1."""
    import mcnet as mc

    inputs, targets = data
    dtype = module.parameters()[0].value.dtype
    device = module.parameters()[0].value.device
    was_training = module.training
    module.eval()
    try:
        loss(module(mc.tensor(inputs[:2], dtype=dtype, device=device)), targets[:2])
    except Exception as exc:
        raise ValueError(
            f"{type(module).__name__} with {type(loss).__name__} cannot take this data "
            f"(inputs of shape {tuple(inputs.shape[1:])} per example, targets "
            f"{getattr(targets, 'dtype', type(targets).__name__)} of shape "
            f"{tuple(getattr(targets, 'shape', ())[1:])} per example): {exc}"
        ) from exc
    finally:
        module.train(was_training)


def _check_same_run(directory: Path, saved: dict, current: dict) -> None:
    # JSON turns tuples into lists: compare through the same round trip
    import json

    current = json.loads(json.dumps(current))
    different = [key for key in current if saved.get(key) != current[key]]
    if different:
        details = "; ".join(f"{k}: checkpoint {saved.get(k)!r}, now {current[k]!r}"
                            for k in different)
        raise ValueError(
            f"the checkpoint in {directory} is of a different run ({details}); "
            "use another directory or resume=False"
        )


def _progress_bar(show: bool, total: int, description: str):
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description, leave=False, file=sys.stderr)
