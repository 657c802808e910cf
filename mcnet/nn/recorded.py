"""The steps a composite's forward records besides module calls (see ``mcnet.nn.graph``).

Each operation on traced values becomes one of these leaf modules, with its backward
written once for its kind:

- linear (``Shift``: ``x + c``, ``c - x``, ``-x``; ``Scale``: ``x * c``, ``x / c``;
  ``Subtract``; ``Reshape``; ``Transpose``; ``Sum``; ``Index``): the adjoint map;
- bilinear (``Multiply``): the product rule, each input's gradient the output's times the
  other input (a quotient of traced values is a product with a reciprocal,
  ``nn.Elementwise``);
- branch on the real part (``Abs``, ``Select`` for ``maximum``/``minimum``/``where``): the
  gradient goes where the real-part mask sent the value;
- ``LogSumExp``: the gradient times the softmax.

``nn.Add``, ``nn.Concat``, ``nn.Flatten``, ``nn.ReLU`` and ``nn.Elementwise`` serve for
``+``, ``mc.concatenate``, ``flatten``, ``mc.relu`` and the analytic functions.
Constants are numbers, arrays or tensors; broadcasting is undone by summing.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mcnet.algebra.multicomplex import array_module, sign_of_real
from mcnet.functions import abs as absolute
from mcnet.functions import exp, logsumexp, where
from mcnet.nn.merge import _sum_to_shape
from mcnet.nn.module import Module
from mcnet.tensor import Tensor, _component_key


class Shift(Module):
    """y = sign * x + offset (``offset`` a constant or None; ``sign`` +1 or -1)."""

    def __init__(self, offset: Any, sign: int) -> None:
        super().__init__()
        self.offset, self.sign = offset, sign

    def forward(self, x: Tensor) -> Tensor:
        self.saved = x.shape
        y = x if self.sign > 0 else -x
        return y if self.offset is None else y + self.offset

    def backward(self, grad_out: Tensor) -> Tensor:
        grad = _sum_to_shape(grad_out, self.saved)
        return grad if self.sign > 0 else -grad


class Scale(Module):
    """y = x * c, or x / c with ``divide`` (c a constant)."""

    def __init__(self, factor: Any, divide: bool = False) -> None:
        super().__init__()
        self.factor, self.divide = factor, divide

    def forward(self, x: Tensor) -> Tensor:
        self.saved = x.shape
        return x / self.factor if self.divide else x * self.factor

    def backward(self, grad_out: Tensor) -> Tensor:
        grad = grad_out / self.factor if self.divide else grad_out * self.factor
        return _sum_to_shape(grad, self.saved)


class Subtract(Module):
    """y = a - b (NumPy broadcasting)."""

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        self.saved = (_shape(a), _shape(b))
        return a - b

    def backward(self, grad_out: Tensor) -> tuple[Tensor, Tensor]:
        shape_a, shape_b = self.saved
        return _sum_to_shape(grad_out, shape_a), -_sum_to_shape(grad_out, shape_b)


class Multiply(Module):
    """y = a * b (NumPy broadcasting): grad a = grad y * b, grad b = grad y * a."""

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        self.saved = (a, b)
        return a * b

    def backward(self, grad_out: Tensor) -> tuple[Tensor, Tensor]:
        a, b = self.saved
        return _sum_to_shape(grad_out * b, _shape(a)), _sum_to_shape(grad_out * a, _shape(b))


class Reshape(Module):
    """y = x.reshape(shape) (one entry may be -1)."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.shape = shape

    def forward(self, x: Tensor) -> Tensor:
        self.saved = x.shape
        return x.reshape(self.shape)

    def backward(self, grad_out: Tensor) -> Tensor:
        return grad_out.reshape(self.saved)


class Transpose(Module):
    """y = x.transpose(axes) (reversed axes when none are given)."""

    def __init__(self, axes: tuple[int, ...]) -> None:
        super().__init__()
        self.axes = axes

    def forward(self, x: Tensor) -> Tensor:
        axes = tuple(a % x.ndim for a in self.axes) or tuple(range(x.ndim))[::-1]
        self.saved = tuple(np.argsort(axes))
        return x.transpose(axes)

    def backward(self, grad_out: Tensor) -> Tensor:
        return grad_out.transpose(self.saved)


class Sum(Module):
    """y = x.sum(axis, keepdims), or the mean with ``mean``."""

    def __init__(self, axis: Any, keepdims: bool, mean: bool) -> None:
        super().__init__()
        self.axis, self.keepdims, self.mean = axis, keepdims, mean

    def forward(self, x: Tensor) -> Tensor:
        self.saved = x.shape
        reduce = x.mean if self.mean else x.sum
        return reduce(axis=self.axis, keepdims=self.keepdims)

    def backward(self, grad_out: Tensor) -> Tensor:
        shape = self.saved
        axes = _axes(self.axis, len(shape))
        kept = tuple(1 if i in axes else n for i, n in enumerate(shape))
        grad = grad_out.reshape(kept)
        if self.mean:
            grad = grad * (1.0 / max(int(np.prod([shape[i] for i in axes])), 1))
        xp = array_module(grad.data)
        return Tensor(xp.broadcast_to(grad.data, (len(grad.data),) + shape))


class Index(Module):
    """y = x[key]: the gradient is added back into the indexed entries (repeats sum)."""

    def __init__(self, key: Any) -> None:
        super().__init__()
        self.key = key

    def forward(self, x: Tensor) -> Tensor:
        self.saved = x.shape
        return x[self.key]

    def backward(self, grad_out: Tensor) -> Tensor:
        xp = array_module(grad_out.data)
        data = xp.zeros((len(grad_out.data),) + self.saved, dtype=grad_out.data.dtype)
        xp.add.at(data, _component_key(self.key), grad_out.data)
        return Tensor(data)


class Abs(Module):
    """y = sign(Re x) x, as ``mc.abs``: the gradient times that sign."""

    def forward(self, x: Tensor) -> Tensor:
        self.saved = sign_of_real(x.comps)
        return absolute(x)

    def backward(self, grad_out: Tensor) -> Tensor:
        return Tensor(grad_out.data * self.saved)  # a real factor scales every component


class Select(Module):
    """``maximum``, ``minimum`` (by real part, ties and NaN to a) or ``where(condition, a,
    b)``: each entry is a's or b's whole number, and so is its gradient."""

    def __init__(self, kind: str, condition: Any = None) -> None:
        super().__init__()
        self.kind, self.condition = kind, condition

    def forward(self, a: Any, b: Any) -> Tensor:
        if self.kind == "where":
            chosen = _real(self.condition)
        else:
            first, second = _real(a), _real(b)
            xp = array_module(first) if hasattr(first, "shape") else np
            pick = first >= second if self.kind == "maximum" else first <= second
            chosen = pick | xp.isnan(first)
        y = where(chosen, a, b)
        self.saved = (chosen, _shape(a), _shape(b))
        return y

    def backward(self, grad_out: Tensor) -> tuple[Tensor, Tensor]:
        chosen, shape_a, shape_b = self.saved
        return (
            _sum_to_shape(where(chosen, grad_out, 0.0), shape_a),
            _sum_to_shape(where(chosen, 0.0, grad_out), shape_b),
        )

    def extra_repr(self) -> str:
        return self.kind


class LogSumExp(Module):
    """y = log(sum(exp(x), axis)): the gradient times softmax(x) along the axis."""

    def __init__(self, axis: Any, keepdims: bool) -> None:
        super().__init__()
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x: Tensor) -> Tensor:
        y = logsumexp(x, axis=self.axis, keepdims=True)
        self.saved = (x, y)
        return (
            y
            if self.keepdims
            else y.reshape(
                tuple(n for i, n in enumerate(y.shape) if i not in _axes(self.axis, x.ndim))
            )
        )

    def backward(self, grad_out: Tensor) -> Tensor:
        x, y = self.saved
        return grad_out.reshape(y.shape) * exp(x - y)


def _shape(x: Any) -> tuple[int, ...]:
    return tuple(np.shape(x)) if not isinstance(x, Tensor) else x.shape


def _real(x: Any) -> Any:
    return x.real if isinstance(x, Tensor) else x


def _axes(axis: Any, ndim: int) -> set[int]:
    if axis is None:
        return set(range(ndim))
    return {int(a) % ndim for a in (axis if isinstance(axis, (tuple, list)) else (axis,))}
