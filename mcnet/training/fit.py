"""`mcnet.fit`: the training loop shared by every solver.

Each epoch walks seeded minibatches (`mcnet.datasets.batches` with ``(seed, epoch)``; a
full-batch solver takes one step on the whole data instead). Every step is checked after
it is taken: one that leaves a non-finite parameter, or parameters at which the loss is
non-finite, is rejected -- parameters and solver state go back to what they were before it
-- and recorded. The loss at a step's parameters is the one the next step starts from (on
its batch), or for an epoch's last step the full training loss, so the check costs no
extra evaluation; a rejected step is undone within its epoch, and training stops with a
`TrainingError` when an epoch keeps no step or ends with a non-finite training loss.

After each epoch the full training loss (and test loss and accuracy) is evaluated with the
module in eval mode (BatchNorm's running statistics recomputed at the parameters first,
unless ``batchnorm_statistics="running"``). The solver sees that training loss
(`Solver.end_epoch`, with the loss at any other point it asks for; ``newton-krylov`` and
``newton-krylov-fast`` go back along the epoch's way when it rose, and those evaluations then
count as their time), and a checkpoint is written atomically into a
directory locked for the run; ``resume=True`` continues from it to bit-identical
parameters. A checkpoint already there is only resumed (``resume=True``, same run: solver,
options, seed, batch size, dtype, model and data) or replaced (``overwrite=True``), never
silently.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from mcnet.algebra.multicomplex import array_module
from mcnet.datasets.batching import batches
from mcnet.errors import CheckpointError, CheckpointMismatchError, TrainingError
from mcnet.nn.batchnorm import recompute_running_statistics
from mcnet.nn.dropout import resample_dropout
from mcnet.nn.module import Module
from mcnet.nn.objective import Objective
from mcnet.nn.vector import vector_to_parameters
from mcnet.solvers.base import Solver, State, check_choice, check_count
from mcnet.tensor import tensor
from mcnet.training import checkpoint as checkpoints
from mcnet.training.history import History
from mcnet.training.oracle import DEFAULT_TIMEOUT, Oracle, make_oracle

__all__ = ["TrainingError", "evaluate", "fit"]


@dataclasses.dataclass(frozen=True)
class _Loop:
    """What stays fixed while `fit` trains: the model, its data and the loop's settings."""

    module: Module
    loss: Module
    solver: Solver
    data: tuple[Any, Any]
    test_data: tuple[Any, Any] | None
    epochs: int
    batch_size: int
    seed: int
    chunk_size: int
    evaluate_every: int | None
    show_progress: bool
    batchnorm_statistics: str


@dataclasses.dataclass(frozen=True)
class _Point:
    """Parameters and the solver state that goes with them."""

    w: Any
    state: State


@dataclasses.dataclass(frozen=True)
class _Undo:
    """The point before an accepted step, and that step's record."""

    before: _Point
    record: dict[str, Any]


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
    overwrite: bool = False,
    batchnorm_statistics: str = "recompute",
) -> History:
    """Train ``module`` under ``loss`` on ``data = (inputs, targets)`` with ``solver``.

    Leaves the trained parameters in ``module`` and returns the `History`. ``progress``:
    a progress bar (tqdm) when True, none when False, and only on a terminal when None.
    ``chunk_size`` bounds the examples per pass of full-data sums (global gradient, loss).
    ``scheduler``: run the full-data sums of the solver (NewtonKrylov's global gradient,
    full-batch solvers' steps) on a Dask cluster -- "local" starts ``workers`` processes on
    this machine, or give a scheduler's address (``pip install "mcnet[distributed]"``,
    `mcnet.training.distributed.DaskOracle`); ``scheduler_timeout`` bounds reaching it.
    ``evaluate_every=N`` also measures the full training loss after every N-th step inside
    an epoch (`History.interim_loss`), for loss-against-time curves finer than epochs; like
    the epoch-end evaluations (unless the solver reads them: `Solver.reads_epoch_loss`) it is
    left out of the solver time, and it does not change the run.
    The same arguments give bit-identical parameters, with or without a resume in between.

    ``batchnorm_statistics``: BatchNorm's running statistics follow PyTorch's rule during
    training (an exponential average, updated once per step); with "recompute" they are set
    to the statistics of the training data at the parameters being evaluated, in batches of
    ``batch_size``, before every evaluation (`mcnet.nn.recompute_running_statistics`), so
    that eval mode matches the trained parameters even after large steps; "running" keeps
    the exponential average alone. Either way training itself is the same.

    ``checkpoint=DIR`` is made if needed, checked and locked before training; a checkpoint
    already in it is continued with ``resume=True`` (a `CheckpointMismatchError` if it is
    another run's or has done more than ``epochs``) or replaced with ``overwrite=True``;
    with neither, it is a `CheckpointMismatchError`. A `TrainingError` ends a run whose
    loss cannot be kept finite (see the module's description).
    """
    if not isinstance(solver, Solver):
        raise TypeError(
            f"solver must be an mcnet.solvers solver instance (e.g. NewtonKrylov()), "
            f"got {type(solver).__name__}"
        )
    epochs = check_count("epochs", epochs)
    batch_size = check_count("batch_size", batch_size)
    seed = check_count("seed", seed, 0)
    chunk_size = check_count("chunk_size", chunk_size)
    if evaluate_every is not None:
        evaluate_every = check_count("evaluate_every", evaluate_every)
    if workers is not None:
        workers = check_count("workers", workers)
    loop = _Loop(
        module=module,
        loss=loss,
        solver=solver,
        data=data,
        test_data=test_data,
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        chunk_size=chunk_size,
        evaluate_every=evaluate_every,
        show_progress=sys.stderr.isatty() if progress is None else bool(progress),
        batchnorm_statistics=check_choice(
            "batchnorm_statistics", batchnorm_statistics, ("recompute", "running")
        ),
    )
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
    if resume and overwrite:
        raise ValueError(
            "resume=True continues the checkpoint and overwrite=True replaces it: pass one of them"
        )

    directory = None if checkpoint is None else Path(checkpoint)
    if directory is not None:
        checkpoints.prepare(directory)
    with contextlib.ExitStack() as stack:
        if directory is not None:
            stack.enter_context(checkpoints.locked(directory))
        oracle = make_oracle(
            Objective(module, loss),
            data,
            loop.chunk_size,
            scheduler=scheduler,
            workers=workers,
            timeout=scheduler_timeout,
        )
        # stops the cluster that scheduler="local" started
        stack.callback(oracle.close)
        oracle.seed = loop.seed
        identity = {
            "solver": solver.name,
            "config": solver.config(),
            "seed": loop.seed,
            "batch_size": loop.batch_size,
            "examples": n,
            "parameters": oracle.initial_point().size,
            "dtype": str(oracle.dtype),
        }
        if directory is not None:
            identity["model"] = checkpoints.describe_model(module, loss)
            identity["data"] = checkpoints.fingerprint(data)
        loaded = None
        if directory is not None and not overwrite:
            loaded = checkpoints.load(directory, oracle.xp)
            if loaded is not None:
                _check_resumable(directory, loaded, identity, loop.epochs, resume)
        if loaded is not None:
            w, state, meta = loaded
            point = _Point(w, state)
            history = meta["history"]
            oracle.counts.update(history.evaluations)
            oracle.seconds.update(history.seconds_by_kind)
            start_epoch = meta["epoch"]
        else:
            w = oracle.initial_point()
            history = History(solver=solver.name, config=solver.config())
            start = time.perf_counter()
            point = _Point(w, solver.init(oracle, w))
            history.epoch_time.append(time.perf_counter() - start)
            history.epoch_time[-1] += _evaluate_epoch(loop, history, point)
            if not math.isfinite(history.train_loss[0]):
                raise TrainingError(
                    f"the training loss at the initial parameters is {history.train_loss[0]}: "
                    "the data or the model's initialisation give no finite loss (expected "
                    "inputs of moderate size)"
                )
            w, state, _ = solver.end_epoch(
                point.w, point.state, history.train_loss[0], functools.partial(_train_loss_at, loop)
            )
            point = _Point(w, state)
            start_epoch = 0

        try:
            for epoch in range(start_epoch, loop.epochs):
                before = point
                try:
                    point, undo = _train_epoch(loop, oracle, point, history, epoch)
                    point = _end_epoch(loop, history, point, undo, epoch)
                except TrainingError:
                    point = before  # the module keeps the epoch's (finite) start
                    raise
                history.evaluations = dict(oracle.counts)
                history.seconds_by_kind = dict(oracle.seconds)
                if directory is not None:
                    meta = {"epoch": epoch + 1, "run": identity, "history": history.to_dict()}
                    checkpoints.save(directory, point.w, point.state, meta)
        finally:
            # the last accepted parameters, never a NaN
            vector_to_parameters(_evaluation_point(loop, point), module)
    return history


def _train_epoch(
    loop: _Loop, oracle: Oracle, point: _Point, history: History, epoch: int
) -> tuple[_Point, _Undo | None]:
    """One epoch of steps; the point reached, and how to undo its last accepted step."""
    solver = loop.solver
    if solver.full_batch:
        epoch_batches: Any = [None]
    else:
        epoch_batches = batches(
            loop.data,
            loop.batch_size,
            seed=loop.seed,
            epoch=epoch,
            dtype=oracle.dtype,
            device=oracle.device,
        )
    steps = 1 if solver.full_batch else -(-oracle.size // loop.batch_size)
    bar = _progress_bar(loop.show_progress, steps, f"{solver.name} epoch {epoch + 1}/{loop.epochs}")
    elapsed = history.epoch_time[-1]
    accepted = 0
    undo = None  # for the epoch's last accepted step
    for index, batch in enumerate(epoch_batches):
        iteration = len(history.records) + 1
        # Dropout masks: fresh for every step, the same for every pass within it
        resample_dropout(loop.module, [loop.seed, epoch, index])
        if batch is not None:  # BatchNorm's running statistics: once per step, at its w
            oracle.objective.update_running_statistics(point.w, batch)
        counts = Counter(oracle.counts)
        start = time.perf_counter()
        w_new, new_state, info = solver.step(oracle, point.w, batch, point.state)
        seconds = time.perf_counter() - start
        elapsed += seconds
        if not math.isfinite(info.loss) and undo is not None:
            # the loss at the last accepted step's parameters is non-finite: undo that step
            point = _undo(undo)
            undo = None
            accepted -= 1
        finite = math.isfinite(info.loss) and bool(oracle.xp.isfinite(w_new).all())
        evaluations = {k: v - counts[k] for k, v in oracle.counts.items() if v - counts[k]}
        record = {
            "epoch": epoch + 1,
            "iteration": iteration,
            "loss": info.loss,
            "time": seconds,
            "step_size": info.step_size,
            "krylov_iterations": info.krylov_iterations,
            "adjustments": info.adjustments,
            "skipped": info.skipped,
            "rejected": not finite,
            "reason": info.reason if finite else "rejected: non-finite loss or parameters",
            "evaluations": evaluations,
        }
        history.records.append(record)
        if finite:
            undo = _Undo(point, record)
            point = _Point(w_new, new_state)
            accepted += 1
        if loop.evaluate_every and iteration % loop.evaluate_every == 0 and index + 1 < steps:
            # the epoch's last step is measured by the epoch-end evaluation
            train_loss = _train_loss_at(loop, _evaluation_point(loop, point))
            history.interim_loss.append(
                {"iteration": iteration, "time": elapsed, "train_loss": train_loss}
            )
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
    return point, undo


def _undo(undo: _Undo) -> _Point:
    """The point from before an accepted step whose parameters turned out to give a
    non-finite loss; the step's record says it was rejected."""
    undo.record["rejected"] = True
    undo.record["reason"] = "rejected: the loss at its parameters is non-finite"
    return undo.before


def _end_epoch(
    loop: _Loop, history: History, point: _Point, undo: _Undo | None, epoch: int
) -> _Point:
    """Evaluate the epoch's end; a non-finite training loss undoes the epoch's last step,
    and one that stays non-finite ends training. Then the solver sees the training loss
    (`Solver.end_epoch`) and may go back to an earlier point, which is evaluated anew."""
    history.epoch_time[-1] += _evaluate_epoch(loop, history, point)
    if not math.isfinite(history.train_loss[-1]) and undo is not None:
        point = _undo(undo)
        _evaluate_epoch_again(loop, history, point)
    if not math.isfinite(history.train_loss[-1]):
        raise TrainingError(
            f"{loop.solver!r}: the training loss after epoch {epoch + 1} is "
            f"{history.train_loss[-1]} even with the epoch's last step undone; the "
            "parameters are those before that epoch (expected a smaller step: a lower "
            "learning rate or another solver)"
        )
    start = time.perf_counter()
    w, state, reason = loop.solver.end_epoch(
        point.w, point.state, history.train_loss[-1], functools.partial(_train_loss_at, loop)
    )
    if loop.solver.reads_epoch_loss:  # the losses at the points it tried
        history.epoch_time[-1] += time.perf_counter() - start
    went_back = w is not point.w
    point = _Point(w, state)
    if went_back:
        if history.records:  # the epoch's last record says what happened after it
            last = history.records[-1]
            last["reason"] = "; ".join(filter(None, (last["reason"], reason)))
        _evaluate_epoch_again(loop, history, point)
    return point


def _evaluation_point(loop: _Loop, point: _Point) -> Any:
    return loop.solver.evaluation_point(point.state, point.w)


def _evaluate_epoch(loop: _Loop, history: History, point: _Point) -> float:
    """Append the evaluations at ``point`` to the history; the seconds that count as the
    solver's (the training loss's, for a solver that reads it)."""
    start = time.perf_counter()
    train_loss = _train_loss_at(loop, _evaluation_point(loop, point))
    seconds = time.perf_counter() - start if loop.solver.reads_epoch_loss else 0.0
    history.train_loss.append(train_loss)
    if loop.test_data is not None:
        test_loss, accuracy = evaluate(loop.module, loop.loss, loop.test_data, loop.chunk_size)
        history.test_loss.append(test_loss)
        history.test_accuracy.append(accuracy)
    return seconds


def _train_loss_at(loop: _Loop, w) -> float:
    """The full training loss at the parameters ``w``, left in the module with their
    BatchNorm statistics (the epoch-end and interim evaluations, and `Solver.end_epoch`)."""
    vector_to_parameters(w, loop.module)
    _recompute_statistics(loop)
    return evaluate(loop.module, loop.loss, loop.data, loop.chunk_size)[0]


def _evaluate_epoch_again(loop: _Loop, history: History, point: _Point) -> None:
    """Replace the epoch's evaluations by those at ``point``."""
    for values in (history.train_loss, history.test_loss, history.test_accuracy):
        del values[len(history.epoch_time) - 1 :]
    _evaluate_epoch(loop, history, point)


def _recompute_statistics(loop: _Loop) -> None:
    """BatchNorm's running statistics at the parameters about to be evaluated (a later
    recomputation starts afresh, so an interim one leaves the epoch's end unchanged)."""
    if loop.batchnorm_statistics == "recompute":
        recompute_running_statistics(loop.module, loop.data[0], loop.batch_size)


def evaluate(
    module: Module, loss: Module, data: tuple[Any, Any], chunk_size: int = 2048
) -> tuple[float, float | None]:
    """(mean loss, accuracy or None) of ``module`` on ``data``, in eval mode, chunk by chunk.

    Accuracy is the fraction of arg-max logits equal to integer labels (or of logits on the
    right side of 0 for one-output binary models); None for real-valued targets.
    """
    chunk_size = check_count("chunk_size", chunk_size)
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
            logits = module(tensor(x, dtype=dtype, device=device))
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
def _check_data(name: str, data: Any) -> int:
    try:
        inputs, targets = data
    except (TypeError, ValueError):
        raise TypeError(
            f"{name} must be a pair (inputs, targets), got {type(data).__name__}"
        ) from None
    if len(inputs) != len(targets):
        raise ValueError(
            f"{name}: inputs and targets must have the same length, got {len(inputs)} inputs "
            f"and {len(targets)} targets"
        )
    if len(inputs) == 0:
        raise ValueError(f"{name} is empty")
    for part, values in (("inputs", inputs), ("targets", targets)):
        if getattr(values, "dtype", np.dtype(object)).kind in "fc":
            xp = array_module(values)
            bad = xp.flatnonzero(~xp.isfinite(values.reshape(len(values), -1)).all(axis=1))
            if bad.size:
                raise ValueError(
                    f"{name}: {part} of example {int(bad[0])} are not all finite "
                    f"({int(bad.size)} such examples; expected finite numbers)"
                )
    return len(inputs)


def _check_module_takes(module: Module, loss: Module, data) -> None:
    """One forward of two examples (in eval mode, so no running statistics move): a module
    and data that disagree fail here with a message naming both, not deep in epoch 1."""
    inputs, targets = data
    dtype = module.parameters()[0].value.dtype
    device = module.parameters()[0].value.device
    was_training = module.training
    module.eval()
    try:
        loss(module(tensor(inputs[:2], dtype=dtype, device=device)), targets[:2])
    except Exception as exc:
        raise ValueError(
            f"{type(module).__name__} with {type(loss).__name__} cannot take this data "
            f"(inputs of shape {tuple(inputs.shape[1:])} per example, targets "
            f"{getattr(targets, 'dtype', type(targets).__name__)} of shape "
            f"{tuple(getattr(targets, 'shape', ())[1:])} per example): {exc}"
        ) from exc
    finally:
        module.train(was_training)


def _check_resumable(
    directory: Path, loaded: tuple, current: dict, epochs: int, resume: bool
) -> None:
    """A checkpoint found in ``directory`` may only be continued, by the same run, to at
    least as many epochs as it has done."""
    w, _, meta = loaded
    # JSON turns tuples into lists: compare through the same round trip
    current = json.loads(json.dumps(current))
    saved = meta["run"]
    different = [key for key in current if saved.get(key) != current[key]]
    place = f"the checkpoint in {directory} (epoch {meta['epoch']})"
    if different:
        details = "; ".join(_difference(k, saved.get(k), current[k]) for k in different)
        raise CheckpointMismatchError(
            f"{place} is of a different run ({details}); use another directory, or replace it "
            "with overwrite=True (mcnet train --overwrite)"
        )
    if not resume:
        raise CheckpointMismatchError(
            f"{place} would be replaced by a fresh start: continue it with resume=True "
            "(mcnet train --resume) or replace it with overwrite=True (--overwrite)"
        )
    if w.shape != (current["parameters"],):
        raise CheckpointError(
            f"{place} holds {w.size} parameters where its run has {current['parameters']}: "
            "it is damaged; move it away, or replace it with overwrite=True (--overwrite)"
        )
    if meta["epoch"] > epochs:
        raise CheckpointMismatchError(
            f"{place} has done {meta['epoch']} epochs, more than the {epochs} asked for "
            f"(expected epochs >= {meta['epoch']} to resume it)"
        )


def _difference(key: str, saved: Any, current: Any) -> str:
    """One differing item of a run's identity, short enough for a one-line message."""
    if key == "data":
        return "the training data differ (another data set, order or subset)"
    if key == "model" and isinstance(saved, str):
        start = next(
            (i for i, (a, b) in enumerate(zip(saved, current)) if a != b),
            min(len(saved), len(current)),
        )
        begin = max(start - 20, 0)
        return (
            f"model: checkpoint ...{saved[begin : start + 30]}..., now "
            f"...{current[begin : start + 30]}..."
        )
    return f"{key}: checkpoint {saved!r}, now {current!r}"


def _progress_bar(show: bool, total: int, description: str):
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description, leave=False, file=sys.stderr)
