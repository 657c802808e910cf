"""Modules that merge branches of a network: `Add` (residual sums) and `Concat`.

A composite's forward may only call modules (see ``mcnet.nn.graph``), so joining two
branches is itself a leaf module with a backward that hands each input its share.
"""

from __future__ import annotations

from mcnet.functions import concatenate
from mcnet.nn.module import Module
from mcnet.tensor import Tensor


def _sum_to_shape(grad: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Undo NumPy broadcasting: sum the gradient over the axes that were broadcast."""
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(
        extra + i for i, n in enumerate(shape) if n == 1 and grad.shape[extra + i] != 1
    )
    return grad.sum(axis=axes, keepdims=True).reshape(shape) if axes else grad.reshape(shape)


class Add(Module):
    """y = a + b (NumPy broadcasting); backward gives each input the output gradient."""

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        self.saved = (a.shape, b.shape)
        return a + b

    def backward(self, grad_out: Tensor) -> tuple[Tensor, Tensor]:
        shape_a, shape_b = self.saved
        return _sum_to_shape(grad_out, shape_a), _sum_to_shape(grad_out, shape_b)


class Concat(Module):
    """Concatenates its inputs along ``dim`` (default 1, the feature/channel axis)."""

    def __init__(self, dim: int = 1) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, *xs: Tensor) -> Tensor:
        if not xs:
            raise ValueError("Concat expected at least one input, got none")
        ndim = xs[0].ndim
        if not -ndim <= self.dim < ndim:
            raise ValueError(
                f"Concat(dim={self.dim}) expected inputs with more than {self.dim} dimensions, "
                f"got shape {xs[0].shape}"
            )
        axis = self.dim % ndim
        rest = xs[0].shape[:axis] + xs[0].shape[axis + 1 :]
        for x in xs:
            if x.ndim != ndim or x.shape[:axis] + x.shape[axis + 1 :] != rest:
                raise ValueError(
                    f"Concat(dim={self.dim}) expected inputs whose shapes agree except on dim "
                    f"{self.dim}, got shapes {[t.shape for t in xs]}"
                )
        self.saved = (axis, [x.shape[axis] for x in xs])
        return concatenate(xs, axis=axis)

    def backward(self, grad_out: Tensor) -> tuple[Tensor, ...]:
        axis, sizes = self.saved
        lead = (slice(None),) * axis
        grads, start = [], 0
        for n in sizes:
            grads.append(grad_out[lead + (slice(start, start + n),)])
            start += n
        return tuple(grads)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"
