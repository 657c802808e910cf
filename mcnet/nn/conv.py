"""`Conv2d` with its hand-written backward: a direct correlation of real images at stride 1,
im2col and one GEMM otherwise.

Every map here except the contraction is *linear* (pad, window gather, scatter-add, crop), so
it acts the same on every multicomplex component.  A tensor keeps its components on a leading
axis of one array (``Tensor.data``), so these maps run once on that whole array, the component
axis being one more batch axis: that is ``mc.lift_linear`` without a Python loop over
components.

**Real images at stride 1** (every network's first layer in every pass, and every layer of a
real pass: the gradient, the loss) on the CPU: ``correlation.correlate`` sums shifted copies
of the zero-padded, flattened image planes, and never writes the columns matrix (25x the input
for a 5x5 kernel) that im2col + GEMM writes and OpenBLAS then packs once more.  A weight of any
order is one real correlation per real part of its components (the images are real, so the
product rule is one term per component).  The backward reads the same planes: the weight
gradient by ``correlation.correlate_weights``, and for a real weight the input gradient by one
GEMM ``W^T @ g`` a batch chunk at a time, added back into the planes in long runs
(``correlation.correlate_input``).  What that gained on LeNet-5 is in ``benchmarks/README.md``.

**Complex images of order 1 at stride 1** (a gradient, H v or Gauss-Newton pass after the
first layer) with few channels, a weight and bias real or complex of order 1: the same
correlation on planes of the images' real parts and i-parts, each part of every result one
real correlation over the parts that its product-rule terms read (``gemm.order_one_terms``,
the i-parts' product left out where it is below roundoff), in the forward and in both
adjoints (``correlation.correlate_order_one`` and its adjoints).

**3x3 kernels at stride 1 with many channels** (VGG-11's convolutions after the first,
after the second in a real pass) on the CPU, with images, weight and bias real or complex
of order 1 (a gradient, an H v or a Gauss-Newton pass): Winograd's F(2x2, 3x3)
(``winograd``), 2.25x fewer multiplications than the GEMM of the columns, complex operands
as real part and i-part.

**Otherwise** (other kernels, strides, images with several components: a higher-order
pass) im2col by a Numba loop, a batch chunk at a time (``loops.CHUNK_BYTES`` of
columns, in cache when the GEMM reads them, or the weight's size if that is larger), then
``functions.matmul_each``, which turns the contraction into real/complex GEMMs by the
multicomplex product rule, the weight's side prepared once for all chunks.  GEMM shapes
(M = Nc*Ho*Wo output pixels of a chunk): forward ``(O, C*kh*kw) @ (C*kh*kw, M)``; backward
weight ``(O, M) @ (M, C*kh*kw)`` and input ``(C*kh*kw, O) @ (O, M)``.  Pixels run along the
long, contiguous axis, which suits OpenBLAS better than the ``(M, C*kh*kw)`` layout for a
network's tall, thin products.  col2im adds each chunk's columns back in one Numba pass
instead of one strided NumPy add per kernel offset.

**Order-1 complex images and weight** through im2col (more channels, or a stride) in an H v
pass that wants the derivative parts alone (``module.derivative_parts_only``,
``Objective.hvp``) whose weight is small beside a chunk's columns (8x the output channels at
most as many columns: not VGG-11's layers) go through that path in the one-direction layout,
real part and i-part as two real arrays (``loops.split_order_one``, a pass over the images,
not the 25x larger columns): the columns are then built as two real halves, the weight's
side is one block matrix, and no GEMM splits interleaved columns into their parts again.
Where the i-parts' product (which adds only to the real part) is below the real GEMM's
roundoff, judged from the images' or the output gradient's largest parts, the block matrix's
i-part block is left out: 3 real GEMMs of the 4 (``gemm.Product``).  The results come back
as complex data."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from mcnet.algebra.loops import join_order_one, split_order_one
from mcnet.algebra.multicomplex import array_module
from mcnet.functions import matmul, matmul_each
from mcnet.nn import correlation, loops, winograd
from mcnet.nn.init import uniform
from mcnet.nn.module import (
    Module,
    Parameter,
    add_to_fresh,
    derivative_part,
    derivative_parts_wanted,
    gradient_product,
    real_or_order_one,
)
from mcnet.tensor import Tensor

Pair = tuple[int, int]


@dataclass(frozen=True)
class _Saved:
    """What a forward keeps for its backward: with ``direct``, the direct correlation's planes
    in ``data``; otherwise its input (its columns, on a GPU)."""

    direct: bool
    data: correlation.Planes | Tensor
    in_shape: tuple[int, ...]
    size: Pair  # the padded image size
    winograd: bool = False  # ``data`` the input of a Winograd forward


def pair(value: int | tuple[int, int], name: str) -> Pair:
    """An int or a pair of ints as a pair of positive ints (PyTorch's convention)."""
    pair_ = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    if len(pair_) != 2 or not all(isinstance(v, (int, np.integer)) for v in pair_):
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    return int(pair_[0]), int(pair_[1])


def output_size(size: Pair, kernel: Pair, stride: Pair, layer: str) -> Pair:
    """floor((size - kernel) / stride) + 1 per axis; an error if the window does not fit."""
    if size[0] < kernel[0] or size[1] < kernel[1]:
        raise ValueError(
            f"{layer}: the (padded) input is {size[0]}x{size[1]}, smaller than the "
            f"{kernel[0]}x{kernel[1]} kernel"
        )
    return (size[0] - kernel[0]) // stride[0] + 1, (size[1] - kernel[1]) // stride[1] + 1


def check_images(x: Tensor, channels: int | None, layer: str) -> None:
    """Images must be NCHW with the expected channel count."""
    if x.ndim != 4:
        raise ValueError(
            f"{layer} expected a 4-D input (N, C, H, W), got shape {x.shape} ({x.ndim}-D)"
        )
    if channels is not None and x.shape[1] != channels:
        raise ValueError(
            f"{layer} expected {channels} input channels, got {x.shape[1]} (input shape {x.shape})"
        )


def windows(data, kernel: Pair, stride: Pair):
    """View ``(..., H, W)`` as ``(..., Ho, Wo, kh, kw)``: every strided kh x kw window."""
    view = sliding_window_view(data, kernel, axis=(-2, -1))
    return view[..., :: stride[0], :: stride[1], :, :]


def scatter_windows(cols, size: Pair, stride: Pair):
    """The adjoint of ``windows`` (col2im): add windows laid out ``(kh, kw, ..., Ho, Wo)`` back
    into ``(..., H, W)``.  One strided add per kernel offset, each over the whole batch."""
    xp = array_module(cols)
    kh, kw, *lead, ho, wo = cols.shape
    out = xp.zeros((*lead, *size), dtype=cols.dtype)
    sh, sw = stride
    for i in range(kh):
        for j in range(kw):
            out[..., i : i + sh * (ho - 1) + 1 : sh, j : j + sw * (wo - 1) + 1 : sw] += cols[i, j]
    return out


def pad_images(data, padding: Pair):
    if padding == (0, 0):
        return data
    ph, pw = padding
    widths = [(0, 0)] * (data.ndim - 2) + [(ph, ph), (pw, pw)]
    return array_module(data).pad(data, widths)


def crop_images(data, padding: Pair):
    ph, pw = padding
    return data[..., ph : data.shape[-2] - ph, pw : data.shape[-1] - pw]


class Conv2d(Module):
    """2-D cross-correlation of NCHW images, PyTorch's ``Conv2d`` (groups=1, dilation=1).

    ``weight`` is (out_channels, in_channels, kh, kw), ``bias`` (out_channels,); both drawn
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in = in_channels*kh*kw, as PyTorch's default.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = pair(stride, "stride")
        self.padding = pair(padding, "padding")
        if min(self.kernel_size) < 1 or min(self.stride) < 1 or min(self.padding) < 0:
            raise ValueError(
                f"Conv2d needs kernel_size >= 1, stride >= 1, padding >= 0; got "
                f"{self.kernel_size}, {self.stride}, {self.padding}"
            )
        fan_in = self.in_channels * self.kernel_size[0] * self.kernel_size[1]
        bound = 1 / math.sqrt(fan_in) if fan_in else 0.0
        shape = (self.out_channels, self.in_channels, *self.kernel_size)
        self.weight = Parameter(uniform(shape, bound))
        self.bias = Parameter(uniform((self.out_channels,), bound)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        check_images(x, self.in_channels, "Conv2d")
        if x.device == "cpu":
            return self._forward_cpu(x)
        padded = pad_images(x.data, self.padding)
        size = padded.shape[-2:]
        ho, wo = output_size(size, self.kernel_size, self.stride, "Conv2d")
        n, k = x.shape[0], len(x.data)
        # (K, N, C, Ho, Wo, kh, kw) -> (K, C*kh*kw, N*Ho*Wo): one column per output pixel
        view = windows(padded, self.kernel_size, self.stride)
        cols = Tensor(view.transpose(0, 2, 5, 6, 1, 3, 4).reshape(k, -1, n * ho * wo))
        y = matmul(self.weight.value.reshape(self.out_channels, -1), cols)  # (O, M)
        if self.bias is not None:
            y = y + self.bias.value.reshape(-1, 1)
        self.saved = _Saved(direct=False, data=cols, in_shape=x.shape, size=size)
        return y.reshape(self.out_channels, n, ho, wo).transpose(1, 0, 2, 3)

    def _forward_cpu(self, x: Tensor) -> Tensor:
        """Real images at stride 1: the direct correlation (``correlation.correlate``), which
        never builds the columns.  Otherwise im2col by a Numba loop (padding included, no padded
        copy), then the GEMMs of the product rule (``matmul_each``).  Either way the output
        stays channel-major ``(O, N, Ho, Wo)`` in memory, a transposed view."""
        ph, pw = self.padding
        size = (x.shape[2] + 2 * ph, x.shape[3] + 2 * pw)
        ho, wo = output_size(size, self.kernel_size, self.stride, "Conv2d")
        if self._direct(x):
            return self._correlate(x, size)
        if self._winograd(x):
            return self._winograd_forward(x, size)
        n, in_shape = x.shape[0], x.shape
        w2 = self.weight.value.reshape(self.out_channels, -1)
        # a small weight (its block matrix read from cache, beside 8x its size of columns
        # a chunk: algebra.gemm) against columns built from two real halves: one GEMM a chunk.
        # Only where the backward wants the derivative parts alone (H v): there the split
        # pays; a forward alone (a Gauss-Newton product's) is faster on complex columns
        split = (
            _complex_order_one(x)
            and _complex_order_one(w2)
            and derivative_parts_wanted()
            and 8 * self.out_channels <= min(n, self._chunk_images(x, (ho, wo))) * ho * wo
        )
        largest = None  # the columns' max |part|s: the images' at stride 1 (every pixel used)
        if split:
            (x, x_largest), (w2, _) = _split(x), _split(w2)
            largest = x_largest if self.stride == (1, 1) else None
        parts = [y.data for y in matmul_each(w2, self._columns(x, (ho, wo)), largest)]  # (O, Mc)
        y = Tensor(np.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0])
        if split:
            y = Tensor(join_order_one(y.data))
        if self.bias is not None:
            y = add_to_fresh(y, self.bias.value.reshape(-1, 1))
        self.saved = _Saved(direct=False, data=x, in_shape=in_shape, size=size)
        return y.reshape(self.out_channels, n, ho, wo).transpose(1, 0, 2, 3)

    def _columns(self, x: Tensor, out_size: Pair):
        """im2col's columns a batch chunk at a time (about ``_chunk_bytes``: in cache when the
        GEMM reads them), as tensors ``(C*kh*kw, Nc*Ho*Wo)``."""
        chunk = self._chunk_images(x, out_size)
        for n0 in range(0, x.shape[0], chunk):
            data = x.data[:, n0 : n0 + chunk]
            yield Tensor(loops.im2col(data, self.kernel_size, self.stride, self.padding, out_size))

    def _chunk_images(self, x: Tensor, out_size: Pair) -> int:
        """The images of a batch chunk of ``_columns``."""
        per_image = len(x.data) * x.shape[1] * math.prod(self.kernel_size) * math.prod(out_size)
        return max(1, self._chunk_bytes() // (per_image * x.data.itemsize))

    def _chunk_bytes(self) -> int:
        """The bytes of columns a batch chunk of every product: ``loops.CHUNK_BYTES``, or the
        weight's when that is larger.  A GEMM with a large weight (VGG-11's 512 x 4608) and a
        few dozen columns runs at 57 GFLOPS against 81 with a thousand, and repacks the
        weight for each chunk."""
        return max(loops.CHUNK_BYTES, self.weight.value.data.nbytes)

    def _direct(self, x: Tensor) -> bool:
        """Whether the direct correlation applies and pays: stride 1, images of one
        component, real (as every network's data is, and every real pass's activations) with
        a weight of any order, or complex (a gradient, H v or Gauss-Newton pass) with a real
        or complex weight and bias; all of one precision, and few channels: its loops are
        memory-bound sums that beat im2col + GEMM only while the GEMM is small
        (``_DIRECT_CHANNEL_PAIRS``)."""
        real = np.finfo(x.data.dtype).dtype
        operands = [self.weight.value.data]
        if x.data.dtype.kind == "c" and self.bias is not None:
            operands.append(self.bias.value.data)
        return (
            self.stride == (1, 1)
            and isinstance(x.data, np.ndarray)
            and x.data.shape[0] == 1
            and all(np.finfo(d.dtype).dtype == real for d in operands)
            and (x.data.dtype.kind == "f" or all(real_or_order_one(d) for d in operands))
            and self.in_channels * self.out_channels
            <= _DIRECT_CHANNEL_PAIRS[x.data.dtype.kind, real.itemsize]
        )

    def _winograd(self, x: Tensor) -> bool:
        """Whether Winograd's F(2x2, 3x3) applies and pays: a 3x3 kernel at stride 1, images,
        weight and bias real or complex of order 1 in one precision, and enough channel
        pairs that the 16 GEMMs, not the transforms, take the time
        (``_WINOGRAD_CHANNEL_PAIRS``, fewer for complex operands: their GEMMs cost more)."""
        operands = [x.data, self.weight.value.data]
        if self.bias is not None:
            operands.append(self.bias.value.data)
        kind = "complex" if any(d.dtype.kind == "c" for d in operands[:2]) else "real"
        return (
            self.kernel_size == (3, 3)
            and self.stride == (1, 1)
            and self.in_channels * self.out_channels >= _WINOGRAD_CHANNEL_PAIRS[kind]
            and all(real_or_order_one(d) for d in operands)
            and len({np.finfo(d.dtype).dtype for d in operands}) == 1
        )

    def _winograd_forward(self, x: Tensor, size: Pair) -> Tensor:
        """The forward by ``winograd.forward``, complex operands as (real part, i-part)."""
        images = loops.channel_major(_parts(x.data))  # (P, C, N, H, W)
        bias = None if self.bias is None else _parts(self.bias.value.data)
        y = winograd.forward(images, _parts(self.weight.value.data), bias, self.padding)
        self.saved = _Saved(direct=False, data=x, in_shape=x.shape, size=size, winograd=True)
        return Tensor(y if len(y) == 1 else join_order_one(y)).transpose(1, 0, 2, 3)

    def _winograd_backward(self, grad_out: Tensor, g: Tensor, x: Tensor) -> Tensor | None:
        """The backward of ``_winograd_forward``: a real weight gradient goes straight into
        the weight's ``slot`` where it can; within ``derivative_parts_only`` a complex one
        is its i-part alone.  ``g``: the output gradient as ``(O, N*Ho*Wo)``."""
        grad = loops.channel_major(_parts(grad_out.data))  # (G, O, N, Ho, Wo)
        shape, dtype = self.weight.shape, grad.dtype
        outs: list[np.ndarray | None]
        images = loops.channel_major(_parts(x.data))  # (P, C, N, H, W)
        if len(grad) == 1 and len(images) == 1:  # a real weight gradient
            out = self.weight.free_slot(shape, dtype)
            out = np.empty(shape, dtype) if out is None else out
            weight_grad, outs = Tensor(out[None]), [out]
        elif derivative_parts_wanted():
            weight_grad, i_part = derivative_part(shape, dtype)
            outs = [None, i_part]
        else:
            data = np.empty((2, *shape), dtype=dtype)
            weight_grad, outs = Tensor(data), list(data)
        weight = _parts(self.weight.value.data)
        grad_in = winograd.backward(images, weight, self.padding, grad, outs,
                                    self.input_grad_needed)  # fmt: skip
        self.weight.accumulate(weight_grad)
        if self.bias is not None:
            self.bias.accumulate(g.sum(axis=1))
        if grad_in is None:
            return None
        data = grad_in if len(grad_in) == 1 else join_order_one(grad_in)
        return Tensor(data).transpose(1, 0, 2, 3)

    def _correlate(self, x: Tensor, size: Pair) -> Tensor:
        """The forward by ``correlation.correlate``: one real correlation per real part of the
        weight's components; the bias is added on the way when it has the weight's
        components (every parameter perturbed alike, as in ``Objective``), else after."""
        planes = correlation.correlation_planes(x.data[0], self.kernel_size, self.padding)
        weight = self.weight.value.data
        bias = None if self.bias is None else self.bias.value.data
        self.saved = _Saved(direct=True, data=planes, in_shape=x.shape, size=size)
        if planes.largest:  # complex images, a weight and bias of one component each
            bias = None if bias is None else _parts(bias)
            return Tensor(correlation.correlate_order_one(planes, _parts(weight), bias)[None])
        fused = bias is None or (bias.dtype == weight.dtype and len(bias) == len(weight))
        y = Tensor(correlation.correlate(planes, weight, bias if fused else None))
        if fused:
            return y
        assert self.bias is not None  # an unfused bias is a bias
        return y + self.bias.value.reshape(-1, 1, 1)

    def backward(self, grad_out: Tensor) -> Tensor | None:
        saved, in_shape, size = self.saved.data, self.saved.in_shape, self.saved.size
        n, o, ho, wo = grad_out.shape
        g = grad_out.transpose(1, 0, 2, 3).reshape(o, n * ho * wo)
        if self.saved.winograd and self._winograd(saved) and real_or_order_one(grad_out.data):
            if np.finfo(grad_out.data.dtype).dtype == np.finfo(saved.data.dtype).dtype:
                return self._winograd_backward(grad_out, g, saved)
        w2 = self.weight.value.reshape(o, -1)
        weight = self.weight.value.data
        direct = self.saved.direct
        split = False  # the im2col path's operands in the one-direction layout (_split)
        if direct:
            rows, compact = correlation.gradient_rows(saved, grad_out.data, self.input_grad_needed)
            shape = (len(grad_out.data), *weight.shape[1:])
            if saved.largest:  # complex images
                parts_only = derivative_parts_wanted()
                weight_grad = correlation.correlate_weights_order_one(saved, rows, shape[1:],
                                                                      parts_only)  # fmt: skip
                if parts_only:
                    self._accumulate_i_part(weight_grad)
                else:
                    self.weight.accumulate(Tensor(weight_grad[None]))
            elif derivative_parts_wanted() and grad_out.data.dtype.kind == "c" and shape[0] == 1:
                imag = rows[len(rows) // 2 :]  # the i-part of an order-1 gradient alone
                self._accumulate_i_part(correlation.correlate_weights(saved, imag, shape,
                                                                      imag.dtype)[0])  # fmt: skip
            else:
                weight_grad = correlation.correlate_weights(saved, rows, shape, grad_out.data.dtype)
                self.weight.accumulate(Tensor(weight_grad))
        else:  # the columns again, chunk by chunk
            split = saved.one_direction and saved.order == 1 and _complex_order_one(g)
            g_cols, g_largest = _split(g) if split else (g, None)
            w2 = _split(w2)[0] if split else w2
            first = 0
            for cols in self._columns(saved, (ho, wo)):
                last = first + cols.shape[1]
                whole = self.weight if first == 0 and last == g.shape[1] else None
                chunk_grad = _weight_gradient(g_cols[:, first:last], cols, whole)  # i-part if split
                self.weight.accumulate(chunk_grad.reshape(self.weight.shape))
                first = last
        if self.bias is not None:
            self.bias.accumulate(g.sum(axis=1))
        if not self.input_grad_needed:  # the data's gradient: nobody reads it
            return None
        real = [d.dtype.kind == "f" and len(d) == 1 for d in (grad_out.data, weight)]
        if direct and all(real):  # a real gradient and a real weight (the images' parts unread)
            images = correlation.correlate_input(saved, rows, compact, weight[0], in_shape[2:],
                                                 self.padding)  # fmt: skip
            return Tensor(images[None])
        if direct and saved.largest:  # complex images
            images = correlation.correlate_input_order_one(saved, rows, compact, _parts(weight),
                                                           in_shape[2:], self.padding)  # fmt: skip
            return Tensor(images[None])
        if grad_out.device == "cpu":
            if split:
                halves = self._input_gradient_cpu(w2.T, g_cols, in_shape, g_largest)
                return Tensor(join_order_one(halves.data))
            return self._input_gradient_cpu(w2.T, g, in_shape)
        dcols = matmul(w2.T, g).data  # (K, C*kh*kw, M)
        kh, kw = self.kernel_size
        dcols = dcols.reshape(-1, in_shape[1], kh, kw, n, ho, wo).transpose(2, 3, 0, 4, 1, 5, 6)
        return Tensor(crop_images(scatter_windows(dcols, size, self.stride), self.padding))

    def _accumulate_i_part(self, part: np.ndarray) -> None:
        """Add a weight gradient of which ``derivative_parts_only`` wants the i-part alone,
        given as that real array: an order-1 gradient with a zero real part."""
        product, i_part = derivative_part(part.shape, part.dtype)
        i_part[...] = part
        self.weight.accumulate(product)

    def _input_gradient_cpu(self, w2t: Tensor, g: Tensor, in_shape,
                            largest: list[float] | None = None) -> Tensor:  # fmt: skip
        """W^T @ g, then col2im, a batch chunk at a time: each chunk's columns (about
        ``_chunk_bytes``) are added back while they are in cache instead of going to memory
        and back.  ``largest``: g's max |part|s, when g is split (``matmul_each``)."""
        n, c, h, w = in_shape
        pixels = g.shape[1] // n  # Ho * Wo
        itemsize = np.result_type(w2t.data.dtype, g.data.dtype).itemsize
        per_sample = w2t.shape[0] * pixels * itemsize
        chunk = max(1, min(n, self._chunk_bytes() // max(per_sample, 1)))
        out = None
        bounds = [(n0, min(n, n0 + chunk)) for n0 in range(0, n, chunk)]
        chunks = (g[:, n0 * pixels : n1 * pixels] for n0, n1 in bounds)
        products = matmul_each(w2t, chunks, largest)
        for (n0, n1), product in zip(bounds, products):
            dcols = product.data  # (K, C*kh*kw, Mc)
            if out is None:  # channel-major (K, C, N, H, W): a batch chunk is a slice
                out = np.empty((len(dcols), c, n, h, w), dtype=dcols.dtype)
            loops.col2im(dcols, (len(dcols), n1 - n0, c, h, w), self.kernel_size, self.stride,
                         self.padding, out=out, first=n0)  # fmt: skip
        assert out is not None  # a batch has at least one chunk
        return Tensor(out.transpose(0, 2, 1, 3, 4))

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, bias={self.bias is not None}"
        )


# The most in_channels * out_channels at which the direct correlation is used, by the images'
# kind ("f" real, "c" complex) and real itemsize: beyond them im2col + GEMM is faster, forward
# and backward, on LeNet-5's and VGG-11's layers for real images; complex images' H v passes
# were faster direct at every size measured, 6 x 16 to 32 x 32 channels (5x5 kernels on 14x14
# images, 3x3 on 16x16), in both precisions
_DIRECT_CHANNEL_PAIRS = {("f", 4): 96, ("f", 8): 32, ("c", 4): 32 * 32, ("c", 8): 32 * 32}

# The fewest in_channels * out_channels at which Winograd's F(2x2, 3x3) replaces im2col +
# GEMM, by the operands' kind: where it was faster in both precisions, forward and backward
# together, on 8x8 to 28x28 images (a real 64 -> 128 layer: float32 1.14x im2col's time)
_WINOGRAD_CHANNEL_PAIRS = {"real": 96 * 96, "complex": 48 * 48}


def _parts(data: np.ndarray) -> np.ndarray:
    """One component's data as parts: real ``(1, ...)`` as it is, complex as the real part
    and i-part ``(2, ...)``, in the same memory order."""
    return data if data.dtype.kind == "f" else split_order_one(data)[0]


def _complex_order_one(t: Tensor) -> bool:
    return t.data.dtype.kind == "c" and len(t.data) == 1 and t.device == "cpu"


def _split(t: Tensor) -> tuple[Tensor, list[float]]:
    """A complex order-1 tensor in the one-direction layout: real part and i-part as two
    real arrays, and their max |entries|.  A convolution's columns are built from them, so
    no GEMM splits the interleaved columns into parts again (``algebra.gemm``), and the
    weight's side is one block matrix when it is small, without the product of the i-parts
    where that is negligible."""
    halves, largest_real, largest_imag = split_order_one(t.data)
    return Tensor(halves), [largest_real, largest_imag]


def _weight_gradient(g: Tensor, cols: Tensor, into: Parameter | None = None) -> Tensor:
    """g (O, M) @ cols^T (M, C*kh*kw), straight into ``into``'s slot where it can be (the
    whole batch's gradient of a real pass).  Otherwise in single precision, with both
    operands real or both complex, as (cols @ g^T)^T: OpenBLAS's sgemm/cgemm run that
    orientation faster on a convolution's chunks, its dgemm/zgemm the other one."""
    single = g.dtype == np.float32 and cols.dtype == np.float32
    slot = None if into is None else into.slot
    if single and slot is None and g.device == "cpu" and g.data.dtype.kind == cols.data.dtype.kind:
        return gradient_product(cols, g.T).T
    return gradient_product(g, cols.T, into)
