"""`AvgPool2d` and `MaxPool2d` on NCHW images (no padding, floor mode: PyTorch's defaults).

Average pooling is linear: it and its adjoint act on the whole component array at once (see
``mcnet.nn.conv``).  Max pooling branches: the maximum is decided on the REAL part of each
window (``argmax`` of the real parts; ties go to the first element in row-major window order,
as NumPy's argmax), and the whole multicomplex element at that position is carried, so the
derivative passes see the same branch as the real pass.  Backward routes each output's
gradient to the element it chose.
"""

from __future__ import annotations

from mcnet.algebra.multicomplex import array_module
from mcnet.nn.conv import Pair, check_images, output_size, pair, scatter_windows, windows
from mcnet.nn.module import Module
from mcnet.tensor import Tensor


class _Pool2d(Module):
    def __init__(self, kernel_size: int | Pair, stride: int | Pair | None = None) -> None:
        super().__init__()
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = self.kernel_size if stride is None else pair(stride, "stride")
        if min(self.kernel_size) < 1 or min(self.stride) < 1:
            raise ValueError(
                f"{type(self).__name__} needs kernel_size >= 1 and stride >= 1, got "
                f"{self.kernel_size} and {self.stride}"
            )

    def _windows(self, x: Tensor):
        """``(K, N, C, Ho, Wo, kh, kw)`` view of x's components, after checking x."""
        check_images(x, None, type(self).__name__)
        output_size(x.shape[-2:], self.kernel_size, self.stride, type(self).__name__)
        return windows(x.data, self.kernel_size, self.stride)

    def _tiles(self, x: Tensor):
        """Non-overlapping windows as a reshape (no gather) when stride == kernel, else None."""
        (kh, kw), (h, w) = self.kernel_size, x.shape[-2:]
        if self.stride != self.kernel_size or h % kh or w % kw:
            return None
        return x.data.reshape(*x.data.shape[:3], h // kh, kh, w // kw, kw)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}"


class AvgPool2d(_Pool2d):
    """Mean over each kh x kw window; ``stride`` defaults to ``kernel_size``."""

    def forward(self, x: Tensor) -> Tensor:
        view = self._windows(x)
        self.saved = x.shape
        tiles = self._tiles(x)
        if tiles is not None:
            return Tensor(tiles.mean(axis=(4, 6)))
        return Tensor(view.mean(axis=(-2, -1)))

    def backward(self, grad_out: Tensor) -> Tensor:
        in_shape = self.saved
        (kh, kw), g = self.kernel_size, grad_out.data / (self.kernel_size[0] * self.kernel_size[1])
        xp = array_module(g)
        if self.stride == self.kernel_size:  # tiles: repeat each gradient over its tile
            ho, wo = g.shape[-2:]
            tiles = xp.broadcast_to(g[..., :, None, :, None], (*g.shape[:3], ho, kh, wo, kw))
            grad = xp.zeros((len(g), *in_shape), dtype=g.dtype)
            grad[..., : ho * kh, : wo * kw] = tiles.reshape(*g.shape[:3], ho * kh, wo * kw)
            return Tensor(grad)
        cols = xp.broadcast_to(g, (kh, kw, *g.shape))
        return Tensor(scatter_windows(cols, in_shape[-2:], self.stride))


class MaxPool2d(_Pool2d):
    """Maximum of each window by real part (ties: first in row-major order); the whole
    multicomplex element is carried.  ``stride`` defaults to ``kernel_size``."""

    def forward(self, x: Tensor) -> Tensor:
        view = self._windows(x)
        xp = array_module(view)
        k, n, c, ho, wo, kh, kw = view.shape
        flat = view.reshape(k, n, c, ho, wo, kh * kw)  # a copy: the windows gathered once
        real = flat[0].real if flat.dtype.kind == "c" else flat[0]
        choice = xp.argmax(real, axis=-1)  # (N, C, Ho, Wo), first index on ties
        picked = xp.take_along_axis(flat, choice[None, ..., None], axis=-1)[..., 0]
        self.saved = (choice, x.shape)
        return Tensor(picked)

    def backward(self, grad_out: Tensor) -> Tensor:
        choice, in_shape = self.saved
        g = grad_out.data
        xp = array_module(g)
        kh, kw = self.kernel_size
        offsets = xp.arange(kh * kw).reshape(kh, kw, 1, 1, 1, 1, 1)
        cols = xp.where(offsets == choice, g, xp.zeros((), dtype=g.dtype))  # (kh, kw, K, ...)
        return Tensor(scatter_windows(cols, in_shape[-2:], self.stride))
