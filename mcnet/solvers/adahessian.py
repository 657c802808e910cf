"""AdaHessian (Yao, Gholami, Shen, Mustafa, Keutzer & Mahoney 2021, "ADAHESSIAN: An
Adaptive Second Order Optimizer for Machine Learning", AAAI): Adam with the square of
Hutchinson's diagonal Hessian in place of the square of the gradient, as the authors'
``Adahessian`` (amirgholami/adahessian), from the H u mcnet computes exactly."""

from __future__ import annotations

import math
from typing import Any

from mcnet.algebra.multicomplex import array_module
from mcnet.solvers.base import Solver, State, StepInfo, check_count, check_fraction, check_positive
from mcnet.solvers.schedule_free import check_betas
from mcnet.solvers.sophia import rademacher_probe


def spatial_average(values, shapes):
    """|values| with each kernel's entries averaged over its spatial dimensions: a
    parameter of ndim >= 3 (a Conv2d kernel (out, in, kh, kw)) gets, at every entry, the mean
    of |values| over its (kh, kw) window -- the authors' ``torch.mean(hv.abs(), dim=[2, 3])``
    broadcast back; 1-D and 2-D parameters keep |values| entry by entry. (The reference
    handles only ndim <= 2 and 4; other kernels are averaged over their dimensions after
    the second likewise.)"""
    xp = array_module(values)
    out = xp.abs(values)
    pieces, offset, averaged = [], 0, False
    for shape in shapes:
        size = math.prod(shape)
        piece = out[offset : offset + size]
        if len(shape) >= 3:
            block = piece.reshape(shape[0], shape[1], -1)
            piece = xp.broadcast_to(block.mean(axis=2, keepdims=True), block.shape).ravel()
            averaged = True
        pieces.append(piece)
        offset += size
    return xp.concatenate(pieces) if averaged else out


class AdaHessian(Solver):
    """AdaHessian exactly as the authors' ``Adahessian`` step (t = 1, 2, ...):

        D = |H u| (spatially averaged for conv kernels, `spatial_average`), u Rademacher
          (|H u| = |u * (H u)|, the Hutchinson diagonal's magnitude)
        m = b1 m + (1 - b1) g,   v = b2 v + (1 - b2) D^2
        denom = sqrt(v)^k / sqrt(1 - b2^t)^k + eps        k = ``hessian_power``
        w = w - lr (m / (1 - b1^t) / denom + weight_decay w)

    ``weight_decay`` enters the update as in the reference (decoupled from the moments,
    not added to the gradient). With ``update_every`` = n > 1 (the option of davda54's
    ``ada_hessian``; the authors' code estimates every step) D is re-estimated on steps
    1, 1 + n, ... and the last estimate, kept in the state as ``hessian_diag``, enters v on
    the steps between, as that implementation does. An estimating step takes the loss,
    gradient and H u from one complex pass; the others one real gradient pass. Probes are
    drawn from ``(oracle.seed, t)`` (`mcnet.solvers.sophia.rademacher_probe`).
    """

    name = "adahessian"

    def __init__(
        self,
        lr: float = 0.15,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-4,
        weight_decay: float = 0.0,
        hessian_power: float = 1.0,
        update_every: int = 1,
    ) -> None:
        self.lr = check_positive("lr", lr)
        self.betas = check_betas(betas)
        self.eps = check_positive("eps", eps, allow_zero=True)
        self.weight_decay = check_positive("weight_decay", weight_decay, allow_zero=True)
        self.hessian_power = check_fraction("hessian_power", hessian_power)
        self.update_every = check_count("update_every", update_every)

    def init(self, oracle, w) -> State:
        size = sum(math.prod(shape) for shape in oracle.shapes)
        if size != w.shape[0]:
            raise ValueError(
                f"the oracle's parameter shapes hold {size} numbers, w has {w.shape[0]}"
            )
        xp = array_module(w)
        return {
            "t": 0, "exp_avg": xp.zeros_like(w), "exp_hessian_diag_sq": xp.zeros_like(w),
            "hessian_diag": xp.zeros_like(w),
        }  # fmt: skip

    def step(self, oracle, w, batch, state: State) -> tuple[Any, State, StepInfo]:
        xp = array_module(w)
        beta1, beta2 = self.betas
        t = int(state["t"]) + 1
        if (t - 1) % self.update_every == 0:
            u = rademacher_probe(oracle, t, w)
            loss, grad, hu = oracle.value_grad_and_hvp(w, u, batch)
            diag = spatial_average(hu, oracle.shapes)
        else:
            loss, grad = oracle.value_and_grad(w, batch)
            diag = state["hessian_diag"]
        m = beta1 * state["exp_avg"] + (1 - beta1) * grad
        v = beta2 * state["exp_hessian_diag_sq"] + (1 - beta2) * (diag * diag)
        bias_correction1 = 1 - beta1**t
        bias_correction2 = 1 - beta2**t
        k = self.hessian_power
        denom = xp.sqrt(v) ** k / math.sqrt(bias_correction2) ** k + self.eps
        update = m / bias_correction1 / denom
        if self.weight_decay:
            update = update + self.weight_decay * w
        new: State = {"t": t, "exp_avg": m, "exp_hessian_diag_sq": v, "hessian_diag": diag}
        return w - self.lr * update, new, StepInfo(loss=loss, step_size=self.lr)
