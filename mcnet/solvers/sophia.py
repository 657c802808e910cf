"""Sophia-H (Liu, Li, Hall, Liang & Ma 2024, "Sophia: A Scalable Stochastic Second-order
Optimizer for Language Model Pre-training", ICLR): a clipped diagonal-Newton step whose
diagonal Hessian comes from Hutchinson's estimator u * (H u), with the H u that mcnet
computes exactly from one complex pass."""

from __future__ import annotations

from typing import Any

import numpy as np

from mcnet.algebra.multicomplex import array_module
from mcnet.solvers.base import Solver, State, StepInfo, check_count, check_positive
from mcnet.solvers.schedule_free import check_betas


def rademacher_probe(oracle, step: int, w):
    """A Rademacher vector (entries +-1, equally likely) like ``w`` (its dtype and device),
    drawn from ``default_rng([oracle.seed, step])``: the same seed and step count give the
    same probe, so a run is reproducible and resumes to the same parameters."""
    rng = np.random.default_rng([int(getattr(oracle, "seed", 0)), int(step)])
    u = (2 * rng.integers(0, 2, size=w.shape[0]) - 1).astype(w.dtype)
    return array_module(w).asarray(u)


def hutchinson_diagonal(oracle, w, batch, step: int) -> tuple[float, Any, Any]:
    """(loss, gradient, u * (H u)) at ``w`` from ONE complex pass, u = `rademacher_probe`:
    E[u * (H u)] = diag(H), and for a diagonal H it is exactly diag(H) (u * u = 1)."""
    u = rademacher_probe(oracle, step, w)
    loss, grad, hu = oracle.value_grad_and_hvp(w, u, batch)
    return loss, grad, u * hu


class Sophia(Solver):
    """Sophia with the Hutchinson estimator (Sophia-H), Algorithm 3 of the paper:

        m = b1 m + (1 - b1) g                          every step
        h = b2 h + (1 - b2) u * (H u)                  steps 1, 1 + k, 1 + 2k, ... (k =
                                                       ``update_every``), before the step
        w = w (1 - lr weight_decay)                    decoupled weight decay
        w = w - lr clip(m / max(rho h, eps), 1)        clip(z, 1) = max(min(z, 1), -1)

    (``rho`` is the paper's gamma.) No bias correction (neither the paper nor the released
    code has one); m and h start at 0, so the first steps are sign steps of size lr.

    Variant, decided: the paper's max(rho h, eps) rather than the released ``SophiaG``'s
    |m| / (rho * bs * h + 1e-15) clamped at 1. The two agree wherever rho h >> eps; they
    differ where it matters for Hutchinson's estimate, which (unlike SophiaG's
    Gauss-Newton-Bartlett one) can be negative on a non-convex loss: there the released
    form divides by a negative number and steps *uphill* by |m| / |rho h| (unclipped), the
    paper's takes a sign step of size lr. SophiaG's ``bs`` (tokens per batch) rescales its
    estimator B * g_hat^2 to the Hessian of the summed loss; u * (H u) of the mean batch
    loss needs no such factor, so rho multiplies the diagonal directly.

    On an update step the loss, gradient and H u come from one complex pass
    (``oracle.value_grad_and_hvp``); other steps take one real gradient pass. The probe
    is drawn from ``(oracle.seed, t)`` with t the step count kept in the state.
    """

    name = "sophia-h"

    def __init__(
        self,
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.965, 0.99),
        rho: float = 0.04,
        weight_decay: float = 1e-1,
        eps: float = 1e-12,
        update_every: int = 10,
    ) -> None:
        self.lr = check_positive("lr", lr)
        self.betas = check_betas(betas)
        self.rho = check_positive("rho", rho)
        self.weight_decay = check_positive("weight_decay", weight_decay, allow_zero=True)
        self.eps = check_positive("eps", eps)
        self.update_every = check_count("update_every", update_every)

    def init(self, oracle, w) -> State:
        xp = array_module(w)
        return {"t": 0, "exp_avg": xp.zeros_like(w), "hessian": xp.zeros_like(w)}

    def step(self, oracle, w, batch, state: State) -> tuple[Any, State, StepInfo]:
        xp = array_module(w)
        beta1, beta2 = self.betas
        t = int(state["t"]) + 1
        hessian = state["hessian"]
        if (t - 1) % self.update_every == 0:
            loss, grad, estimate = hutchinson_diagonal(oracle, w, batch, t)
            hessian = beta2 * hessian + (1 - beta2) * estimate
        else:
            loss, grad = oracle.value_and_grad(w, batch)
        m = beta1 * state["exp_avg"] + (1 - beta1) * grad
        ratio = xp.clip(m / xp.maximum(self.rho * hessian, self.eps), -1.0, 1.0)
        if self.weight_decay:
            w = w * (1 - self.lr * self.weight_decay)
        new: State = {"t": t, "exp_avg": m, "hessian": hessian}
        return w - self.lr * ratio, new, StepInfo(loss=loss, step_size=self.lr)
