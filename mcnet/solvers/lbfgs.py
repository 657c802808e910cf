"""Stochastic L-BFGS with curvature-pair safeguards, and the Armijo backtracking line search
shared by the second-order baselines.

The two-loop recursion is Nocedal & Wright, *Numerical Optimization* (2006), Algorithm 7.4,
with the initial scaling s^T y / y^T y of eq. (7.20). On minibatches the pairs follow
Schraudolph, Yu & Guenter (2007): y is the gradient difference on the *same* batch, so that
it measures curvature rather than sampling noise.
"""

from __future__ import annotations

import math
from typing import Any

from mcnet.algebra.multicomplex import array_module
from mcnet.solvers.base import Solver, State, StepInfo, check_count, check_in_range, check_positive


def dot(a, b) -> float:
    """a^T b of real vectors, as a host float."""
    return float(a @ b)


def armijo_backtracking(
    oracle,
    w,
    direction,
    batch,
    loss: float,
    slope: float,
    *,
    step: float,
    c: float,
    tau: float,
    max_backtracks: int,
    first_value: float | None = None,
) -> tuple[Any, float, float, int]:
    """The first gamma = step * tau^j, j = 0..max_backtracks, with the Armijo decrease
    f(w + gamma d) <= loss + c gamma slope on the batch (slope = g^T d < 0).

    Returns (w_new, f(w_new), gamma, j); when no trial is accepted, (w, loss, 0.0,
    max_backtracks): no step. ``first_value`` is f(w + step d) when the caller knows it.
    A NaN trial value compares false and is rejected like an increase.
    """
    gamma = step
    for j in range(max_backtracks + 1):
        trial = w + gamma * direction
        value = first_value if j == 0 and first_value is not None else oracle.value(trial, batch)
        if value <= loss + c * gamma * slope:
            return trial, value, gamma, j
        gamma *= tau
    return w, loss, 0.0, max_backtracks


def two_loop(grad, s, y, count: int, head: int):
    """H grad for the L-BFGS inverse-Hessian approximation H of the stored pairs
    (Nocedal & Wright, Algorithm 7.4): ``s``, ``y`` are (history, n) ring buffers whose
    ``count`` newest rows end just before row ``head``. With no pairs, H = I."""
    history = s.shape[0]
    order = [(head - 1 - k) % history for k in range(count)]  # newest first
    q = grad.copy()
    alphas = []
    for i in order:
        rho = 1.0 / dot(s[i], y[i])
        alpha = rho * dot(s[i], q)
        q = q - alpha * y[i]
        alphas.append((rho, alpha))
    if count:
        newest = order[0]
        q = q * (dot(s[newest], y[newest]) / dot(y[newest], y[newest]))
    for i, (rho, alpha) in zip(reversed(order), reversed(alphas)):
        beta = rho * dot(y[i], q)
        q = q + (alpha - beta) * s[i]
    return q


class LBFGS(Solver):
    """Stochastic L-BFGS (Nocedal & Wright 2006, Alg. 7.4-7.5; pairs on the same batch as in
    Schraudolph et al. 2007).

    Per step: d = -H g by the two-loop recursion (memory reset and d = -g when d is not a
    descent direction); Armijo backtracking on the batch loss from ``lr`` (no step when
    ``max_backtracks`` reductions fail); y from one more gradient at the new point on the
    same batch; the pair is kept only if s^T y > curvature_eps ||s|| ||y||.
    """

    name = "lbfgs"

    def __init__(
        self,
        lr: float = 1.0,
        history: int = 10,
        max_backtracks: int = 20,
        c1: float = 1e-4,
        tau: float = 0.5,
        curvature_eps: float = 1e-10,
    ) -> None:
        self.lr = check_positive("lr", lr)
        self.history = check_count("history", history)
        self.max_backtracks = check_count("max_backtracks", max_backtracks, minimum=0)
        self.c1 = check_in_range("c1", c1, 0.0, 1.0)
        if self.c1 == 0:
            raise ValueError("c1 must be in (0, 1), got 0.0")
        self.tau = check_in_range("tau", tau, 0.0, 1.0)
        if self.tau == 0:
            raise ValueError("tau must be in (0, 1), got 0.0")
        self.curvature_eps = check_positive("curvature_eps", curvature_eps, allow_zero=True)

    def init(self, oracle, w) -> State:
        xp = array_module(w)
        memory = (self.history, w.shape[0])
        return {
            "s": xp.zeros(memory, dtype=w.dtype),
            "y": xp.zeros(memory, dtype=w.dtype),
            "count": 0,
            "head": 0,
        }

    def step(self, oracle, w, batch, state: State) -> tuple[Any, State, StepInfo]:
        s, y = state["s"], state["y"]
        count, head = int(state["count"]), int(state["head"])
        loss, grad = oracle.value_and_grad(w, batch)
        reasons = []
        direction = -two_loop(grad, s, y, count, head)
        slope = dot(grad, direction)
        if count and not slope < 0:  # also catches a NaN direction
            reasons.append("not a descent direction: memory reset")
            count = head = 0
            direction = -grad
            slope = dot(grad, direction)
        w_new, _, gamma, backtracks = armijo_backtracking(
            oracle, w, direction, batch, loss, slope,
            step=self.lr, c=self.c1, tau=self.tau, max_backtracks=self.max_backtracks,
        )  # fmt: skip
        if gamma == 0.0:
            reasons.append("no Armijo step")
        else:
            _, grad_new = oracle.value_and_grad(w_new, batch)
            s_k, y_k = w_new - w, grad_new - grad
            sy = dot(s_k, y_k)
            if sy > self.curvature_eps * math.sqrt(dot(s_k, s_k) * dot(y_k, y_k)):
                # Copy-on-write: the incoming state's memory is never modified.
                s, y = s.copy(), y.copy()
                s[head], y[head] = s_k, y_k
                head = (head + 1) % self.history
                count = min(count + 1, self.history)
            else:
                reasons.append("pair skipped: s^T y <= curvature_eps ||s|| ||y||")
        new_state = {"s": s, "y": y, "count": count, "head": head}
        info = StepInfo(
            loss=loss, step_size=gamma, adjustments=backtracks, reason="; ".join(reasons)
        )
        return w_new, new_state, info
