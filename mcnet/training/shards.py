"""The worker side of `mcnet.training.distributed.DaskOracle`: a shard of the data with its
own copy of the model, the call a full-data evaluation sends, and the sums of their results.

Dask runs these functions on the workers (it pickles them by name), so this module holds
only what a worker needs.
"""

from __future__ import annotations

import pickle
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

from mcnet.nn.objective import Objective
from mcnet.training.oracle import weighted


class Shard:
    """A worker's rows of the training data and its own copy of the module and loss."""

    def __init__(self, inputs, targets, model: bytes, total: int, chunk_size: int) -> None:
        self.inputs, self.targets = inputs, targets
        self.model = model
        self.total = total
        self.chunk_size = chunk_size
        self._objective: Objective | None = None
        self.lock = threading.Lock()
        self.objective()  # unpickle now, so that a worker lacking the code fails at placement

    def objective(self) -> Objective:
        if self._objective is None:
            module, loss = pickle.loads(self.model)
            self._objective = Objective(module, loss)  # NumPy results, to send back
        return self._objective

    def chunks(self) -> Iterator[tuple[Any, Any]]:
        for start in range(0, len(self.inputs), self.chunk_size):
            stop = start + self.chunk_size
            yield self.inputs[start:stop], self.targets[start:stop]

    def __getstate__(self) -> dict[str, Any]:
        # Dask may move a shard between workers: without the unpickled module (and its
        # per-call state); the receiving worker unpickles its own from the bytes.
        state = self.__dict__.copy()
        state["_objective"] = None
        del state["lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.lock = threading.Lock()


class Call:
    """What one full-data evaluation needs besides the data: the method, its arguments
    (parameter vector, directions), and the client module's train/eval flags (one per
    module, in `Module.modules` order) and buffers."""

    def __init__(
        self,
        method: str,
        args: tuple,
        kwargs: dict,
        training: tuple[bool, ...],
        buffers: dict[str, dict[str, np.ndarray]],
    ) -> None:
        self.method, self.args, self.kwargs = method, args, kwargs
        self.training, self.buffers = training, buffers


def identity(value: Any) -> Any:
    return value


def evaluate_shard(shard: Shard, call: Call) -> tuple[bool, tuple]:
    """Sum over the shard's chunks of chunk size / n times the method's result, in float64,
    exactly as `Oracle._full_data_mean` does for all chunks."""
    with shard.lock:  # an abandoned call (call_timeout) may still run in another thread
        return _sum_chunks(shard, call)


def _sum_chunks(shard: Shard, call: Call) -> tuple[bool, tuple]:
    objective = shard.objective()
    module = objective.module
    for m, training in zip(module.modules(), call.training):
        object.__setattr__(m, "training", training)  # Module.train would recurse
    modules = dict(module.named_modules())
    for prefix, buffers in call.buffers.items():
        modules[prefix]._buffers.update({k: v.copy() for k, v in buffers.items()})
    evaluate = getattr(objective, call.method)
    single, totals = False, None
    for chunk in shard.chunks():
        result = evaluate(*call.args, chunk, **call.kwargs)
        single = not isinstance(result, tuple)
        weight = len(chunk[0]) / shard.total
        parts = [weighted(part, weight) for part in ((result,) if single else result)]
        totals = parts if totals is None else [t + p for t, p in zip(totals, parts)]
    return single, tuple(totals or ())


def add_partials(*partials: tuple[bool, tuple]) -> tuple[bool, tuple]:
    """The sum of shard partials, left to right (a fixed order: reproducible results)."""
    single, first = partials[0]
    totals = list(first)
    for _, parts in partials[1:]:
        totals = [t + p for t, p in zip(totals, parts)]
    return single, tuple(totals)
