"""Hessian-free optimisation (Martens 2010, "Deep learning via Hessian-free optimization",
ICML): truncated CG on the damped Gauss-Newton system with Martens' stopping rule, warm
starts, CG-iterate backtracking, Levenberg-Marquardt damping and an Armijo line search."""

from __future__ import annotations

import math
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


def levenberg_marquardt(damping: float, rho: float) -> float:
    """Martens' (2010, Sec. 4.1) rule: lambda * 3/2 if rho < 1/4, * 2/3 if rho > 3/4.

    ``rho`` is the reduction ratio (f(w+p) - f(w)) / (q(p) - q(0)); a NaN ratio (the model
    predicted no decrease, or the loss overflowed) counts as a bad model and raises lambda.
    """
    if not rho >= 0.25:  # NaN included
        return damping * 1.5
    if rho > 0.75:
        return damping * (2.0 / 3.0)
    return damping


def save_points(max_cg: int) -> set[int]:
    """The CG iterations i = ceil(1.3^j), j = 0, 1, ..., kept for backtracking (Martens
    2010, Sec. 4.6), up to ``max_cg``."""
    points, j = set(), 0
    while (i := math.ceil(1.3**j)) <= max_cg:
        points.add(i)
        j += 1
    return points


def conjugate_gradient(
    product, grad, x0, *, max_iterations: int, tol: float, keep: set[int] | None = None
) -> tuple[list[tuple[int, Any, float]], str]:
    """CG on A x = -grad from x0 with Martens' relative-progress stopping rule: at iteration i
    stop if i > k, phi(x_i) < 0 and (phi(x_i) - phi(x_{i-k})) / phi(x_i) < k tol, with
    k = max(10, 0.1 i) and phi(x) = x^T A x / 2 + grad^T x the quadratic model.

    ``product(v)`` is A v (A symmetric positive definite). Returns ([(i, x_i, phi(x_i)), ...]
    for i in ``keep`` and the last iteration, in increasing i; i = 0 is x0) and why it
    stopped. If phi(x0) >= 0 the warm start is no better than 0, and CG starts from 0.
    """
    xp = array_module(grad)
    b = -grad
    r = b - product(x0) if dot(x0, x0) else b
    # phi(x) = x^T A x / 2 - b^T x = -x^T (b + r) / 2, since A x = b - r: no extra product.
    phi = -0.5 * dot(x0, b + r)
    x = x0
    if not phi < 0:
        x, r, phi = xp.zeros_like(grad), b, 0.0
    keep = keep or set()
    kept: list[tuple[int, Any, float]] = []
    phis = [phi]
    d = r
    rr = dot(r, r)
    reason = f"max_cg ({max_iterations})"
    i = 0
    for i in range(1, max_iterations + 1):
        if rr == 0.0:
            i -= 1
            reason = "zero residual"
            break
        ad = product(d)
        dad = dot(d, ad)
        if not dad > 0:
            i -= 1
            reason = "non-positive curvature"
            break
        alpha = rr / dad
        x = x + alpha * d
        r = r - alpha * ad
        rr_new = dot(r, r)
        d = r + (rr_new / rr) * d
        rr = rr_new
        phi = -0.5 * dot(x, b + r)
        phis.append(phi)
        if i in keep:
            kept.append((i, x, phi))
        k = max(10, int(0.1 * i))
        if i > k and phi < 0 and (phi - phis[i - k]) / phi < k * tol:
            reason = "relative progress"
            break
    if not kept or kept[-1][0] != i:
        kept.append((i, x, phis[i]))
    return kept, reason


class HessianFree(Solver):
    """Hessian-free optimisation after Martens (2010).

    Per step: CG on (G + lambda I) p = -g, G v the Gauss-Newton product, from
    warm_start x the previous CG solution, stopped by Martens' relative-progress rule;
    backtracking over the CG iterates i = ceil(1.3^j) on the batch loss; lambda updated by
    the Levenberg-Marquardt rule on rho = (f(w+p) - f(w)) / (q(p) - q(0)), q the undamped
    Gauss-Newton model; then Armijo backtracking along p from gamma = 1.
    """

    name = "hessian-free"

    def __init__(
        self,
        damping: float = 1.0,
        max_cg: int = 50,
        cg_tol: float = 5e-4,
        warm_start: float = 0.95,
        c: float = 1e-2,
        tau: float = 0.8,
        max_backtracks: int = 20,
    ) -> None:
        self.damping = check_positive("damping", damping)
        self.max_cg = check_count("max_cg", max_cg)
        self.cg_tol = check_positive("cg_tol", cg_tol)
        self.warm_start = check_positive("warm_start", warm_start, allow_zero=True)
        if self.warm_start > 1:
            raise ValueError(f"warm_start must be in [0, 1], got {warm_start!r}")
        self.c = check_open_unit("c", c)
        self.tau = check_open_unit("tau", tau)
        self.max_backtracks = check_count("max_backtracks", max_backtracks, minimum=0)

    def init(self, oracle, w) -> State:
        return {"damping": self.damping, "cg_solution": array_module(w).zeros_like(w)}

    def step(self, oracle, w, batch, state: State) -> tuple[Any, State, StepInfo]:
        damping = float(state["damping"])
        loss, grad = oracle.value_and_grad(w, batch)

        def product(v):
            return oracle.gauss_newton_product(w, v, batch) + damping * v

        iterates, reason = conjugate_gradient(
            product, grad, self.warm_start * state["cg_solution"],
            max_iterations=self.max_cg, tol=self.cg_tol, keep=save_points(self.max_cg),
        )  # fmt: skip
        iterations = iterates[-1][0]
        # CG backtracking: scan back from the last iterate while the batch loss improves.
        best = len(iterates) - 1
        best_value = oracle.value(w + iterates[best][1], batch)
        for j in range(best - 1, -1, -1):
            value = oracle.value(w + iterates[j][1], batch)
            if not value < best_value:
                break
            best, best_value = j, value
        _, p, phi = iterates[best]
        # q(p) - q(0) of the undamped model = phi(p) - lambda |p|^2 / 2.
        predicted = phi - 0.5 * damping * dot(p, p)
        rho = (best_value - loss) / predicted if predicted < 0 else math.nan
        new_damping = levenberg_marquardt(damping, rho)
        slope = dot(grad, p)
        if slope < 0:
            w_new, _, gamma, backtracks = armijo_backtracking(
                oracle, w, p, batch, loss, slope, step=1.0, c=self.c, tau=self.tau,
                max_backtracks=self.max_backtracks, first_value=best_value,
            )  # fmt: skip
        else:  # only when g = 0 or CG could not move: nothing to descend along
            w_new, gamma, backtracks = w, 0.0, 0
        if gamma == 0.0:
            reason += "; no Armijo step"
        # Martens warm-starts from the last CG iterate, not the backtracked one: it is the
        # better solution of the quadratic model, which changes slowly between steps.
        new_state = {"damping": new_damping, "cg_solution": iterates[-1][1]}
        info = StepInfo(
            loss=loss, step_size=gamma, krylov_iterations=iterations,
            adjustments=backtracks, reason=reason,
        )  # fmt: skip
        return w_new, new_state, info
