"""Schedule-Free AdamW (Defazio, Yang, Mehta, Mishchenko, Khaled & Cutkosky 2024, "The Road
Less Scheduled", NeurIPS): the AlgoPerf self-tuning winner, exactly as
``schedulefree.AdamWScheduleFree`` (facebookresearch/schedule_free)."""

from __future__ import annotations

import math
from typing import Any

from mcnet.algebra.multicomplex import array_module
from mcnet.solvers.base import (
    Solver,
    State,
    StepInfo,
    check_count,
    check_in_range,
    check_positive,
)


def check_betas(betas) -> tuple[float, float]:
    """``betas`` as a pair of floats in [0, 1), or an error naming the hyperparameter."""
    if isinstance(betas, (str, bytes)) or not hasattr(betas, "__len__") or len(betas) != 2:
        raise TypeError(f"betas must be a pair (beta1, beta2), got {betas!r}")
    return (
        check_in_range("betas[0]", betas[0], 0.0, 1.0),
        check_in_range("betas[1]", betas[1], 0.0, 1.0),
    )


class ScheduleFreeAdamW(Solver):
    """Schedule-Free AdamW, the update of ``schedulefree.AdamWScheduleFree`` (whose simple
    form is the repository's ``AdamWScheduleFreeReference``), step k = 0, 1, ...:

        lr_k   = lr * min(1, (k+1)/warmup_steps) * sqrt(1 - b2^(k+1))
        lr_max = max(lr_max, lr_k);  c = (k+1)^r lr_max^weight_lr_power / (sum of those)
        v = b2 v + (1 - b2) g^2                       g: the gradient at y
        z = z - lr_k weight_decay y - lr_k g / (sqrt(v) + eps)
        x = (1 - c) x + c z                           the averaged iterate
        y = b1 x + (1 - b1) z                         where the next gradient is taken

    There is no first moment: b1 is the interpolation between the average x and the base
    sequence z. The state keeps ``z``, ``x``, ``exp_avg_sq`` and the scalars ``k``,
    ``weight_sum``, ``lr_max`` (as the reference's param group does).

    **Which point is "the model".** ``step`` takes and returns y, the point where the
    gradients are evaluated (the reference's parameters in train mode), so the training
    loop is unchanged. The model to evaluate, checkpoint and keep is x (the reference's
    ``optimizer.eval()`` writes x into the parameters): `evaluation_point` gives it. x is
    held explicitly (not recovered from y and z as ``y + (1 - 1/b1)(z - y)``, which the
    fast reference does), so b1 = 0 works and nothing is lost to cancellation.
    """

    name = "schedule-free-adamw"

    def __init__(
        self,
        lr: float = 0.0025,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        warmup_steps: int = 0,
        r: float = 0.0,
        weight_lr_power: float = 2.0,
    ) -> None:
        self.lr = check_positive("lr", lr)
        self.betas = check_betas(betas)
        self.eps = check_positive("eps", eps, allow_zero=True)
        self.weight_decay = check_positive("weight_decay", weight_decay, allow_zero=True)
        self.warmup_steps = check_count("warmup_steps", warmup_steps, minimum=0)
        self.r = check_positive("r", r, allow_zero=True)
        self.weight_lr_power = check_positive("weight_lr_power", weight_lr_power, allow_zero=True)

    def init(self, oracle, w) -> State:
        xp = array_module(w)
        return {
            "k": 0, "weight_sum": 0.0, "lr_max": -1.0,
            "z": w.copy(), "x": w.copy(), "exp_avg_sq": xp.zeros_like(w),
        }  # fmt: skip

    def evaluation_point(self, state: State, w) -> Any:
        """The averaged iterate x: the parameters to evaluate and keep (the reference's
        eval mode). ``w`` (the gradient point y) is returned only before ``init``."""
        return state["x"] if "x" in state else w

    def step(self, oracle, w, batch, state: State) -> tuple[Any, State, StepInfo]:
        loss, grad = oracle.value_and_grad(w, batch)
        xp = array_module(w)
        beta1, beta2 = self.betas
        k = int(state["k"])
        sched = (k + 1) / self.warmup_steps if k < self.warmup_steps else 1.0
        lr = self.lr * sched * math.sqrt(1 - beta2 ** (k + 1))
        lr_max = max(lr, float(state["lr_max"]))
        weight = ((k + 1) ** self.r) * (lr_max**self.weight_lr_power)
        weight_sum = float(state["weight_sum"]) + weight
        ckp1 = weight / weight_sum if weight_sum != 0 else 0.0

        v = beta2 * state["exp_avg_sq"] + (1 - beta2) * (grad * grad)
        denom = xp.sqrt(v) + self.eps
        z = state["z"]
        if self.weight_decay:
            z = z - (lr * self.weight_decay) * w  # decay at y, the reference's default
        z = z - lr * (grad / denom)
        x = (1 - ckp1) * state["x"] + ckp1 * z
        y = beta1 * x + (1 - beta1) * z
        new: State = {
            "k": k + 1, "weight_sum": weight_sum, "lr_max": lr_max,
            "z": z, "x": x, "exp_avg_sq": v,
        }  # fmt: skip
        return y, new, StepInfo(loss=loss, step_size=lr)
