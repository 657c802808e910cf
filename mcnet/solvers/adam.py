"""Adam (Kingma & Ba 2015) and AMSGrad (Reddi, Kale & Kumar 2018): torch.optim.Adam's rule."""

from __future__ import annotations

import math
from typing import Any

from mcnet.algebra.multicomplex import array_module
from mcnet.solvers.base import FirstOrderSolver, State, check_flag, check_in_range, check_positive


class Adam(FirstOrderSolver):
    """Adam exactly as torch.optim.Adam (L2 ``weight_decay`` added to the gradient, not AdamW):

    m = b1 m + (1 - b1) g, v = b2 v + (1 - b2) g^2, (AMSGrad: v_max = max(v_max, v), used
    for v), w -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
    """

    name = "adam"

    def __init__(
        self,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
    ) -> None:
        self.lr = check_positive("lr", lr)
        if isinstance(betas, (str, bytes)) or not hasattr(betas, "__len__") or len(betas) != 2:
            raise TypeError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        self.betas = (
            check_in_range("betas[0]", betas[0], 0.0, 1.0),
            check_in_range("betas[1]", betas[1], 0.0, 1.0),
        )
        self.eps = check_positive("eps", eps, allow_zero=True)
        self.weight_decay = check_positive("weight_decay", weight_decay, allow_zero=True)
        self.amsgrad = check_flag("amsgrad", amsgrad)

    def init(self, oracle, w) -> State:
        xp = array_module(w)
        state: State = {"t": 0, "exp_avg": xp.zeros_like(w), "exp_avg_sq": xp.zeros_like(w)}
        if self.amsgrad:
            state["max_exp_avg_sq"] = xp.zeros_like(w)
        return state

    def update(self, grad, state: State, w) -> tuple[Any, State]:
        xp = array_module(w)
        beta1, beta2 = self.betas
        t = int(state["t"]) + 1
        g = grad + self.weight_decay * w if self.weight_decay else grad
        m = beta1 * state["exp_avg"] + (1 - beta1) * g
        v = beta2 * state["exp_avg_sq"] + (1 - beta2) * (g * g)
        new: State = {"t": t, "exp_avg": m, "exp_avg_sq": v}
        if self.amsgrad:
            # torch keeps the maximum of the raw second moments and bias-corrects it below.
            v = xp.maximum(state["max_exp_avg_sq"], v)
            new["max_exp_avg_sq"] = v
        step_size = self.lr / (1 - beta1**t)
        denom = xp.sqrt(v) * (1 / math.sqrt(1 - beta2**t)) + self.eps
        return -step_size * (m / denom), new
