"""The evaluations a solver may ask for, counted and timed.

`Oracle` wraps an `mcnet.Objective` and the training data. Every method takes a batch
``(inputs, targets)``, or ``batch=None`` for the *full* training data, which is summed in
chunks of ``chunk_size`` examples (a weighted mean, accumulated in float64) so that a global
gradient never needs the whole data set in one pass. Results are on the parameters'
device; scalars are Python floats.

A curvature product can be asked for in another precision (``dtype="float32"``): it then
runs on a copy of the module cast to it, from the same parameter vector, and comes back in
that dtype (the caller widens it where it uses it, without a copy of its own).

Evaluations are counted and timed by kind -- ``function``, ``gradient``, ``hvp``,
``curvature``, ``gauss_newton`` on a batch, and ``global_function``, ``global_gradient``, ...
on the full data -- which is what the training history records per iteration and what the
benchmarks break an iteration's time down by.
"""

from __future__ import annotations

import copy
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from mcnet.algebra.multicomplex import array_module
from mcnet.nn.dropout import Dropout
from mcnet.nn.module import call_state_set_aside
from mcnet.nn.objective import Objective
from mcnet.nn.vector import parameters_to_vector

DEFAULT_TIMEOUT = 30.0  # seconds to reach a Dask scheduler and see its workers


def make_oracle(
    objective: Objective,
    data: tuple[Any, Any],
    chunk_size: int = 2048,
    *,
    scheduler: Any = None,
    workers: int | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Oracle:
    """The oracle `mcnet.fit` trains with: a plain `Oracle` when ``scheduler`` is None,
    else a `DaskOracle` on ``scheduler`` ("local", an address, a Client or a Cluster)."""
    if scheduler is None:
        if workers is not None:
            raise ValueError(
                f"workers={workers} needs a cluster: pass scheduler='local' to start one on "
                "this machine, or the address of a Dask scheduler"
            )
        return Oracle(objective, data, chunk_size)
    # Dask is optional and slow to import: only a run on a cluster loads it
    from mcnet.training.distributed import DaskOracle

    return DaskOracle(
        objective, data, chunk_size, scheduler=scheduler, workers=workers, timeout=timeout
    )


class Oracle:
    """Counted, timed loss/derivative evaluations on batches or on the full data."""

    def __init__(self, objective: Objective, data: tuple[Any, Any], chunk_size: int = 2048):
        self.objective = Objective(objective.module, objective.loss, keep_on_device=True)
        params = objective.module.parameters()
        self.device = params[0].value.device if params else "cpu"
        self.dtype = params[0].value.dtype if params else np.dtype(np.float64)
        self.shapes = [p.shape for p in params]
        inputs, targets = data
        if self.device == "cuda":  # moved once: the full-data sums never cross the bus again
            import cupy

            inputs, targets = cupy.asarray(inputs), cupy.asarray(targets)
        self.data = (inputs, targets)
        self.size = len(inputs)
        if (
            isinstance(chunk_size, bool)
            or not isinstance(chunk_size, (int, np.integer))
            or chunk_size < 1
        ):
            raise ValueError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")
        self.chunk_size = chunk_size
        self.seed = 0  # solvers that sample draw from default_rng([seed, iteration])
        self.counts: Counter[str] = Counter()
        self.seconds: Counter[str] = Counter()
        self._in_precision: dict[np.dtype, Objective] = {}  # see _objective_in

    def close(self) -> None:
        """Release what the oracle holds; a plain `Oracle` holds nothing to release."""

    @property
    def xp(self):
        """The array module of the parameters (NumPy or CuPy)."""
        return array_module(self.objective.module.parameters()[0].value.data)

    def initial_point(self):
        """The module's current parameters as a flat vector on their device."""
        w = parameters_to_vector(self.objective.module).astype(self.dtype, copy=False)
        return self.xp.asarray(w)

    # --- evaluations ------------------------------------------------------------------------
    def value(self, w, batch=None) -> float:
        return self._run("function", batch, lambda b: (self.objective.value(w, b),))[0]

    def value_and_grad(self, w, batch=None) -> tuple[float, Any]:
        return self._run("gradient", batch, lambda b: self.objective.value_and_grad(w, b))

    def value_grad_and_hvp(self, w, v, batch=None) -> tuple[float, Any, Any]:
        """(loss, gradient, H v) from one complex pass (CSDD)."""
        return self._run("hvp", batch, lambda b: self.objective.value_grad_and_hvp(w, v, b))

    def grad_and_hvp(self, w, v, batch=None) -> tuple[Any, Any]:
        """(gradient, H v) from one complex pass (CSDD)."""
        return self.value_grad_and_hvp(w, v, batch)[1:]

    def hvp(self, w, v, batch=None, dtype=None):
        """H v from one complex pass, computed in ``dtype`` (default: the parameters')."""
        objective = self._objective_in(dtype)
        return self._run("hvp", batch, lambda b: objective.grad_and_hvp(w, v, b))[1]

    def curvature(self, w, v, batch=None, dtype=None) -> float:
        """v^T H v from one bicomplex forward (CSDD2), computed in ``dtype``."""
        objective = self._objective_in(dtype)
        return self._run("curvature", batch, lambda b: (objective.curvature(w, v, b),))[0]

    def gauss_newton_product(self, w, v, batch=None, dtype=None):
        """G v, computed in ``dtype`` (default: the parameters')."""
        objective = self._objective_in(dtype)
        return self._run(
            "gauss_newton", batch, lambda b: (objective.gauss_newton_product(w, v, b),)
        )[0]

    # --- machinery --------------------------------------------------------------------------
    def _objective_in(self, dtype):
        """The objective whose passes run in ``dtype``: this one's for None or the
        parameters' dtype, else one on a copy of the module cast to it (made on first use;
        every call sets its parameters from the given vector, so it never goes stale)."""
        if dtype is None or np.dtype(dtype) == self.dtype:
            return self.objective
        dtype = np.dtype(dtype)
        if dtype not in self._in_precision:
            module = self.objective.module
            if any(isinstance(m, Dropout) and m.p > 0 for m in module.modules()):
                raise ValueError(
                    f"passes in {dtype} run on a copy of the module, whose Dropout masks "
                    "would differ from the module's: not supported with Dropout"
                )
            loss = self.objective.loss
            with call_state_set_aside(module, loss):
                twin, twin_loss = copy.deepcopy((module, loss))
            self._in_precision[dtype] = Objective(
                twin.to(dtype=dtype), twin_loss, keep_on_device=True
            )
        return self._in_precision[dtype]

    def _run(self, kind: str, batch, evaluate: Callable[[Any], tuple]) -> tuple:
        start = time.perf_counter()
        if batch is None:
            kind = "global_" + kind
            result = self._full_data_mean(evaluate)
        else:
            result = evaluate(batch)
        self.counts[kind] += 1
        # Counter sums floats as well as ints; typeshed types its counts as int only.
        self.seconds[kind] += time.perf_counter() - start  # type: ignore[assignment]
        return result

    def _full_data_mean(self, evaluate: Callable[[Any], tuple]) -> tuple:
        """The mean over the training data of a per-batch mean, chunk by chunk: every loss
        is a mean over its batch, so chunk results are weighted by chunk size / n."""
        inputs, targets = self.data
        totals: list[Any] = []
        for start in range(0, self.size, self.chunk_size):
            stop = start + self.chunk_size
            chunk = (inputs[start:stop], targets[start:stop])
            weight = len(chunk[0]) / self.size
            parts = evaluate(chunk)
            if not totals:
                totals = [weighted(part, weight) for part in parts]
            else:
                totals = [total + weighted(part, weight) for total, part in zip(totals, parts)]
        return tuple(
            float(t) if isinstance(t, float) else t.astype(self.dtype, copy=False) for t in totals
        )


def weighted(part: Any, weight: float) -> Any:
    """weight * part, in float64 for the accumulation."""
    if isinstance(part, float):
        return weight * part
    return part.astype(np.float64) * weight
