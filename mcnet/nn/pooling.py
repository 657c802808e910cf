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
from mcnet.nn import loops
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

    def _output_size(self, x: Tensor) -> Pair:
        """(Ho, Wo) of images x, after checking x (a clear error for bad input)."""
        name = type(self).__name__
        check_images(x, None, name)
        return output_size((x.shape[-2], x.shape[-1]), self.kernel_size, self.stride, name)

    def _windows(self, x: Tensor):
        """``(K, N, C, Ho, Wo, kh, kw)`` view of x's components, after checking x."""
        self._output_size(x)
        return windows(x.data, self.kernel_size, self.stride)

    def _offsets(self, x: Tensor):
        """For each kernel offset (i, j), the strided ``(K, N, C, Ho, Wo)`` view of the
        elements it covers in every window."""
        ho, wo = self._output_size(x)
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        for i in range(kh):
            for j in range(kw):
                yield x.data[..., i : i + sh * (ho - 1) + 1 : sh, j : j + sw * (wo - 1) + 1 : sw]

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}"


class AvgPool2d(_Pool2d):
    """Mean over each kh x kw window; ``stride`` defaults to ``kernel_size``."""

    def forward(self, x: Tensor) -> Tensor:
        self.saved = x.shape
        if x.device == "cpu":  # one Numba pass; the result is laid out channel-major
            size = self._output_size(x)
            return Tensor(loops.avg_pool(x.data, self.kernel_size, self.stride, size))
        # one strided add per kernel offset, not a mean over window axes (a copy per window)
        offsets = self._offsets(x)
        total = next(offsets).copy()
        for part in offsets:
            total += part
        return Tensor(total * (1.0 / (self.kernel_size[0] * self.kernel_size[1])))

    def backward(self, grad_out: Tensor) -> Tensor:
        (kh, kw), in_shape = self.kernel_size, self.saved
        if grad_out.device == "cpu":
            shape = (len(grad_out.data), *in_shape)
            return Tensor(loops.avg_pool_backward(grad_out.data, shape, self.kernel_size,
                                                  self.stride))  # fmt: skip
        g = grad_out.data * (1.0 / (kh * kw))
        cols = array_module(g).broadcast_to(g, (kh, kw, *g.shape))
        return Tensor(scatter_windows(cols, in_shape[-2:], self.stride))


class MaxPool2d(_Pool2d):
    """Maximum of each window by real part (ties: first in row-major order); the whole
    multicomplex element is carried.  ``stride`` defaults to ``kernel_size``."""

    def forward(self, x: Tensor) -> Tensor:
        if x.device == "cpu":  # one Numba pass; the result is laid out channel-major
            size = self._output_size(x)
            picked, choice = loops.max_pool(x.data, self.kernel_size, self.stride, size)
            self.saved = (choice, x.shape)
            return Tensor(picked)
        return self._forward_windows(x)

    def _forward_windows(self, x: Tensor) -> Tensor:
        """The forward by array operations on the windows (the GPU's)."""
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
        if grad_out.device == "cpu":
            shape = (len(g), *in_shape)
            return Tensor(loops.max_pool_backward(g, choice, shape, self.kernel_size,
                                                  self.stride))  # fmt: skip
        xp = array_module(g)
        kh, kw = self.kernel_size
        offsets = xp.arange(kh * kw).reshape(kh, kw, 1, 1, 1, 1, 1)
        cols = xp.where(offsets == choice, g, xp.zeros((), dtype=g.dtype))  # (kh, kw, K, ...)
        return Tensor(scatter_windows(cols, in_shape[-2:], self.stride))
