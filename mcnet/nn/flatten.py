"""`Flatten`: merge a range of dimensions into one (a view; backward reshapes back)."""

from __future__ import annotations

import math

from mcnet.nn.module import Module
from mcnet.tensor import Tensor


class Flatten(Module):
    """Flattens dimensions ``start_dim`` .. ``end_dim`` (PyTorch's defaults 1, -1)."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        start, end = self.start_dim % max(len(shape), 1), self.end_dim % max(len(shape), 1)
        if not shape or start > end:
            raise ValueError(
                f"Flatten(start_dim={self.start_dim}, end_dim={self.end_dim}) expected an input "
                f"with dimensions start_dim..end_dim in order, got shape {shape}"
            )
        self.saved = shape
        return x.reshape(shape[:start] + (math.prod(shape[start : end + 1]),) + shape[end + 1 :])

    def backward(self, grad_out: Tensor) -> Tensor:
        return grad_out.reshape(self.saved)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"
