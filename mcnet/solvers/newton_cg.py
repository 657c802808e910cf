"""`NewtonCG`: deterministic, full-batch truncated Newton with conjugate gradients.

Each step solves H dw = -g on the full training data by CG (H p from one complex pass
each), stopped by the forcing term ||r|| <= min(0.5, ||g||) ||g|| (Nocedal & Wright,
Algorithm 7.1), which gives local quadratic convergence, or at the first direction of
non-positive curvature (then the last iterate, or -g if there is none). An Armijo
backtracking line search from the full step keeps it globally convergent.
"""

from __future__ import annotations

import math
from typing import Any

from mcnet.solvers.base import (
    Solver,
    State,
    StepInfo,
    check_count,
    check_in_range,
)


class NewtonCG(Solver):
    """Full-batch Newton-CG (line-search truncated Newton)."""

    name = "newton-cg"
    full_batch = True

    def __init__(
        self, max_cg: int = 250, c: float = 1e-4, tau: float = 0.5, max_backtracks: int = 40
    ) -> None:
        self.max_cg = check_count("max_cg", max_cg)
        self.c = check_in_range("c", c, 0.0, 0.5)
        self.tau = check_in_range("tau", tau, 1e-6, 1.0)
        self.max_backtracks = check_count("max_backtracks", max_backtracks, 0)

    def step(self, oracle, w, batch, state: State) -> tuple[Any, State, StepInfo]:
        loss, g = oracle.value_and_grad(w, batch)
        g_norm = math.sqrt(float(g @ g))
        if g_norm == 0:
            return w, state, StepInfo(loss=loss, step_size=0.0, reason="zero gradient")
        tolerance = min(0.5, g_norm) * g_norm
        dw, r = oracle.xp.zeros_like(w), -g
        p, rr = r, g_norm * g_norm
        iterations, reason = 0, f"max_cg={self.max_cg} reached"
        while iterations < self.max_cg:
            if math.sqrt(rr) <= tolerance:
                reason = "converged"
                break
            hp = oracle.hvp(w, p, batch)
            kappa = float(p @ hp)
            if not kappa > 0:
                reason = "non-positive curvature"
                break
            alpha = w.dtype.type(rr / kappa)
            dw, r = dw + alpha * p, r - alpha * hp
            rr_next = float(r @ r)
            p, rr = r + w.dtype.type(rr_next / rr) * p, rr_next
            iterations += 1
        if iterations == 0:
            dw = -g
        slope = float(dw @ g)
        gamma, adjustments = 1.0, 0
        while True:
            trial = oracle.value(w + dw * w.dtype.type(gamma), batch)
            if math.isfinite(trial) and trial <= loss + self.c * gamma * slope:
                break
            if adjustments == self.max_backtracks:
                return (
                    w,
                    state,
                    StepInfo(
                        loss=loss,
                        step_size=0.0,
                        krylov_iterations=iterations,
                        adjustments=adjustments,
                        reason="line search failed",
                    ),
                )
            gamma *= self.tau
            adjustments += 1
        return (
            w + dw * w.dtype.type(gamma),
            state,
            StepInfo(
                loss=loss,
                step_size=gamma,
                krylov_iterations=iterations,
                adjustments=adjustments,
                reason=reason,
            ),
        )
