"""Hand-written Numba loops for the CPU: the linear maps of convolutions and pooling, the
direct correlation of real images (a convolution without im2col's columns), and the parts of
elementwise functions that NumPy's ufuncs cannot do in one pass.

The window maps (im2col, its adjoint col2im, average pooling and its adjoint) are linear, so
they act the same on every multicomplex component, real or complex: the component axis is
one more batch axis, and Numba compiles one loop per dtype.  In NumPy the same maps are one
strided copy or add per kernel offset, each iterating over rows of only ``Wo`` elements (10
for LeNet-5's second convolution), and the scatter of col2im cost 5-8 ms per call; these
loops visit every element once, with contiguous inner runs.

Arrays are indexed ``(K, C, N, H, W)`` (components, channels, batch, rows, columns): callers
pass transposed views, so a tensor in the channel-major layout a convolution's GEMM writes
(``(O, N*Ho*Wo)``) is a C-contiguous array here and Numba's loops run on unit strides.  Any
other layout is correct too, only slower.

Constants are passed in the arrays' own dtype (``scale``, ``one``): a Python float literal
inside a Numba function is a float64, and ``float32 * float64`` would compute in float64.
"""

from __future__ import annotations

import cmath
from dataclasses import dataclass

import numpy as np
from numba import njit, uint64

_JIT = {"cache": True, "nogil": True, "error_model": "numpy"}


# Inner loops run over uint64 counters on 1-D row views: with signed indices Numba guards
# every access against negative (wrap-around) indices, and these loops ran 2-2.5x slower.


@njit(**_JIT)
def _im2col(x, dims, kernel, stride, padding, ew, out):  # pragma: no cover - compiled
    # x: flat (K, C, N, H, W*ew) reals; out: flat (K, C, kh, kw, N, ho, wo*ew), zero where the
    # window leaves x.  ew = 2 for complex data seen as real: element w is the pair [2w,
    # 2w + 1], so a stride-1 window row is one contiguous run.  Flat indices, no row views:
    # a row is only wo*ew elements long (2x faster than slicing rows out of 2-D arrays).
    n_comp, n_chan, n_batch, height, width, ho, wo = dims
    kh, kw = kernel
    sh, sw = stride
    ph, pw = padding
    zero = out.dtype.type(0)
    row_in, row_out = uint64(width * ew), uint64(wo * ew)
    plane = uint64(height) * row_in
    for c in range(n_chan):
        for i in range(kh):
            for j in range(kw):
                lo = min(wo, max(0, (pw - j + sw - 1) // sw))  # 0 <= ow * sw + j - pw < width
                hi = max(lo, min(wo, (width - 1 + pw - j) // sw + 1))
                a, b = uint64(lo * ew), uint64(hi * ew)
                for k in range(n_comp):
                    o = uint64(((((k * n_chan + c) * kh + i) * kw + j) * n_batch) * ho) * row_out
                    first = uint64((k * n_chan + c) * n_batch) * plane
                    for _ in range(n_batch):
                        for oh in range(ho):
                            ih = oh * sh + i - ph
                            if ih < 0 or ih >= height:
                                for t in range(row_out):
                                    out[o + t] = zero
                                o += row_out
                                continue
                            src = first + uint64(ih) * row_in
                            for t in range(a):
                                out[o + t] = zero
                            if sw == 1:
                                s = src + uint64((lo + j - pw) * ew)
                                for t in range(b - a):
                                    out[o + a + t] = x[s + t]
                            else:
                                for ow in range(lo, hi):
                                    s = src + uint64((ow * sw + j - pw) * ew)
                                    for e in range(ew):
                                        out[o + uint64(ow * ew + e)] = x[s + e]
                            for t in range(b, row_out):
                                out[o + t] = zero
                            o += row_out
                        first += plane


@njit(**_JIT)
def _col2im(cols, dims, kernel, stride, padding, ew, n_total, first, out):  # pragma: no cover
    # the adjoint of _im2col (cols: flat (K, C, kh, kw, N, ho, wo*ew)): in out (flat (K, C,
    # n_total, H, W*ew)) the images first .. first + N are zeroed, then every window row of
    # cols is added back, kernel offsets in row-major order (the order of the strided adds
    # this replaces: the sums round the same)
    n_comp, n_chan, n_batch, height, width, ho, wo = dims
    kh, kw = kernel
    sh, sw = stride
    ph, pw = padding
    zero = out.dtype.type(0)
    row_in, row = uint64(wo * ew), uint64(width * ew)
    plane = uint64(height) * row
    for kc in range(n_comp * n_chan):
        start = uint64(kc * n_total + first) * plane
        for t in range(uint64(n_batch) * plane):
            out[start + t] = zero
    for c in range(n_chan):
        for i in range(kh):
            for j in range(kw):
                lo = min(wo, max(0, (pw - j + sw - 1) // sw))
                hi = max(lo, min(wo, (width - 1 + pw - j) // sw + 1))
                a, b = uint64(lo * ew), uint64(hi * ew)
                for k in range(n_comp):
                    rc = uint64(((((k * n_chan + c) * kh + i) * kw + j) * n_batch) * ho) * row_in
                    base = uint64((k * n_chan + c) * n_total + first) * plane
                    for _ in range(n_batch):
                        for oh in range(ho):
                            ih = oh * sh + i - ph
                            if 0 <= ih < height:
                                dst = base + uint64(ih) * row
                                if sw == 1:
                                    d = dst + uint64((lo + j - pw) * ew)
                                    for t in range(b - a):
                                        out[d + t] += cols[rc + a + t]
                                else:
                                    for ow in range(lo, hi):
                                        d = dst + uint64((ow * sw + j - pw) * ew)
                                        for e in range(ew):
                                            out[d + e] += cols[rc + uint64(ow * ew + e)]
                            rc += row_in
                        base += plane


@njit(**_JIT)
def _avg_pool(x, rows, height, kernel, stride, ho, wo, ew, scale, out):  # pragma: no cover
    # x: rows (K, C, N, H) of W*ew reals; out: rows (K, C, N, ho) of wo*ew: each window summed
    # in row-major offset order, then scaled (as the strided adds this replaces)
    kh, kw = kernel
    sh, sw = stride
    n = uint64(wo)
    if kernel == (2, 2) and stride == (2, 2):  # the common case in one pass, the same sums
        for r in range(rows):
            for oh in range(ho):
                dst = out[r * ho + oh]
                a = x[r * height + 2 * oh]
                b = x[r * height + 2 * oh + 1]
                if ew == 1:
                    for t in range(n):
                        dst[t] = (((a[2 * t] + a[2 * t + 1]) + b[2 * t]) + b[2 * t + 1]) * scale
                else:
                    for t in range(n):
                        for e in range(2):
                            u = 4 * t + e
                            dst[2 * t + e] = (((a[u] + a[u + 2]) + b[u]) + b[u + 2]) * scale
        return
    for r in range(rows):
        for oh in range(ho):
            dst = out[r * ho + oh]
            first = True
            for i in range(kh):
                src = x[r * height + oh * sh + i]
                for j in range(kw):
                    if ew == 1:
                        if first:
                            for t in range(n):
                                dst[t] = src[t * sw + j]
                        else:
                            for t in range(n):
                                dst[t] += src[t * sw + j]
                    else:
                        if first:
                            for t in range(n):
                                dst[2 * t] = src[2 * (t * sw + j)]
                                dst[2 * t + 1] = src[2 * (t * sw + j) + 1]
                        else:
                            for t in range(n):
                                dst[2 * t] += src[2 * (t * sw + j)]
                                dst[2 * t + 1] += src[2 * (t * sw + j) + 1]
                    first = False
            for t in range(uint64(wo * ew)):
                dst[t] *= scale


@njit(**_JIT)
def _avg_pool_backward(g, rows, height, kernel, stride, ho, wo, ew, scale, out):  # pragma: no cover
    # the adjoint: each gradient * scale added into its window of out (rows (K, C, N, H) of
    # W*ew).  Disjoint windows (stride = kernel) are written, not added, and only what no
    # window covers is zeroed: one pass over out instead of two.
    kh, kw = kernel
    sh, sw = stride
    zero = out.dtype.type(0)
    disjoint = sh == kh and sw == kw
    if not disjoint:
        flat = out.reshape(-1)
        for t in range(uint64(flat.shape[0])):
            flat[t] = zero
    n = uint64(wo)
    covered, row = uint64(wo * kw * ew), uint64(out.shape[1])
    two = kernel == (2, 2) and stride == (2, 2)  # the common case: each row in one pass
    for r in range(rows):
        for oh in range(ho):
            src = g[r * ho + oh]
            for i in range(kh):
                dst = out[r * height + oh * sh + i]
                if two and ew == 1:
                    for t in range(n):
                        v = src[t] * scale
                        dst[2 * t] = v
                        dst[2 * t + 1] = v
                elif two:
                    for t in range(n):
                        for e in range(2):
                            v = src[2 * t + e] * scale
                            dst[4 * t + e] = v
                            dst[4 * t + e + 2] = v
                else:
                    for j in range(kw):
                        if disjoint and ew == 1:
                            for t in range(n):
                                dst[t * sw + j] = src[t] * scale
                        elif disjoint:
                            for t in range(n):
                                dst[2 * (t * sw + j)] = src[2 * t] * scale
                                dst[2 * (t * sw + j) + 1] = src[2 * t + 1] * scale
                        elif ew == 1:
                            for t in range(n):
                                dst[t * sw + j] += src[t] * scale
                        else:
                            for t in range(n):
                                dst[2 * (t * sw + j)] += src[2 * t] * scale
                                dst[2 * (t * sw + j) + 1] += src[2 * t + 1] * scale
                if disjoint:
                    for t in range(covered, row):
                        dst[t] = zero
        if disjoint:
            for h in range(ho * kh, height):
                dst = out[r * height + h]
                for t in range(row):
                    dst[t] = zero


# --- direct convolution: stride 1, real input ---------------------------------------------
#
# im2col writes kh*kw copies of the input (25x for LeNet-5's 5x5 kernels) to memory, and
# OpenBLAS then packs that matrix once more before its GEMM; with LeNet-5's 6 or 16 output
# channels the product itself is a small part of the time.  For stride 1 a correlation is a
# sum of shifted copies of the input: with every (zero-padded) image plane flattened, row by
# row, output pixel (oh, ow) sits at p = oh*Wp + ow and tap (i, j) reads the plane at
# p + i*Wp + j.  So all of an image's outputs are a few long, contiguous, vectorisable
# loops over p (the Wp - Wo columns past each row's end are computed and dropped).  Taps go
# five at a time: one pass over the outputs adds five products, so the running sums are read
# and written once per five multiply-adds, without a loop body generated per kernel size.
#
# Planes are (C, N, P): channel-major like the rest of the CPU layout; P holds the padded
# image and the zeros that the last block of outputs reads past it.

_TAPS = 5  # taps per pass over the outputs (a 5x5 kernel has no padding taps)
_BLOCK = 16  # outputs per inner loop, whole SIMD registers in both precisions (8: 4x slower)


# Rows (output channels) go four at a time, so each load of a plane serves twenty
# multiply-adds (with twenty weights and five plane values, 29 registers: AVX-512 has 32; two
# rows at a time took 1.15-1.3x as long on LeNet-5's layers); past the last row the last row
# is computed again and stored once.


@njit(fastmath={"contract"}, **_JIT)
def _correlate(planes, w, at, bias, height, width, row, span, ew, out):  # pragma: no cover
    # planes (C, N, P); w (R, C, T) real taps, zero past kh*kw; tap q reads a plane at at[q];
    # bias (R,); out (R // ew, N, height, width*ew): row r of w fills out[r % (R // ew)] at
    # element offset r // (R // ew) (ew = 2: complex results, real parts then imaginary)
    n_chan, n_batch, _ = planes.shape
    n_rows, _, n_taps = w.shape
    acc = np.empty((4, span), dtype=out.dtype)
    for n in range(n_batch):
        for r in range(0, n_rows, 4):
            r1, r2, r3 = min(r + 1, n_rows - 1), min(r + 2, n_rows - 1), min(r + 3, n_rows - 1)
            a, b, c, d = acc[0], acc[1], acc[2], acc[3]
            for t in range(uint64(span)):
                a[t] = bias[r]
                b[t] = bias[r1]
                c[t] = bias[r2]
                d[t] = bias[r3]
            for ch in range(n_chan):
                x, wa, wb, wc, wd = planes[ch, n], w[r, ch], w[r1, ch], w[r2, ch], w[r3, ch]
                for q in range(0, n_taps, _TAPS):
                    s0, s1, s2, s3, s4 = at[q], at[q + 1], at[q + 2], at[q + 3], at[q + 4]
                    a0, a1, a2, a3, a4 = wa[q], wa[q + 1], wa[q + 2], wa[q + 3], wa[q + 4]
                    b0, b1, b2, b3, b4 = wb[q], wb[q + 1], wb[q + 2], wb[q + 3], wb[q + 4]
                    c0, c1, c2, c3, c4 = wc[q], wc[q + 1], wc[q + 2], wc[q + 3], wc[q + 4]
                    d0, d1, d2, d3, d4 = wd[q], wd[q + 1], wd[q + 2], wd[q + 3], wd[q + 4]
                    for t0 in range(0, span, _BLOCK):
                        for t1 in range(_BLOCK):
                            t = uint64(t0 + t1)
                            x0, x1, x2 = x[t + s0], x[t + s1], x[t + s2]
                            x3, x4 = x[t + s3], x[t + s4]
                            a[t] += a0 * x0 + a1 * x1 + a2 * x2 + a3 * x3 + a4 * x4
                            b[t] += b0 * x0 + b1 * x1 + b2 * x2 + b3 * x3 + b4 * x4
                            c[t] += c0 * x0 + c1 * x1 + c2 * x2 + c3 * x3 + c4 * x4
                            d[t] += d0 * x0 + d1 * x1 + d2 * x2 + d3 * x3 + d4 * x4
            _store_row(a, r, n, height, width, row, ew, out)
            for k, rk in enumerate((r1, r2, r3)):
                if rk > r + k:
                    _store_row(acc[k + 1], rk, n, height, width, row, ew, out)


@njit(**_JIT)
def _store_row(acc, r, n, height, width, row, ew, out):  # pragma: no cover - compiled
    # row r of _correlate's results for image n: every output row's first `width` values;
    # flat indices (no row views: the rows are short)
    rows_out, n_batch = out.shape[0], out.shape[1]
    flat = out.reshape(-1)
    length = uint64(width * ew)
    first = uint64(((r % rows_out) * n_batch + n) * height) * length + uint64(r // rows_out)
    for oh in range(height):
        src, dst = uint64(oh * row), first + uint64(oh) * length
        if ew == 1:
            for t in range(uint64(width)):
                flat[dst + t] = acc[src + t]
        else:
            for t in range(uint64(width)):
                flat[dst + 2 * t] = acc[src + t]


@njit(fastmath={"reassoc", "contract", "nsz"}, **_JIT)
def _correlate_weights(planes, grad, at, span, out):  # pragma: no cover - compiled
    # the weight gradient of _correlate: out[r, c, q] = sum over n, p < span of grad[r, n, p]
    # * planes[c, n, p + at[q]], with grad (R, N, >= span) zero at the dropped columns.
    # The sums are reassociated (fastmath) so that they vectorise; one image at a time keeps
    # its planes and gradient rows in L1.  Rows go four at a time as in _correlate (twenty
    # running sums, five plane values, four gradient values: 29 registers).
    n_chan, n_batch, _ = planes.shape
    n_rows, _, n_taps = out.shape
    span = uint64(span)
    zero = out.dtype.type(0)
    out[...] = zero
    for n in range(n_batch):
        for r in range(0, n_rows, 4):
            r1, r2, r3 = min(r + 1, n_rows - 1), min(r + 2, n_rows - 1), min(r + 3, n_rows - 1)
            ga, gb, gc, gd = grad[r, n], grad[r1, n], grad[r2, n], grad[r3, n]
            for ch in range(n_chan):
                x = planes[ch, n]
                for q in range(0, n_taps, _TAPS):
                    s0, s1, s2, s3, s4 = at[q], at[q + 1], at[q + 2], at[q + 3], at[q + 4]
                    a0 = a1 = a2 = a3 = a4 = b0 = b1 = b2 = b3 = b4 = zero
                    c0 = c1 = c2 = c3 = c4 = d0 = d1 = d2 = d3 = d4 = zero
                    for t in range(span):
                        x0, x1, x2 = x[t + s0], x[t + s1], x[t + s2]
                        x3, x4 = x[t + s3], x[t + s4]
                        u, v, y, z = ga[t], gb[t], gc[t], gd[t]
                        a0 += u * x0
                        a1 += u * x1
                        a2 += u * x2
                        a3 += u * x3
                        a4 += u * x4
                        b0 += v * x0
                        b1 += v * x1
                        b2 += v * x2
                        b3 += v * x3
                        b4 += v * x4
                        c0 += y * x0
                        c1 += y * x1
                        c2 += y * x2
                        c3 += y * x3
                        c4 += y * x4
                        d0 += z * x0
                        d1 += z * x1
                        d2 += z * x2
                        d3 += z * x3
                        d4 += z * x4
                    sums = ((a0, a1, a2, a3, a4), (b0, b1, b2, b3, b4), (c0, c1, c2, c3, c4),
                            (d0, d1, d2, d3, d4))  # fmt: skip
                    for k, rk in enumerate((r, r1, r2, r3)):
                        if rk == r + k:  # a row past the last is computed again, not added
                            for j in range(_TAPS):
                                out[rk, ch, q + j] += sums[k][j]


@njit(**_JIT)
def _gradient_rows(g, row, ew, out):  # pragma: no cover - compiled
    # g (R, N, Ho, Wo*ew) -> out (ew*R, N, L): out[e*R + r, n, oh*row + ow] = g[r, n, oh,
    # ow*ew + e], zero elsewhere (each element written once)
    n_rows, n_batch, height, _ = g.shape
    width = uint64(g.shape[3] // ew)
    length, step, zero = uint64(out.shape[2]), uint64(row), out.dtype.type(0)
    for r in range(n_rows):
        for n in range(n_batch):
            re, im = out[r, n], out[(ew - 1) * n_rows + r, n]
            for oh in range(height):
                src, base = g[r, n, oh], uint64(oh) * step
                if ew == 1:
                    for t in range(width):
                        re[base + t] = src[t]
                else:
                    for t in range(width):
                        re[base + t] = src[2 * t]
                        im[base + t] = src[2 * t + 1]
                for t in range(base + width, base + step):
                    re[t] = zero
                    im[t] = zero
            for t in range(uint64(height) * step, length):
                re[t] = zero
                im[t] = zero


@njit(**_JIT)
def _add_shifted(cols, shifts, length, first, out):  # pragma: no cover - compiled
    # the adjoint of reading the planes at shifted offsets (col2im on planes): cols (C, T, Nc,
    # >= length) holds, for the images first..first + Nc, every tap's products at each output
    # position; out[c, first + n, p + shifts[q]] += cols[c, q, n, p], taps in row-major
    # order (the order of col2im's adds)
    n_chan, n_taps, n_batch, _ = cols.shape
    m = uint64(length)
    for c in range(n_chan):
        for q in range(n_taps):
            s = shifts[q]
            for n in range(n_batch):
                src = cols[c, q, n]
                dst = out[c, first + n]
                for t in range(m):
                    dst[t + s] += src[t]


# --- public wrappers ---------------------------------------------------------------------


def channel_major(data: np.ndarray) -> np.ndarray:
    """``(K, N, C, H, W)`` component data as ``(K, C, N, H, W)``, C-contiguous (a view when the
    data is laid out channel-major, as a convolution's output is)."""
    return np.ascontiguousarray(data.transpose(0, 2, 1, 3, 4))


def _real(a: np.ndarray) -> tuple[np.ndarray, int]:
    """A C-contiguous array as real numbers: complex elements become pairs (ew = 2)."""
    if a.dtype.kind == "c":
        return a.view(np.float32 if a.dtype == np.complex64 else np.float64), 2
    return a, 1


def im2col(data: np.ndarray, kernel, stride, padding, out_size) -> np.ndarray:
    """Every (zero-padded) window of ``(K, N, C, H, W)`` data as columns, ``(K, C*kh*kw,
    N*ho*wo)``, C-contiguous: all components stacked are one ``(K*C*kh*kw, N*ho*wo)``
    matrix (``mc.matmul`` multiplies them all by one GEMM)."""
    k, n, c, h, w = data.shape
    (kh, kw), (ho, wo) = kernel, out_size
    x, ew = _real(channel_major(data))
    out = np.empty((k, c, kh, kw, n, ho, wo), dtype=data.dtype)
    out_real, _ = _real(out)
    dims = (k, c, n, h, w, ho, wo)
    _im2col(x.reshape(-1), dims, tuple(kernel), tuple(stride), tuple(padding), ew,
            out_real.reshape(-1))  # fmt: skip
    return out.reshape(k, c * kh * kw, n * ho * wo)


def col2im(cols: np.ndarray, shape, kernel, stride, padding, out=None,
           first: int = 0) -> np.ndarray:  # fmt: skip
    """The adjoint of ``im2col``: columns ``(K, C*kh*kw, N*ho*wo)`` added back into
    ``(K, N, C, H, W)`` data of ``shape``, laid out channel-major; or written into the images
    ``first .. first + N`` of ``out``, a C-contiguous ``(K, C, N_total, H, W)`` array."""
    k, n, c, h, w = shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    ho = (h + 2 * ph - kh) // sh + 1
    wo = (w + 2 * pw - kw) // sw + 1
    src, ew = _real(np.ascontiguousarray(cols))
    result = np.empty((k, c, n, h, w), dtype=cols.dtype) if out is None else out
    if not result.flags.c_contiguous or result.shape[:2] != (k, c) or result.shape[3:] != (h, w):
        raise ValueError(f"col2im: out must be a C-contiguous {(k, c, 'N', h, w)} array, got "
                         f"shape {result.shape}")  # fmt: skip
    target, _ = _real(result)
    dims = (k, c, n, h, w, ho, wo)
    _col2im(src.reshape(-1), dims, tuple(kernel), tuple(stride), tuple(padding), ew,
            result.shape[2], first, target.reshape(-1))  # fmt: skip
    return result[:, :, first : first + n].transpose(0, 2, 1, 3, 4)


@dataclass(frozen=True)
class Planes:
    """A stride-1 correlation's input as zero-padded, flattened image planes (``_correlate``)."""

    data: np.ndarray  # (C, N, P)
    row: int  # the padded width: the distance between output rows in a plane
    span: int  # outputs computed per image (the dropped columns included), a multiple of _BLOCK
    out_size: tuple[int, int]
    shifts: np.ndarray  # (T,) uint64: tap (i, j)'s offset i*row + j; zeros past kh*kw taps


def correlation_planes(images: np.ndarray, kernel, padding) -> Planes:
    """Real ``(N, C, H, W)`` images (any strides) as the planes of a stride-1 correlation
    with ``kernel`` and zero ``padding``."""
    n, c, h, w = images.shape
    (kh, kw), (ph, pw) = kernel, padding
    height, row = h + 2 * ph, w + 2 * pw
    ho, wo = height - kh + 1, row - kw + 1
    span = -(-((ho - 1) * row + wo) // _BLOCK) * _BLOCK
    taps = -(-(kh * kw) // _TAPS) * _TAPS
    planes = np.zeros((c, n, max(height * row, (kh - 1) * row + kw - 1 + span)), images.dtype)
    padded = planes[:, :, : height * row].reshape(c, n, height, row)
    padded[:, :, ph : ph + h, pw : pw + w] = images.transpose(1, 0, 2, 3)
    shifts = np.zeros(taps, dtype=np.uint64)
    shifts[: kh * kw] = (np.arange(kh)[:, None] * row + np.arange(kw)).ravel()
    return Planes(planes, row, span, (ho, wo), shifts)


def _real_rows(data: np.ndarray) -> tuple[np.ndarray, int]:
    """Component data ``(K, ...)`` as real ``(ew*K, ...)``: complex components' real parts,
    then their imaginary parts (ew = 2)."""
    if data.dtype.kind == "c":
        return np.concatenate([data.real, data.imag]), 2
    return data, 1


def correlate(planes: Planes, weight: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """The correlation of real images with a weight of K components, ``(K, O, C, kh, kw)``
    real or complex, plus ``bias`` ``(K, O)`` of the weight's dtype: ``(K, N, O, Ho, Wo)``,
    laid out channel-major.  Each component is a real correlation (the images are real)."""
    k, o, c, kh, kw = weight.shape
    (ho, wo), taps = planes.out_size, len(planes.shifts)
    out = np.empty((k, o, planes.data.shape[1], ho, wo), dtype=weight.dtype)
    while k > 1 and not weight[k - 1].any() and (bias is None or not bias[k - 1].any()):
        k -= 1  # a zero component (a one-direction perturbation's s_2 ...) gives zeros
        out[k] = 0
    weight, bias = weight[:k], None if bias is None else bias[:k]
    rows, ew = _real_rows(weight.reshape(k * o, c, kh * kw))
    w = np.zeros((len(rows), c, taps), dtype=rows.dtype)
    w[:, :, : kh * kw] = rows
    shift = np.zeros(len(rows), dtype=rows.dtype) if bias is None else _real_rows(bias.ravel())[0]
    out_real = out[:k].view(rows.dtype).reshape(k * o, -1, ho, wo * ew)
    _correlate(planes.data, w, planes.shifts, np.ascontiguousarray(shift), ho, wo, planes.row,
               planes.span, ew, out_real)  # fmt: skip
    return out.transpose(0, 2, 1, 3, 4)


def gradient_rows(planes: Planes, grad: np.ndarray) -> np.ndarray:
    """An output gradient ``(K, N, O, Ho, Wo)``, real or complex, laid out as the outputs of
    ``_correlate``: real ``(ew*K*O, N, >= span)``, row by row at the planes' row length, zero
    at the dropped columns and past the last row (real parts, then imaginary parts)."""
    k, n, o, ho, wo = grad.shape
    g, ew = _real(channel_major(grad))
    out = np.empty((ew * k * o, n, max(planes.span, ho * planes.row)), g.dtype)
    _gradient_rows(g.reshape(k * o, n, ho, wo * ew), planes.row, ew, out)
    return out


def correlate_weights(planes: Planes, rows: np.ndarray, shape, dtype) -> np.ndarray:
    """The adjoint of ``correlate`` in its weight: a gradient's ``gradient_rows`` against the
    planes' real images, summed over the batch; ``shape`` ``(K, O, C, kh, kw)`` and ``dtype``
    (the gradient's: complex when the rows hold real and imaginary parts) of the result."""
    k, o, c, kh, kw = shape
    out = np.empty((len(rows), c, len(planes.shifts)), dtype=rows.dtype)
    _correlate_weights(planes.data, rows, planes.shifts, planes.span, out)
    parts = out[:, :, : kh * kw].reshape(-1, k, o, c, kh, kw)
    if len(parts) == 1:
        return parts[0]
    result = np.empty(shape, dtype=dtype)
    result.real, result.imag = parts
    return result


def correlate_input(planes: Planes, rows: np.ndarray, weight: np.ndarray, image_size,
                    padding) -> np.ndarray:  # fmt: skip
    """The adjoint of ``correlate`` in its images, for a real weight ``(O, C, kh, kw)`` and a
    real gradient's ``gradient_rows`` ``(O, N, >= span)``: ``(N, C, H, W)``, laid out
    channel-major.  A batch chunk at a time: one GEMM gives every tap's products at every
    output position (``W^T @ rows``, about 2**18 elements, in cache), then ``_add_shifted``
    adds them into the planes, in long contiguous runs where col2im has runs of ``Wo``."""
    o, c, kh, kw = weight.shape
    n, width = rows.shape[1], rows.shape[2]
    (ho, wo), row = planes.out_size, planes.row
    taps = np.ascontiguousarray(weight.reshape(o, c * kh * kw).T)
    out = np.zeros((c, n, planes.data.shape[2]), dtype=rows.dtype)
    chunk = max(1, min(n, CHUNK_ELEMENTS // (c * kh * kw * width)))
    for first in range(0, n, chunk):
        last = min(n, first + chunk)
        cols = taps @ rows[:, first:last].reshape(o, -1)  # (C*kh*kw, Nc*width)
        _add_shifted(cols.reshape(c, kh * kw, last - first, width), planes.shifts,
                     (ho - 1) * row + wo, first, out)  # fmt: skip
    (h, w), (ph, pw) = image_size, padding
    height = ho + kh - 1
    images = out[:, :, : height * row].reshape(c, n, height, row)[:, :, ph : ph + h, pw : pw + w]
    return images.transpose(1, 0, 2, 3)


# Elements per chunk of a convolution's input-gradient products: 2**18 (1-2 MiB) stay in cache.
CHUNK_ELEMENTS = 1 << 18
# Bytes per chunk of im2col's columns: 2 MiB.  By elements (2**18) a curvature pass's float32
# columns came in 1 MiB chunks and its GEMMs ran slower (LeNet-5: 14.0-14.5 -> 12.7-13.8 ms a
# pass, thread time, the least of 21; float64 and complex chunks were 2 MiB already).
CHUNK_BYTES = 1 << 21


def avg_pool(data: np.ndarray, kernel, stride, out_size) -> np.ndarray:
    """Average pooling of ``(K, N, C, H, W)`` data (no padding, floor mode); the result is
    laid out channel-major."""
    k, n, c, h, w = data.shape
    ho, wo = out_size
    x, ew = _real(channel_major(data))
    out = np.empty((k, c, n, ho, wo), dtype=data.dtype)
    out_real, _ = _real(out)
    scale = _real_scalar(data.dtype, 1.0 / (kernel[0] * kernel[1]))
    _avg_pool(x.reshape(-1, w * ew), k * c * n, h, tuple(kernel), tuple(stride), ho, wo, ew,
              scale, out_real.reshape(-1, wo * ew))  # fmt: skip
    return out.transpose(0, 2, 1, 3, 4)


def avg_pool_backward(grad: np.ndarray, shape, kernel, stride) -> np.ndarray:
    """The adjoint of ``avg_pool``: ``(K, N, C, ho, wo)`` gradients spread over ``shape``,
    laid out channel-major."""
    k, n, c, h, w = shape
    ho, wo = grad.shape[-2:]
    g, ew = _real(channel_major(grad))
    out = np.empty((k, c, n, h, w), dtype=grad.dtype)
    out_real, _ = _real(out)
    scale = _real_scalar(grad.dtype, 1.0 / (kernel[0] * kernel[1]))
    _avg_pool_backward(g.reshape(-1, wo * ew), k * c * n, h, tuple(kernel), tuple(stride), ho,
                       wo, ew, scale, out_real.reshape(-1, w * ew))  # fmt: skip
    return out.transpose(0, 2, 1, 3, 4)


def _real_scalar(dtype: np.dtype, value: float):
    """``value`` as a scalar of dtype's real type (float32 for complex64)."""
    return np.float32(value) if dtype in (np.float32, np.complex64) else np.float64(value)


# --- the sigmoid on the CPU: NumPy's vectorised exp, then one Numba pass ------------------
#
# A fused kernel (``kernels``) evaluates exp per element with a scalar libm call and, for
# float32 data, in float64 (its literals are float64).  Here exp runs as NumPy's SIMD ufunc
# on the real parts, in the data's own precision, and the rest is arithmetic in one pass.


@njit(**_JIT)
def _inverse_one_plus(e, one):  # pragma: no cover - compiled
    # e = 1 / (1 + e) in place: NumPy's add and reciprocal in one pass, the same roundings
    for p in range(uint64(e.shape[0])):
        e[p] = one / (one + e[p])


@njit(**_JIT)
def _sigmoid_complex(z, e, tiny, one, unit, out):  # pragma: no cover - compiled
    # z: complex elements as real pairs [x, y]; e = exp(-|x|).  Tiny |y| (the derivative
    # case): sigmoid(x) + i y sigmoid'(x), the correctly rounded value (the dropped terms are
    # y^2 relative); otherwise exactly, by the complex exp.  The tiny formula goes first over
    # every element, without a branch (it vectorises); the others are then redone.
    n = uint64(e.shape[0])
    others = 0
    for p in range(n):
        x = z[2 * p]
        y = z[2 * p + 1]
        ep = e[p]
        r = one / (one + ep)
        out[2 * p] = r if x >= 0 else ep * r
        out[2 * p + 1] = y * (ep * r * r)
        others += abs(y) >= tiny
    if others == 0:
        return
    for p in range(n):
        x = z[2 * p]
        y = z[2 * p + 1]
        if abs(y) >= tiny:  # 1 / (1 + exp(-z)) for Re z >= 0, exp(z) / (1 + exp(z)) elsewhere
            zp = x + y * unit if x < 0 else -x - y * unit  # unit: i in the data's dtype
            big = cmath.exp(zp)
            q = one / (one + big)
            w = q if x >= 0 else big * q
            out[2 * p] = w.real
            out[2 * p + 1] = w.imag


@njit(**_JIT)
def _sigmoid_series2(s, e, em1, tau, one, out):  # pragma: no cover - compiled
    # one direction, order 2: s = (s0, s1, s2); e = exp(-|s0|), em1 = expm1(-|s0|).  The
    # Taylor series [f, f' s1, f' s2 + f'' s1^2]; False (and out unfinished) unless every
    # |s1| <= tau and |s2| <= tau^2 (``symmetric.is_tiny``).  Branch-free, the check counted
    # on the way: the loop vectorises (an early exit or an if would keep it scalar).
    tau2 = tau * tau
    outside = 0
    for p in range(uint64(s.shape[1])):
        x, s1, s2 = s[0, p], s[1, p], s[2, p]
        outside += 1 - ((abs(s1) <= tau) & (abs(s2) <= tau2))  # NaN counts as outside
        ep = e[p]
        r = one / (one + ep)
        d1 = ep * r * r  # sigmoid'(x) = e / (1 + e)^2 for e = exp(-|x|)
        t = em1[p] * r  # (e - 1) / (1 + e) = -tanh(|x| / 2)
        out[0, p] = r if x >= 0 else ep * r
        t = t if x >= 0 else -t  # 1 - 2 sigmoid(x) = -tanh(x / 2)
        f1 = s1 * d1
        out[1, p] = f1
        out[2, p] = s1 * (t * f1) + s2 * d1  # sigmoid'' = sigmoid' (1 - 2 sigmoid)
    return outside == 0


@njit(**_JIT)
def _sigmoid_backward(g, y, one, out):  # pragma: no cover - compiled
    for p in range(uint64(out.shape[0])):
        yp = y[p]
        out[p] = g[p] * (yp * (one - yp))


@njit(**_JIT)
def _sigmoid_backward_complex(g, y, one, out):  # pragma: no cover - compiled
    # the same on complex elements seen as real pairs: d = y (1 - y), out = g d
    for p in range(uint64(out.shape[0] // 2)):
        yr = y[2 * p]
        yi = y[2 * p + 1]
        ur = one - yr
        dr = yr * ur + yi * yi
        di = yi * ur - yr * yi
        gr = g[2 * p]
        gi = g[2 * p + 1]
        out[2 * p] = gr * dr - gi * di
        out[2 * p + 1] = gr * di + gi * dr


def flat_in_memory_order(data: np.ndarray):
    """``(C, *shape)`` data as ``(C, L)`` in memory order (a view when the components are
    the outermost axis of a dense buffer), and the axes that lay a result back out."""
    rest = sorted(range(1, data.ndim), key=lambda i: -data.strides[i])
    axes = (0, *rest)
    laid_out = data.transpose(axes)
    if not laid_out.flags.c_contiguous:
        axes = tuple(range(data.ndim))
        laid_out = np.ascontiguousarray(data)
    return laid_out.reshape(len(data), -1), axes


def from_flat(flat: np.ndarray, data_shape, axes) -> np.ndarray:
    laid_out_shape = tuple(data_shape[a] for a in axes)
    return flat.reshape(laid_out_shape).transpose(np.argsort(axes))


# |Im z| below which sigmoid(x + iy) = sigmoid(x) + i y sigmoid'(x) is the correctly rounded
# value: the dropped terms are relative y^2/2 and y^2/6 (|s''/s| and |s'''/s'| are at most
# 1), below half an ulp: 2**-54 in float64, 2**-27 in float32.
_TINY = {np.float32: 2.0**-13, np.float64: 2.0**-27}


def sigmoid(data: np.ndarray) -> np.ndarray | None:
    """The sigmoid of order-0, order-1 or one-direction order-2 component data (C, *shape);
    None where this path does not apply (the caller takes the general one)."""
    real = data.dtype.kind == "f"
    if len(data) not in ((1, 3) if real else (1,)):
        return None
    flat, axes = flat_in_memory_order(data)
    rtype = np.float32 if data.dtype in (np.float32, np.complex64) else np.float64
    one = rtype(1)
    if real and len(data) == 1:
        out = np.negative(flat)
        with np.errstate(over="ignore"):  # exp(-x) = inf for very negative x: 1/inf = 0
            np.exp(out, out=out)
        _inverse_one_plus(out.reshape(-1), one)
        return from_flat(out, data.shape, axes)
    e = np.abs(flat[0].real if not real else flat[0])
    np.negative(e, out=e)
    if real:  # one direction, order 2
        em1 = np.expm1(e)
        np.exp(e, out=e)
        tau = rtype(2.0**-8 * np.sqrt(np.finfo(rtype).eps))
        out = np.empty_like(flat)
        if not _sigmoid_series2(flat, e, em1, tau, one, out):
            return None
        return from_flat(out, data.shape, axes)
    np.exp(e, out=e)
    out = np.empty_like(flat)
    unit = flat.dtype.type(1j)
    _sigmoid_complex(flat[0].view(rtype), e, rtype(_TINY[rtype]), one, unit, out[0].view(rtype))
    return from_flat(out, data.shape, axes)


# --- tanh on the CPU, order 1: NumPy's vectorised exp and expm1, then one Numba pass -------
#
# The fused kernel's order-1 tanh made three scalar libm calls per element (tanh and cosh
# twice): 4.5 ms of a float32 LeNet-5 Gauss-Newton product's 42.


@njit(**_JIT)
def _tanh_complex(z, e, em1, tiny, one, two, four, unit, out):  # pragma: no cover - compiled
    # z: complex elements as real pairs [x, y]; e = exp(-2|x|), em1 = expm1(-2|x|).  Tiny |y|
    # (the derivative case): tanh(x) + i y sech^2(x), the dropped terms y^2 relative, with
    # tanh|x| = -em1 / (2 + em1) and sech^2 x = 4 e / (1 + e)^2 (no cancellation for any x,
    # no overflow: e <= 1); otherwise exactly, by the complex tanh.  As _sigmoid_complex: the
    # tiny formula everywhere first, branch-free, then the others redone.
    n = uint64(e.shape[0])
    others = 0
    for p in range(n):
        x = z[2 * p]
        y = z[2 * p + 1]
        m = em1[p]
        t = -m / (two + m)
        ep = e[p]
        d = one + ep
        out[2 * p] = t if x >= 0 else -t
        out[2 * p + 1] = y * (four * ep / (d * d))
        others += abs(y) >= tiny
    if others == 0:
        return
    for p in range(n):
        y = z[2 * p + 1]
        if abs(y) >= tiny:
            w = cmath.tanh(z[2 * p] + y * unit)  # unit: i in the data's dtype
            out[2 * p] = w.real
            out[2 * p + 1] = w.imag


def tanh(data: np.ndarray) -> np.ndarray | None:
    """tanh of order-1 (complex) component data (1, *shape); None elsewhere (the caller
    takes the general path)."""
    if len(data) != 1 or data.dtype.kind != "c":
        return None
    flat, axes = flat_in_memory_order(data)
    rtype = np.float32 if data.dtype == np.complex64 else np.float64
    e = np.abs(flat[0].real)
    e *= rtype(-2)
    em1 = np.expm1(e)
    np.exp(e, out=e)
    out = np.empty_like(flat)
    _tanh_complex(flat[0].view(rtype), e, em1, rtype(_TINY[rtype]), rtype(1), rtype(2),
                  rtype(4), flat.dtype.type(1j), out[0].view(rtype))
    return from_flat(out, data.shape, axes)


def sigmoid_backward(grad: np.ndarray, y: np.ndarray) -> np.ndarray | None:
    """grad * (y * (1 - y)) in one pass for order-0 or order-1 data of one layout and dtype;
    None otherwise."""
    if len(grad) != 1 or len(y) != 1 or grad.dtype != y.dtype or grad.shape != y.shape:
        return None
    if grad.strides != y.strides:
        return None
    flat_g, axes = flat_in_memory_order(grad)
    flat_y, axes_y = flat_in_memory_order(y)
    if axes != axes_y:
        return None
    one = np.float32(1) if y.dtype in (np.float32, np.complex64) else np.float64(1)
    out = np.empty_like(flat_g)
    if y.dtype.kind == "c":
        real = type(one)
        _sigmoid_backward_complex(flat_g[0].view(real), flat_y[0].view(real), one,
                                  out[0].view(real))  # fmt: skip
    else:
        _sigmoid_backward(flat_g[0], flat_y[0], one, out[0])
    return from_flat(out, grad.shape, axes)
