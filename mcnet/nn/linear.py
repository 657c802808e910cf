"""`Linear`: y = x W^T + b, PyTorch's layout and initialisation."""

from __future__ import annotations

import math

from mcnet.nn.init import uniform
from mcnet.nn.module import Module, Parameter, add_to_fresh, gradient_product
from mcnet.tensor import Tensor


class Linear(Module):
    """Applies y = x W^T + b to the last axis; W is (out_features, in_features)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        bound = 1 / math.sqrt(in_features) if in_features else 0.0
        # PyTorch: kaiming_uniform(a=sqrt(5)) for the weight, U(-1/sqrt(fan_in), ...) for bias
        self.weight = Parameter(uniform((out_features, in_features), bound))
        self.bias = Parameter(uniform((out_features,), bound)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"Linear expected input with last dimension {self.in_features}, got shape {x.shape}"
            )
        self.saved = x
        y = x @ self.weight.value.T
        return y if self.bias is None else add_to_fresh(y, self.bias.value)

    def backward(self, grad_out: Tensor) -> Tensor | None:
        x = self.saved
        g2 = grad_out.reshape(-1, self.out_features)
        self.weight.accumulate(
            gradient_product(g2.T, x.reshape(-1, self.in_features), into=self.weight)
        )
        if self.bias is not None:
            self.bias.accumulate(g2.sum(axis=0))
        return grad_out @ self.weight.value if self.input_grad_needed else None

    def extra_repr(self) -> str:
        has_bias = self.bias is not None
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={has_bias}"
