"""LSCG: a Newton step from CG on the normal equations (H^2 + damping I) dw = -H g (CGLS,
Hestenes & Stiefel 1952; Bjorck, *Numerical Methods for Least Squares Problems*, 1996,
Sec. 7.4), followed by Armijo backtracking. Unlike CG on H dw = -g, the normal equations
are positive semi-definite even where H is indefinite, so the Krylov loop never breaks
down on negative curvature."""

from __future__ import annotations

from typing import Any

from mcnet.algebra.multicomplex import array_module
from mcnet.solvers.base import (
    Solver,
    State,
    StepInfo,
    check_count,
    check_open_unit,
    check_positive,
)
from mcnet.solvers.lbfgs import armijo_backtracking, dot


def cgls(hvp, b, *, damping: float, max_iterations: int, tol: float) -> tuple[Any, int, str]:
    """min ||H x - b||^2 + damping ||x||^2 for symmetric H by CGLS (CG on the normal
    equations (H^2 + damping I) x = H b without forming them), from x = 0.

    ``hvp(v)`` is H v; each iteration costs two of them. Stops when the normal-equations
    residual H(b - H x) - damping x has shrunk by ``tol`` relative to its start.
    Returns (x, iterations, reason).
    """
    x = array_module(b).zeros_like(b)
    r = b  # b - H x, the least-squares residual
    s = hvp(r)  # H^T r - damping x, the normal-equations residual (H^T = H)
    p = s
    gamma = dot(s, s)
    target = tol * tol * gamma
    if gamma == 0.0:
        return x, 0, "zero residual"
    for i in range(1, max_iterations + 1):
        q = hvp(p)
        denominator = dot(q, q) + damping * dot(p, p)
        if not denominator > 0:
            return x, i - 1, "breakdown: H p = 0"
        alpha = gamma / denominator
        x = x + alpha * p
        r = r - alpha * q
        s = hvp(r) - damping * x if damping else hvp(r)
        gamma_new = dot(s, s)
        if gamma_new <= target:
            return x, i, "converged"
        p = s + (gamma_new / gamma) * p
        gamma = gamma_new
    return x, max_iterations, f"max_cg ({max_iterations})"


class LSCG(Solver):
    """Least-squares CG Newton steps: dw from CGLS on (H^2 + damping I) dw = -H g with
    exact H v products, then Armijo backtracking on the batch loss from gamma = 1.

    Where dw is not a descent direction (H indefinite), the step falls back to -g.
    """

    name = "lscg"

    def __init__(
        self,
        max_cg: int = 20,
        damping: float = 0.0,
        cg_tol: float = 1e-10,
        c: float = 1e-2,
        tau: float = 0.8,
        max_backtracks: int = 20,
    ) -> None:
        self.max_cg = check_count("max_cg", max_cg)
        self.damping = check_positive("damping", damping, allow_zero=True)
        self.cg_tol = check_positive("cg_tol", cg_tol)
        self.c = check_open_unit("c", c)
        self.tau = check_open_unit("tau", tau)
        self.max_backtracks = check_count("max_backtracks", max_backtracks, minimum=0)

    def init(self, oracle, w) -> State:
        return {}

    def step(self, oracle, w, batch, state: State) -> tuple[Any, State, StepInfo]:
        loss, grad = oracle.value_and_grad(w, batch)
        direction, iterations, reason = cgls(
            lambda v: oracle.hvp(w, v, batch), -grad,
            damping=self.damping, max_iterations=self.max_cg, tol=self.cg_tol,
        )  # fmt: skip
        slope = dot(grad, direction)
        if not slope < 0 and dot(grad, grad) > 0:
            # -(H^2 + damping)^-1 H g ascends where H has negative eigenvalues along g.
            reason += "; not a descent direction: -g instead"
            direction = -grad
            slope = dot(grad, direction)
        w_new, _, gamma, backtracks = armijo_backtracking(
            oracle, w, direction, batch, loss, slope,
            step=1.0, c=self.c, tau=self.tau, max_backtracks=self.max_backtracks,
        )  # fmt: skip
        if gamma == 0.0:
            reason += "; no Armijo step"
        info = StepInfo(
            loss=loss, step_size=gamma, krylov_iterations=iterations,
            adjustments=backtracks, reason=reason,
        )  # fmt: skip
        return w_new, {}, info
