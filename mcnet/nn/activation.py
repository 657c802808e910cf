"""Elementwise activations as leaf modules: forward and hand-written backward.

Each backward is the holomorphic continuation of the real derivative (written with mcnet
operations only, never conjugating or dropping imaginary parts), so one complex pass gives
H v and higher orders give higher derivatives.  Branching activations (ReLU, ELU) decide on
the real part and take the ``x <= 0`` branch at 0, as ``mc.relu`` / ``mc.elu`` do.
"""

from __future__ import annotations

from mcnet.algebra import fast_paths
from mcnet.functions import cos, elu, sigmoid, sin, softplus, tanh, where
from mcnet.nn.module import Module
from mcnet.tensor import Tensor


class Identity(Module):
    """y = x."""

    def forward(self, x: Tensor) -> Tensor:
        return x

    def backward(self, grad_out: Tensor) -> Tensor:
        return grad_out


class Sigmoid(Module):
    """y = 1 / (1 + exp(-x)); dy/dx = y (1 - y)."""

    def forward(self, x: Tensor) -> Tensor:
        y = sigmoid(x)
        self.saved = y
        return y

    def backward(self, grad_out: Tensor) -> Tensor:
        y = self.saved
        out = fast_paths.first("sigmoid_backward", grad_out, y)
        return out if out is not None else grad_out * (y * (1.0 - y))


class Tanh(Module):
    """y = tanh(x); dy/dx = 1 - y^2."""

    def forward(self, x: Tensor) -> Tensor:
        y = tanh(x)
        self.saved = y
        return y

    def backward(self, grad_out: Tensor) -> Tensor:
        y = self.saved
        return grad_out * (1.0 - y * y)


class ReLU(Module):
    """y = x where Re x > 0, else 0 (derivative 0 at 0, as PyTorch)."""

    def forward(self, x: Tensor) -> Tensor:
        fast = fast_paths.first("relu_forward", x)
        if fast is not None:
            y, self.saved = fast
            return y
        positive = x.real > 0
        self.saved = positive
        return where(positive, x, 0.0)

    def backward(self, grad_out: Tensor) -> Tensor:
        fast = fast_paths.first("relu_backward", grad_out, self.saved)
        return fast if fast is not None else where(self.saved, grad_out, 0.0)


class ELU(Module):
    """y = x where Re x > 0, else alpha (exp(x) - 1); dy/dx = 1 or y + alpha."""

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__()
        self.alpha = float(alpha)

    def forward(self, x: Tensor) -> Tensor:
        fast = fast_paths.first("elu_forward", x, self.alpha)
        if fast is not None:
            y, positive = fast
        else:
            y, positive = elu(x, self.alpha), x.real > 0
        self.saved = (positive, y)
        return y

    def backward(self, grad_out: Tensor) -> Tensor:
        positive, y = self.saved
        fast = fast_paths.first("elu_backward", grad_out, positive, y, self.alpha)
        if fast is not None:
            return fast
        return where(positive, grad_out, grad_out * (y + self.alpha))

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


class Softplus(Module):
    """y = log(1 + exp(x)) (PyTorch's beta=1); dy/dx = sigmoid(x).

    PyTorch switches to y = x above ``threshold=20``; here the exact function is used
    everywhere (the two differ by log1p(exp(-x)) < 2.1e-9 there), so every derivative is
    that of the smooth softplus.
    """

    def forward(self, x: Tensor) -> Tensor:
        self.saved = x
        return softplus(x)

    def backward(self, grad_out: Tensor) -> Tensor:
        return grad_out * sigmoid(self.saved)


class Sin(Module):
    """y = sin(x); dy/dx = cos(x)."""

    def forward(self, x: Tensor) -> Tensor:
        self.saved = x
        return sin(x)

    def backward(self, grad_out: Tensor) -> Tensor:
        return grad_out * cos(self.saved)
