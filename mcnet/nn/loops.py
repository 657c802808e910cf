"""Hand-written Numba loops for convolution, pooling and batch normalisation on the CPU:
im2col, its adjoint col2im, average and max pooling and their adjoints, batch statistics
(the direct correlation is ``correlation``).

These window maps are linear, so they act the same on every multicomplex component, real or
complex: the component axis is one more batch axis, and Numba compiles one loop per dtype.
In NumPy the same maps are one strided copy or add per kernel offset, each iterating over rows
of only ``Wo`` elements; these loops visit every element once, with contiguous inner runs.

Arrays are indexed ``(K, C, N, H, W)`` (components, channels, batch, rows, columns): callers
pass transposed views, so a tensor in the channel-major layout a convolution's GEMM writes
(``(O, N*Ho*Wo)``) is a C-contiguous array here and Numba's loops run on unit strides.  Any
other layout is correct too, only slower.  Inner loops count in uint64 (see
``mcnet.algebra.loops``), and constants come in the arrays' own dtype (``scale``).
"""

from __future__ import annotations

import numpy as np
from numba import njit, uint64

from mcnet.algebra.loops import JIT_OPTIONS

# Batch chunks of a convolution stay in cache between the GEMM that writes or reads them and
# the loop that reads or writes them: im2col's columns and the input gradient's products,
# about this many bytes a chunk.
CHUNK_BYTES = 1 << 21


@njit(**JIT_OPTIONS)
def _im2col(x, dims, kernel, stride, padding, ew, out):  # pragma: no cover - compiled
    # x: flat (K, C, N, H, W*ew) reals; out: flat (K, C, kh, kw, N, ho, wo*ew), zero where the
    # window leaves x.  ew = 2 for complex data seen as real: element w is the pair [2w,
    # 2w + 1], so a stride-1 window row is one contiguous run.  Flat indices, no row views:
    # a row is only wo*ew elements long, too short to amortise slicing it out of a 2-D array.
    # Rows above and below the image (top, bottom) and columns left and right of it (lo,
    # hi) are bounded once per kernel offset: a row inside the image is one branch-free run.
    n_comp, n_chan, n_batch, height, width, ho, wo = dims
    kh, kw = kernel
    sh, sw = stride
    ph, pw = padding
    zero = out.dtype.type(0)
    row_in, row_out = uint64(width * ew), uint64(wo * ew)
    plane, step = uint64(height) * row_in, uint64(sh) * row_in
    o = uint64(0)
    for k in range(n_comp):
        for c in range(n_chan):
            for i in range(kh):
                top = min(ho, max(0, (ph - i + sh - 1) // sh))  # 0 <= oh * sh + i - ph < height
                bottom = max(top, min(ho, (height - 1 + ph - i) // sh + 1))
                above, below = uint64(top) * row_out, uint64(ho - bottom) * row_out
                for j in range(kw):
                    lo = min(wo, max(0, (pw - j + sw - 1) // sw))  # 0 <= ow * sw + j - pw < width
                    hi = max(lo, min(wo, (width - 1 + pw - j) // sw + 1))
                    a, b = uint64(lo * ew), uint64(hi * ew)
                    whole = a == 0 and b == row_out and sw == 1  # no padding in the rows
                    inside = hi > lo and bottom > top
                    offset = (top * sh + i - ph) * width + lo * sw + j - pw if inside else 0
                    src = uint64((k * n_chan + c) * n_batch) * plane + uint64(offset * ew)
                    for _ in range(n_batch):
                        for t in range(above):
                            out[o + t] = zero
                        o += above
                        s = src
                        if whole:
                            for _ in range(top, bottom):
                                for t in range(row_out):
                                    out[o + t] = x[s + t]
                                o += row_out
                                s += step
                        else:
                            for _ in range(top, bottom):
                                _padded_row(x, s, a, b, row_out, sw, ew, o, out)
                                o += row_out
                                s += step
                        for t in range(below):
                            out[o + t] = zero
                        o += below
                        src += plane


@njit(inline="always", **JIT_OPTIONS)
def _padded_row(x, s, a, b, row_out, sw, ew, o, out):  # pragma: no cover - compiled
    # one of _im2col's rows that the padding or the stride leaves columns of: zeros before a
    # and from b, x's strided (or stride-1) elements from s between
    zero = out.dtype.type(0)
    for t in range(a):
        out[o + t] = zero
    if sw == 1:
        for t in range(b - a):
            out[o + a + t] = x[s + t]
    else:
        for ow in range((b - a) // uint64(ew)):
            for e in range(ew):
                out[o + a + ow * uint64(ew) + uint64(e)] = x[s + ow * uint64(sw * ew) + uint64(e)]
    for t in range(b, row_out):
        out[o + t] = zero


@njit(**JIT_OPTIONS)
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
    plane, step = uint64(height) * row, uint64(sh) * row
    for kc in range(n_comp * n_chan):
        start = uint64(kc * n_total + first) * plane
        for t in range(uint64(n_batch) * plane):
            out[start + t] = zero
    for c in range(n_chan):
        for i in range(kh):
            top = min(ho, max(0, (ph - i + sh - 1) // sh))
            bottom = max(top, min(ho, (height - 1 + ph - i) // sh + 1))
            for j in range(kw):
                lo = min(wo, max(0, (pw - j + sw - 1) // sw))
                hi = max(lo, min(wo, (width - 1 + pw - j) // sw + 1))
                if hi == lo or bottom == top:
                    continue
                a, b = uint64(lo * ew), uint64(hi * ew)
                offset = uint64((top * sh + i - ph) * width + lo * sw + j - pw) * uint64(ew)
                for k in range(n_comp):
                    rc = uint64(((((k * n_chan + c) * kh + i) * kw + j) * n_batch) * ho) * row_in
                    base = uint64((k * n_chan + c) * n_total + first) * plane + offset
                    for _ in range(n_batch):
                        src, dst = rc + uint64(top) * row_in + a, base
                        if sw == 1:
                            for _ in range(top, bottom):
                                for t in range(b - a):
                                    out[dst + t] += cols[src + t]
                                src += row_in
                                dst += step
                        else:
                            for _ in range(top, bottom):
                                for ow in range(hi - lo):
                                    d = dst + uint64(ow * sw * ew)
                                    for e in range(ew):
                                        out[d + e] += cols[src + uint64(ow * ew + e)]
                                src += row_in
                                dst += step
                        rc += uint64(ho) * row_in
                        base += plane


@njit(**JIT_OPTIONS)
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


@njit(**JIT_OPTIONS)
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


@njit(**JIT_OPTIONS)
def _max_pool(x, kh, kw, sh, sw, out, choice, at):  # pragma: no cover - compiled
    # x (K, C, N, H, W), out (K, C, N, Ho, Wo), choice (C, N, Ho, Wo): the window's argmax
    # by real part of the first component, first on ties, the first NaN as NumPy's argmax.
    # A window at a time on flat planes (5-D indexing per element doubled the time), with
    # selects instead of branches (random data mispredicts half of them), the chosen
    # element's offset in the plane carried beside its index (``at``, (Ho*Wo,): the other
    # components' picks, without an integer division per output).
    k_total, c_total, n_total, ho, wo = out.shape
    width = x.shape[4]
    for c in range(c_total):
        for n in range(n_total):
            plane = x[0, c, n].reshape(-1)
            picked = out[0, c, n].reshape(-1)
            chosen = choice[c, n].reshape(-1)
            for i in range(ho):
                for j in range(wo):
                    corner = uint64(i * sh * width + j * sw)
                    best = plane[corner].real
                    index, offset = 0, corner
                    for a in range(kh):
                        start = corner + uint64(a * width)
                        for b in range(kw):
                            v = plane[start + uint64(b)].real
                            taken = (v > best) | ((v != v) & (best == best))
                            best = v if taken else best
                            index = a * kw + b if taken else index
                            offset = start + uint64(b) if taken else offset
                    o = uint64(i * wo + j)
                    chosen[o] = index
                    picked[o] = plane[offset]
                    at[o] = offset
            for k in range(1, k_total):
                src, dst = x[k, c, n].reshape(-1), out[k, c, n].reshape(-1)
                for o in range(uint64(ho * wo)):
                    dst[o] = src[at[o]]


@njit(**JIT_OPTIONS)
def _max_pool_backward(g, choice, row_of, kw, sh, sw, out):  # pragma: no cover - compiled
    # g (K, C, N, Ho, Wo) added into the chosen elements of out (K, C, N, H, W), zeroed;
    # row_of[index]: the window row of a window index (no integer division per element)
    k_total, c_total, n_total, ho, wo = g.shape
    for k in range(k_total):
        for c in range(c_total):
            for n in range(n_total):
                for i in range(ho):
                    for j in range(wo):
                        best = choice[c, n, i, j]
                        a = row_of[best]
                        out[k, c, n, i * sh + a, j * sw + best - a * kw] += g[k, c, n, i, j]


@njit(fastmath={"reassoc", "contract", "nsz"}, **JIT_OPTIONS)
def _batch_norm(x, weight, bias, eps, zero, normalised, out, stats):  # pragma: no cover
    # x (C, M): a channel's values in a row, real or complex; per channel the mean and the
    # biased variance over the row (summed in the precision of ``zero``, double: as exact
    # as NumPy's pairwise sums in the data's precision), inv_std = 1 / sqrt(var + eps) in
    # the data's precision; normalised = (x - mean) inv_std and out = normalised weight +
    # bias; stats[c] = (mean, var, inv_std).  Three passes over a row, two of them sums
    # (reassociated, fastmath, so that they vectorise), instead of the seven of
    # ``_BatchNorm.forward``'s tensor operations, each reducing over strided axes.
    n_chan, m = x.shape
    for c in range(n_chan):
        row, norm, dst = x[c], normalised[c], out[c]
        total = zero
        for p in range(uint64(m)):
            total += row[p]
        mean = row.dtype.type(total / m)
        squares = zero
        for p in range(uint64(m)):
            d = row[p] - mean
            squares += d * d
        var = row.dtype.type(squares / m)
        inv_std = row.dtype.type(1) / np.sqrt(var + eps)
        w, b = weight[c], bias[c]
        for p in range(uint64(m)):
            v = (row[p] - mean) * inv_std
            norm[p] = v
            dst[p] = v * w + b
        stats[c, 0], stats[c, 1], stats[c, 2] = mean, var, inv_std


@njit(fastmath={"reassoc", "contract", "nsz"}, **JIT_OPTIONS)
def _batch_norm_backward(g, normalised, weight, inv_std, zero, grads, out):  # pragma: no cover
    # the adjoint of _batch_norm with batch statistics, per channel row: grads[c] = (sum g
    # normalised, sum g) (the weight's and bias's gradients) and out = (w g - w mean(g) -
    # normalised w mean(g normalised)) inv_std, the closed form of ``_BatchNorm.backward``
    n_chan, m = g.shape
    for c in range(n_chan):
        row, norm, dst = g[c], normalised[c], out[c]
        sum_g, sum_gn = zero, zero
        for p in range(uint64(m)):
            gp = row[p]
            sum_g += gp
            sum_gn += gp * norm[p]
        grads[c, 0], grads[c, 1] = sum_gn, sum_g
        scale = weight[c] * inv_std[c]
        mean_g = dst.dtype.type(sum_g / m)
        mean_gn = dst.dtype.type(sum_gn / m)
        for p in range(uint64(m)):
            dst[p] = scale * ((row[p] - mean_g) - norm[p] * mean_gn)


def batch_norm(data: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float):
    """Batch normalisation of ``(1, N, C, H, W)`` data (real, or complex of order 1) by its
    batch statistics, with per-channel ``weight`` and ``bias`` ``(C,)``: the result and the
    normalised values ``(1, N, C, H, W)``, laid out channel-major, and each channel's mean,
    biased variance and 1 / sqrt(var + eps), ``(C, 3)``."""
    x = channel_major(data)[0]  # (C, N, H, W)
    c = x.shape[0]
    rows = x.reshape(c, -1)
    normalised = np.empty_like(rows)
    out = np.empty(rows.shape, dtype=np.result_type(rows, weight, bias))
    stats = np.empty((c, 3), dtype=rows.dtype)
    _batch_norm(rows, weight, bias, rows.real.dtype.type(eps), _double_zero(rows.dtype),
                normalised, out, stats)  # fmt: skip
    laid_out = (1, *x.shape)
    return (out.reshape(laid_out).transpose(0, 2, 1, 3, 4),
            normalised.reshape(laid_out).transpose(0, 2, 1, 3, 4), stats)  # fmt: skip


def batch_norm_backward(grad: np.ndarray, normalised: np.ndarray, weight: np.ndarray,
                        inv_std: np.ndarray):  # fmt: skip
    """The adjoint of ``batch_norm``: the gradient ``(1, N, C, H, W)`` (channel-major) and
    the weight's and bias's gradients ``(C,)``, each of the dtype the tensor operations
    would give it."""
    g = channel_major(grad)[0]
    c = g.shape[0]
    rows = g.reshape(c, -1)
    norm = channel_major(normalised)[0].reshape(c, -1)
    sums = np.result_type(rows, norm)
    out = np.empty(rows.shape, dtype=np.result_type(sums, weight, inv_std))
    grads = np.empty((c, 2), dtype=sums)
    _batch_norm_backward(rows, norm, weight, inv_std, _double_zero(sums), grads, out)
    return out.reshape(1, *g.shape).transpose(0, 2, 1, 3, 4), grads[:, 0], grads[:, 1]


def _double_zero(dtype: np.dtype):
    """Zero in the double precision of ``dtype``'s kind: the loops' running sums."""
    return np.complex128(0) if np.dtype(dtype).kind == "c" else np.float64(0)


def max_pool(data: np.ndarray, kernel, stride, out_size) -> tuple[np.ndarray, np.ndarray]:
    """Max pooling of ``(K, N, C, H, W)`` data (no padding, floor mode) by the real part of
    the first component: the result ``(K, N, C, Ho, Wo)`` and each window's choice
    ``(N, C, Ho, Wo)`` (row-major index in the window), both laid out channel-major."""
    k, n, c, _, _ = data.shape
    ho, wo = out_size
    out = np.empty((k, c, n, ho, wo), dtype=data.dtype)
    choice = np.empty((c, n, ho, wo), dtype=np.int32)
    at = np.empty(ho * wo, dtype=np.uint64)
    _max_pool(channel_major(data), kernel[0], kernel[1], stride[0], stride[1], out, choice, at)
    return out.transpose(0, 2, 1, 3, 4), choice.transpose(1, 0, 2, 3)


def max_pool_backward(grad: np.ndarray, choice: np.ndarray, shape, kernel, stride) -> np.ndarray:
    """The adjoint of ``max_pool``: each gradient of ``grad`` ``(K, N, C, Ho, Wo)`` added to
    the element its window chose, in zeros of ``shape`` ``(K, N, C, H, W)``, laid out
    channel-major."""
    k, n, c, h, w = shape
    out = np.zeros((k, c, n, h, w), dtype=grad.dtype)
    row_of = np.repeat(np.arange(kernel[0], dtype=np.int32), kernel[1])
    _max_pool_backward(channel_major(grad), np.ascontiguousarray(choice.transpose(1, 0, 2, 3)),
                       row_of, kernel[1], stride[0], stride[1], out)  # fmt: skip
    return out.transpose(0, 2, 1, 3, 4)


def channel_major(data: np.ndarray) -> np.ndarray:
    """``(K, N, C, H, W)`` component data as ``(K, C, N, H, W)``, C-contiguous (a view when the
    data is laid out channel-major, as a convolution's output is)."""
    return np.ascontiguousarray(data.transpose(0, 2, 1, 3, 4))


def as_real(a: np.ndarray) -> tuple[np.ndarray, int]:
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
    x, ew = as_real(channel_major(data))
    out = np.empty((k, c, kh, kw, n, ho, wo), dtype=data.dtype)
    out_real, _ = as_real(out)
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
    src, ew = as_real(np.ascontiguousarray(cols))
    result = np.empty((k, c, n, h, w), dtype=cols.dtype) if out is None else out
    if not result.flags.c_contiguous or result.shape[:2] != (k, c) or result.shape[3:] != (h, w):
        raise ValueError(f"col2im: out must be a C-contiguous {(k, c, 'N', h, w)} array, got "
                         f"shape {result.shape}")  # fmt: skip
    target, _ = as_real(result)
    dims = (k, c, n, h, w, ho, wo)
    _col2im(src.reshape(-1), dims, tuple(kernel), tuple(stride), tuple(padding), ew,
            result.shape[2], first, target.reshape(-1))  # fmt: skip
    return result[:, :, first : first + n].transpose(0, 2, 1, 3, 4)


def avg_pool(data: np.ndarray, kernel, stride, out_size) -> np.ndarray:
    """Average pooling of ``(K, N, C, H, W)`` data (no padding, floor mode); the result is
    laid out channel-major."""
    k, n, c, h, w = data.shape
    ho, wo = out_size
    x, ew = as_real(channel_major(data))
    out = np.empty((k, c, n, ho, wo), dtype=data.dtype)
    out_real, _ = as_real(out)
    scale = _real_scalar(data.dtype, 1.0 / (kernel[0] * kernel[1]))
    _avg_pool(x.reshape(-1, w * ew), k * c * n, h, tuple(kernel), tuple(stride), ho, wo, ew,
              scale, out_real.reshape(-1, wo * ew))  # fmt: skip
    return out.transpose(0, 2, 1, 3, 4)


def avg_pool_backward(grad: np.ndarray, shape, kernel, stride) -> np.ndarray:
    """The adjoint of ``avg_pool``: ``(K, N, C, ho, wo)`` gradients spread over ``shape``,
    laid out channel-major."""
    k, n, c, h, w = shape
    ho, wo = grad.shape[-2:]
    g, ew = as_real(channel_major(grad))
    out = np.empty((k, c, n, h, w), dtype=grad.dtype)
    out_real, _ = as_real(out)
    scale = _real_scalar(grad.dtype, 1.0 / (kernel[0] * kernel[1]))
    _avg_pool_backward(g.reshape(-1, wo * ew), k * c * n, h, tuple(kernel), tuple(stride), ho,
                       wo, ew, scale, out_real.reshape(-1, w * ew))  # fmt: skip
    return out.transpose(0, 2, 1, 3, 4)


def _real_scalar(dtype: np.dtype, value: float):
    """``value`` as a scalar of dtype's real type (float32 for complex64)."""
    return np.float32(value) if dtype in (np.float32, np.complex64) else np.float64(value)
