"""RMSprop (Hinton, Lecture 6e of Neural Networks for Machine Learning, 2012; centered form
after Graves 2013): torch.optim.RMSprop's update rule."""

from __future__ import annotations

from typing import Any

from mcnet.algebra.multicomplex import array_module
from mcnet.solvers.base import FirstOrderSolver, State, check_flag, check_in_range, check_positive


class RMSprop(FirstOrderSolver):
    """RMSprop exactly as torch.optim.RMSprop:

    g = grad + weight_decay * w, v = alpha v + (1 - alpha) g^2; centered: a = alpha a +
    (1 - alpha) g and v - a^2 for v; with momentum buf = momentum buf + g / (sqrt(v) + eps),
    w -= lr buf, else w -= lr g / (sqrt(v) + eps).
    """

    name = "rmsprop"

    def __init__(
        self,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
    ) -> None:
        self.lr = check_positive("lr", lr)
        self.alpha = check_in_range("alpha", alpha, 0.0, 1.0)
        self.eps = check_positive("eps", eps, allow_zero=True)
        self.weight_decay = check_positive("weight_decay", weight_decay, allow_zero=True)
        self.momentum = check_positive("momentum", momentum, allow_zero=True)
        self.centered = check_flag("centered", centered)

    def init(self, oracle, w) -> State:
        xp = array_module(w)
        state: State = {"t": 0, "square_avg": xp.zeros_like(w)}
        if self.centered:
            state["grad_avg"] = xp.zeros_like(w)
        if self.momentum:
            state["momentum_buffer"] = xp.zeros_like(w)
        return state

    def update(self, grad, state: State, w) -> tuple[Any, State]:
        xp = array_module(w)
        alpha = self.alpha
        g = grad + self.weight_decay * w if self.weight_decay else grad
        square_avg = alpha * state["square_avg"] + (1 - alpha) * (g * g)
        new: State = {"t": int(state["t"]) + 1, "square_avg": square_avg}
        if self.centered:
            grad_avg = alpha * state["grad_avg"] + (1 - alpha) * g
            new["grad_avg"] = grad_avg
            # v - a^2 >= 0 in exact arithmetic (Jensen); the clamp only stops a rounding
            # error of the last bit from turning into a NaN.
            avg = xp.sqrt(xp.maximum(square_avg - grad_avg * grad_avg, 0)) + self.eps
        else:
            avg = xp.sqrt(square_avg) + self.eps
        if self.momentum:
            buf = self.momentum * state["momentum_buffer"] + g / avg
            new["momentum_buffer"] = buf
            return -self.lr * buf, new
        return -self.lr * (g / avg), new
