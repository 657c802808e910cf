"""Stochastic gradient descent with (Nesterov) momentum: torch.optim.SGD's update rule."""

from __future__ import annotations

from typing import Any

from mcnet.algebra.multicomplex import array_module
from mcnet.solvers.base import FirstOrderSolver, State, check_flag, check_fraction, check_positive


class SGD(FirstOrderSolver):
    """SGD exactly as torch.optim.SGD (Sutskever et al. 2013 for the momentum form):

    g = grad + weight_decay * w; buf = g on the first step, then
    momentum * buf + (1 - dampening) * g; the step is g + momentum * buf (Nesterov) or buf;
    w -= lr * step.
    """

    name = "sgd"

    def __init__(
        self,
        lr: float,
        momentum: float = 0.0,
        dampening: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ) -> None:
        self.lr = check_positive("lr", lr)
        self.momentum = check_positive("momentum", momentum, allow_zero=True)
        self.dampening = check_fraction("dampening", dampening)
        self.nesterov = check_flag("nesterov", nesterov)
        self.weight_decay = check_positive("weight_decay", weight_decay, allow_zero=True)
        if self.nesterov and (self.momentum == 0 or self.dampening != 0):
            # torch raises the same: Nesterov's look-ahead needs a buffer without dampening.
            raise ValueError("nesterov requires momentum > 0 and dampening = 0")

    def init(self, oracle, w) -> State:
        state: State = {"t": 0}
        if self.momentum:
            state["momentum_buffer"] = array_module(w).zeros_like(w)
        return state

    def update(self, grad, state: State, w) -> tuple[Any, State]:
        t = int(state["t"]) + 1
        g = grad + self.weight_decay * w if self.weight_decay else grad
        new: State = {"t": t}
        if self.momentum:
            if t == 1:
                buf = g.copy()  # torch: buf = clone(g) on the first step, no dampening
            else:
                buf = self.momentum * state["momentum_buffer"] + (1 - self.dampening) * g
            new["momentum_buffer"] = buf
            g = g + self.momentum * buf if self.nesterov else buf
        return -self.lr * g, new
