"""AdaGrad (Duchi, Hazan & Singer 2011): torch.optim.Adagrad's update rule."""

from __future__ import annotations

from typing import Any

from mcnet.algebra.multicomplex import array_module
from mcnet.solvers.base import FirstOrderSolver, State, check_positive


class AdaGrad(FirstOrderSolver):
    """AdaGrad exactly as torch.optim.Adagrad:

    g = grad + weight_decay * w, sum += g^2 (from ``initial_accumulator_value``),
    w -= lr / (1 + (t - 1) lr_decay) * g / (sqrt(sum) + eps).
    """

    name = "adagrad"

    def __init__(
        self,
        lr: float = 1e-2,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
    ) -> None:
        self.lr = check_positive("lr", lr)
        self.lr_decay = check_positive("lr_decay", lr_decay, allow_zero=True)
        self.weight_decay = check_positive("weight_decay", weight_decay, allow_zero=True)
        self.initial_accumulator_value = check_positive(
            "initial_accumulator_value", initial_accumulator_value, allow_zero=True
        )
        self.eps = check_positive("eps", eps, allow_zero=True)

    def init(self, oracle, w) -> State:
        xp = array_module(w)
        return {"t": 0, "sum": xp.full_like(w, self.initial_accumulator_value)}

    def update(self, grad, state: State, w) -> tuple[Any, State]:
        xp = array_module(w)
        t = int(state["t"]) + 1
        g = grad + self.weight_decay * w if self.weight_decay else grad
        clr = self.lr / (1 + (t - 1) * self.lr_decay)
        total = state["sum"] + g * g
        return -clr * (g / (xp.sqrt(total) + self.eps)), {"t": t, "sum": total}
