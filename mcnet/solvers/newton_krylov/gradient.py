"""The global-gradient estimator of Newton-Krylov: the g that screens batches and steps."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from mcnet.solvers.base import check_choice, check_count


@dataclasses.dataclass(frozen=True)
class GlobalGradient:
    """g, the full-data gradient of line 1 and line 48, or an estimate of it.

    - ``kind="full"``, ``refresh_every=1``: the exact gradient after every step (Algorithm 1);
    - ``refresh_every=k``: refreshed after every k-th step, kept in between;
    - ``sample=m``: each refresh on m examples drawn afresh (seeded by the iteration);
    - ``kind="running"``: after the first, an exponential average of the batch gradients with
      weight batch size / n (about one epoch's worth), which needs no full-data pass at all.
    """

    kind: str = "full"
    refresh_every: int = 1
    sample: int | None = None

    def __post_init__(self) -> None:
        check_choice("global_gradient", self.kind, ("full", "running"))
        check_count("refresh_every", self.refresh_every)
        if self.sample is not None:
            check_count("gradient_sample", self.sample)

    def init(self, oracle, w) -> dict[str, Any]:
        return {
            "gradient.global": self._measure(oracle, w, iteration=0),
            "gradient.steps_since_refresh": 0,
            "gradient.stale": False,
        }

    def moved(self) -> dict[str, Any]:
        """The entries after the point moved otherwise than by a step (an epoch rolled back):
        a measured g is of the point left, so it is measured again before it is next read
        (`current`). A running average goes on: it is an estimate along the way by design."""
        return {"gradient.stale": self.kind == "full"}

    def current(self, oracle, w, state, iteration: int) -> dict[str, Any]:
        """The entries for a step at ``w``: g measured anew where `moved` left it stale."""
        if not state.get("gradient.stale", False):
            return {}
        return {
            "gradient.global": self._measure(oracle, w, iteration),
            "gradient.steps_since_refresh": 0,
            "gradient.stale": False,
        }

    def with_batch(self, g, g_batch, batch, oracle):
        """g once the batch gradient is known (the running average takes it in)."""
        if self.kind != "running":
            return g
        weight = g.dtype.type(min(1.0, len(batch[0]) / oracle.size) if batch else 1.0)
        return g * (1 - weight) + g_batch * weight

    def after_step(self, oracle, w_new, g, state, iteration: int) -> dict[str, Any]:
        """Line 48: the state's entries after a step to ``w_new``."""
        steps = state["gradient.steps_since_refresh"] + 1
        if steps >= self.refresh_every and self.kind == "full":
            g, steps = self._measure(oracle, w_new, iteration), 0
        return {
            "gradient.global": g,
            "gradient.steps_since_refresh": steps,
            "gradient.stale": False,
        }

    def _measure(self, oracle, w, iteration: int):
        if self.sample is None or self.sample >= oracle.size:
            return oracle.value_and_grad(w)[1]
        rng = np.random.default_rng([oracle.seed, iteration])
        rows = np.sort(rng.choice(oracle.size, self.sample, replace=False))
        inputs, targets = oracle.data
        return oracle.value_and_grad(w, (inputs[rows], targets[rows]))[1]
