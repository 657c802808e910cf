"""The direct correlation of real images, or complex ones of order 1, at stride 1: a
convolution without im2col's columns, and its adjoints in the weight and in the images, Numba
loops for the CPU.  Complex images are planes of their real parts and i-parts, and each part
of a result is one real correlation over the parts its product-rule terms read
(``gemm.order_one_terms``: the i-parts' product left out below roundoff)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from numba import njit, uint64

from mcnet.algebra.gemm import Term, complex_from, largest_entries, order_one_terms
from mcnet.algebra.loops import JIT_OPTIONS
from mcnet.nn.loops import CHUNK_BYTES, as_real, channel_major

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
# image and the zeros that the last block of outputs reads past it.  Where the dropped columns
# are a large part of each row, the planes hold the batch innermost instead (below,
# ``_correlate_batch_inner``).

_TAPS = 5  # taps per pass over the outputs (a 5x5 kernel has no padding taps)
_BLOCK = 16  # outputs per inner loop: whole SIMD registers in both precisions


# Rows (output channels) go four at a time, so each load of a plane serves twenty
# multiply-adds (with twenty weights and five plane values, 29 registers: AVX-512 has 32);
# past the last row the last row is computed again and stored once.


@njit(fastmath={"contract"}, **JIT_OPTIONS)
def _correlate(planes, w, at, bias, height, width, row, span, ew, offset, out):  # pragma: no cover
    # planes (C, N, P); w (R, C, T) real taps, zero past kh*kw; tap q reads a plane at at[q];
    # bias (R,); out (S, N, height, width*ew): row r of w fills out[r % S] at element offset
    # r // S + offset (ew = 2: complex results, real parts then imaginary)
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
            _store_row(a, r, n, height, width, row, ew, offset, out)
            for k, rk in enumerate((r1, r2, r3)):
                if rk > r + k:
                    _store_row(acc[k + 1], rk, n, height, width, row, ew, offset, out)


@njit(**JIT_OPTIONS)
def _store_row(acc, r, n, height, width, row, ew, offset, out):  # pragma: no cover
    # row r of _correlate's results for image n: every output row's first `width` values;
    # flat indices (no row views: the rows are short)
    rows_out, n_batch = out.shape[0], out.shape[1]
    flat = out.reshape(-1)
    length = uint64(width * ew)
    first = uint64(((r % rows_out) * n_batch + n) * height) * length
    first += uint64(r // rows_out + offset)
    for oh in range(height):
        src, dst = uint64(oh * row), first + uint64(oh) * length
        if ew == 1:
            for t in range(uint64(width)):
                flat[dst + t] = acc[src + t]
        else:
            for t in range(uint64(width)):
                flat[dst + 2 * t] = acc[src + t]


@njit(fastmath={"reassoc", "contract", "nsz"}, **JIT_OPTIONS)
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


# Where the dropped columns are a large part of a row (``_BATCH_INNER_DROPPED``: a 5x5 kernel
# on LeNet-5's 14x14 second layer drops 4 of every 14), the planes hold the batch innermost,
# (C, Hp*Wp*N): output row oh of every image is then one contiguous run of Wo*N outputs
# (pixel (oh, ow) of image n at (oh*Wp + ow)*N + n reads the plane there plus tap (i, j)'s
# (i*Wp + j)*N), so no column is computed and dropped; the results are stored back image by
# image, a strided read of the running sums.  With one input channel (LeNet-5's first layer)
# or wide rows, that store costs more than the dropped columns it saves.


@njit(fastmath={"contract"}, **JIT_OPTIONS)
def _correlate_batch_inner(planes, w, at, bias, height, width, row, span, ew, offset,
                           out):  # pragma: no cover - compiled  # fmt: skip
    # _correlate on planes (C, L) with the batch innermost: each output row of all N images
    # is a run of span >= width*N outputs, stored to out (S, N, height, width*ew) as there
    n_chan = planes.shape[0]
    n_rows, _, n_taps = w.shape
    rows_out, n_batch = out.shape[0], out.shape[1]
    flat = out.reshape(-1)
    length = uint64(width * ew)
    acc = np.empty((4, span), dtype=out.dtype)
    for r in range(0, n_rows, 4):
        r1, r2, r3 = min(r + 1, n_rows - 1), min(r + 2, n_rows - 1), min(r + 3, n_rows - 1)
        a, b, c, d = acc[0], acc[1], acc[2], acc[3]
        for oh in range(height):
            base = uint64(oh * row * n_batch)
            for t in range(uint64(span)):
                a[t] = bias[r]
                b[t] = bias[r1]
                c[t] = bias[r2]
                d[t] = bias[r3]
            for ch in range(n_chan):
                x, wa, wb, wc, wd = planes[ch], w[r, ch], w[r1, ch], w[r2, ch], w[r3, ch]
                for q in range(0, n_taps, _TAPS):
                    s0, s1, s2 = base + at[q], base + at[q + 1], base + at[q + 2]
                    s3, s4 = base + at[q + 3], base + at[q + 4]
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
            for k, rk in enumerate((r, r1, r2, r3)):
                if rk == r + k:  # a row past the last is computed again, not stored
                    src = acc[k]
                    first = uint64((rk % rows_out) * n_batch * height) * length
                    first += uint64(oh) * length + uint64(rk // rows_out + offset)
                    for n in range(n_batch):
                        dst = first + uint64(n * height) * length
                        for ow in range(uint64(width)):
                            flat[dst + ow * ew] = src[ow * n_batch + n]


@njit(fastmath={"reassoc", "contract", "nsz"}, **JIT_OPTIONS)
def _correlate_weights_batch_inner(planes, grad, at, height, row, n_batch, span,
                                   out):  # pragma: no cover - compiled  # fmt: skip
    # _correlate_weights on planes (C, L) with the batch innermost and a gradient (R, height *
    # span) laid out as their outputs (each row's run padded with zeros to span)
    n_chan = planes.shape[0]
    n_rows, _, n_taps = out.shape
    span = uint64(span)
    zero = out.dtype.type(0)
    out[...] = zero
    for r in range(0, n_rows, 4):
        r1, r2, r3 = min(r + 1, n_rows - 1), min(r + 2, n_rows - 1), min(r + 3, n_rows - 1)
        ga, gb, gc, gd = grad[r], grad[r1], grad[r2], grad[r3]
        for ch in range(n_chan):
            x = planes[ch]
            for q in range(0, n_taps, _TAPS):
                a0 = a1 = a2 = a3 = a4 = b0 = b1 = b2 = b3 = b4 = zero
                c0 = c1 = c2 = c3 = c4 = d0 = d1 = d2 = d3 = d4 = zero
                for oh in range(height):
                    base, g0 = uint64(oh * row * n_batch), uint64(oh) * span
                    s0, s1, s2 = base + at[q], base + at[q + 1], base + at[q + 2]
                    s3, s4 = base + at[q + 3], base + at[q + 4]
                    for t in range(span):
                        x0, x1, x2 = x[t + s0], x[t + s1], x[t + s2]
                        x3, x4 = x[t + s3], x[t + s4]
                        u, v, y, z = ga[g0 + t], gb[g0 + t], gc[g0 + t], gd[g0 + t]
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
                    if rk == r + k:
                        for j in range(_TAPS):
                            out[rk, ch, q + j] = sums[k][j]


@njit(**JIT_OPTIONS)
def _batch_inner_rows(g, ew, span, out, compact):  # pragma: no cover - compiled
    # g (R, N, Ho, Wo*ew) -> out (ew*R, Ho*span): out[e*R + r, oh*span + ow*N + n] = g[r, n,
    # oh, ow*ew + e], zero past Wo*N in each run; and, unless compact is empty, compact
    # (ew*R, N, Ho*Wo): compact[e*R + r, n, oh*Wo + ow] = the same
    n_rows, n_batch, height, _ = g.shape
    width = g.shape[3] // ew
    zero = out.dtype.type(0)
    both = compact.shape[2] > 0
    for e in range(ew):
        for r in range(n_rows):
            dst = out[e * n_rows + r]
            for oh in range(height):
                first = uint64(oh) * uint64(span)
                for n in range(n_batch):
                    src = g[r, n, oh]
                    for ow in range(width):
                        dst[first + uint64(ow * n_batch + n)] = src[ow * ew + e]
                for t in range(first + uint64(width * n_batch), first + uint64(span)):
                    dst[t] = zero
            if both:
                cmp = compact[e * n_rows + r]
                for n in range(n_batch):
                    for oh in range(height):
                        src = g[r, n, oh]
                        for ow in range(width):
                            cmp[n, oh * width + ow] = src[ow * ew + e]


@njit(**JIT_OPTIONS)
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


@njit(**JIT_OPTIONS)
def _add_shifted(cols, shifts, runs, length, step, first, out):  # pragma: no cover - compiled
    # the adjoint of reading the planes at shifted offsets (col2im on planes): cols (C, T, Nc,
    # >= runs * length) holds, for the images first..first + Nc, every tap's products at each
    # output position, as `runs` runs of `length` positions `step` apart in a plane:
    # out[c, first + n, k * step + t + shifts[q]] += cols[c, q, n, k * length + t], taps in
    # row-major order (the order of col2im's adds)
    n_chan, n_taps, n_batch, _ = cols.shape
    m = uint64(length)
    for c in range(n_chan):
        for q in range(n_taps):
            s = shifts[q]
            for n in range(n_batch):
                src = cols[c, q, n]
                dst = out[c, first + n]
                for k in range(runs):
                    a, b = uint64(k) * m, uint64(k * step) + s
                    for t in range(m):
                        dst[b + t] += src[a + t]


@dataclass(frozen=True)
class Planes:
    """A stride-1 correlation's input as zero-padded, flattened image planes (``_correlate``):
    real images' channels, or complex images' real parts' channels, then their i-parts'."""

    data: np.ndarray  # (parts * C, N, P), or (parts * C, L) with the batch innermost
    row: int  # the padded width: the distance between output rows in a plane
    span: int  # outputs computed per image (the dropped columns included), or per output row
    # of the whole batch (batch innermost); a multiple of _BLOCK
    out_size: tuple[int, int]
    shifts: np.ndarray  # (T,) uint64: tap (i, j)'s offset i*row + j (times N with the batch
    # innermost); zeros past kh*kw taps
    largest: tuple[float, ...]  # each part's largest |entry| (complex images; () for real)
    batch: int

    @property
    def batch_inner(self) -> bool:
        """Whether the batch is innermost, ``(parts * C, Hp*Wp*N + tail)``."""
        return self.data.ndim == 2

    def real_part(self) -> Planes:
        """The planes of the images' real parts (``Objective.gauss_newton_product``'s real
        backward)."""
        return dataclasses.replace(self, data=self.part(0, 0), largest=())

    def part(self, first: int, last: int) -> np.ndarray:
        """The planes of parts ``first`` to ``last`` (real part 0, i-part 1): a view."""
        channels = len(self.data) // max(1, len(self.largest))
        return self.data[first * channels : (last + 1) * channels]


def correlation_planes(images: np.ndarray, kernel, padding) -> Planes:
    """Real or complex ``(N, C, H, W)`` images (any strides) as the planes of a stride-1
    correlation with ``kernel`` and zero ``padding``: with the batch innermost where the
    dropped columns are a large part of a row (``_BATCH_INNER_DROPPED``)."""
    n, c, h, w = images.shape
    (kh, kw), (ph, pw) = kernel, padding
    height, row = h + 2 * ph, w + 2 * pw
    ho, wo = height - kh + 1, row - kw + 1
    batch_inner = kw - 1 >= _BATCH_INNER_DROPPED * row
    taps = -(-(kh * kw) // _TAPS) * _TAPS
    parts = (images.real, images.imag) if images.dtype.kind == "c" else (images,)
    if batch_inner:
        span = -(-(wo * n) // _BLOCK) * _BLOCK
        size = height * row * n + span  # the last runs read up to span - wo*N past a row
        planes = np.zeros((len(parts) * c, size), parts[0].dtype)
        padded = planes[:, : height * row * n].reshape(len(parts), c, height, row, n)
        for part, into in zip(parts, padded):
            into[:, ph : ph + h, pw : pw + w] = part.transpose(1, 2, 3, 0)
    else:
        span = -(-((ho - 1) * row + wo) // _BLOCK) * _BLOCK
        size = max(height * row, (kh - 1) * row + kw - 1 + span)
        planes = np.zeros((len(parts) * c, n, size), parts[0].dtype)
        padded = planes[:, :, : height * row].reshape(len(parts), c, n, height, row)
        for part, into in zip(parts, padded):
            into[:, :, ph : ph + h, pw : pw + w] = part.transpose(1, 0, 2, 3)
    largest = tuple(largest_entries(planes.reshape(len(parts), -1))) if len(parts) > 1 else ()
    shifts = np.zeros(taps, dtype=np.uint64)
    shifts[: kh * kw] = _tap_offsets(kh, kw, row) * (n if batch_inner else 1)
    return Planes(planes, row, span, (ho, wo), shifts, largest, n)


def _tap_offsets(kh: int, kw: int, row: int) -> np.ndarray:
    """Tap (i, j)'s offset i*row + j in a flattened image plane, taps in row-major order."""
    return (np.arange(kh)[:, None] * row + np.arange(kw)).ravel().astype(np.uint64)


# The least share of a plane's row that its dropped columns (kw - 1 of them) must take for the
# planes to hold the batch innermost: LeNet-5's second layer (a 5x5 kernel on 14x14 images)
_BATCH_INNER_DROPPED = 0.25


def _run_correlate(data: np.ndarray, planes: Planes, w: np.ndarray, bias: np.ndarray, ew: int,
                   offset: int, out: np.ndarray) -> None:  # fmt: skip
    """``_correlate`` or ``_correlate_batch_inner`` of ``data`` (``planes``' data or some of
    its parts) by the planes' layout."""
    (ho, wo), row, span = planes.out_size, planes.row, planes.span
    kernel = _correlate_batch_inner if planes.batch_inner else _correlate
    kernel(data, w, planes.shifts, bias, ho, wo, row, span, ew, offset, out)


def _run_correlate_weights(data: np.ndarray, planes: Planes, grad: np.ndarray,
                           out: np.ndarray) -> None:  # fmt: skip
    """``_correlate_weights`` or its batch-innermost form, by the planes' layout."""
    if planes.batch_inner:
        _correlate_weights_batch_inner(data, grad, planes.shifts, planes.out_size[0],
                                       planes.row, planes.batch, planes.span, out)  # fmt: skip
    else:
        _correlate_weights(data, grad, planes.shifts, planes.span, out)


def _real_rows(data: np.ndarray) -> tuple[np.ndarray, int]:
    """Component data ``(K, ...)`` as real ``(ew*K, ...)``: complex components' real parts,
    then their imaginary parts (ew = 2)."""
    if data.dtype.kind == "c":
        return np.concatenate([data.real, data.imag]), 2
    return data, 1


def _padded_taps(rows: np.ndarray, taps: int) -> np.ndarray:
    """Weights ``(R, C, kh*kw)`` as ``_correlate``'s ``(R, C, taps)``, zero past kh*kw."""
    w = np.zeros((*rows.shape[:2], taps), dtype=rows.dtype)
    w[:, :, : rows.shape[2]] = rows
    return w


def correlate(planes: Planes, weight: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """The correlation of real images with a weight of K components, ``(K, O, C, kh, kw)``
    real or complex, plus ``bias`` ``(K, O)`` of the weight's dtype: ``(K, N, O, Ho, Wo)``,
    laid out channel-major.  Each component is a real correlation (the images are real)."""
    k, o, c, kh, kw = weight.shape
    (ho, wo), taps = planes.out_size, len(planes.shifts)
    out = np.empty((k, o, planes.batch, ho, wo), dtype=weight.dtype)
    while k > 1 and not weight[k - 1].any() and (bias is None or not bias[k - 1].any()):
        k -= 1  # a zero component (a one-direction perturbation's s_2 ...) gives zeros
        out[k] = 0
    weight, bias = weight[:k], None if bias is None else bias[:k]
    rows, ew = _real_rows(weight.reshape(k * o, c, kh * kw))
    w = _padded_taps(rows, taps)
    shift = np.zeros(len(rows), dtype=rows.dtype) if bias is None else _real_rows(bias.ravel())[0]
    out_real = out[:k].view(rows.dtype).reshape(k * o, -1, ho, wo * ew)
    _run_correlate(planes.data, planes, w, np.ascontiguousarray(shift), ew, 0, out_real)
    return out.transpose(0, 2, 1, 3, 4)


def gradient_rows(planes: Planes, grad: np.ndarray, for_input: bool = False,
                  ) -> tuple[np.ndarray, np.ndarray | None]:  # fmt: skip
    """An output gradient ``(K, N, O, Ho, Wo)``, real or complex, laid out as the outputs of
    ``_correlate``: real ``(ew*K*O, N, >= span)``, row by row at the planes' row length, zero
    at the dropped columns and past the last row, or, with the batch innermost, ``(ew*K*O,
    Ho*span)`` (real parts, then imaginary parts).  With the batch innermost and
    ``for_input`` (an input gradient will be taken), also the rows without dropped columns,
    ``(ew*K*O, N, Ho*Wo)``, for ``_input_planes``'s GEMM; else None."""
    k, n, o, ho, wo = grad.shape
    g, ew = as_real(channel_major(grad))
    g = g.reshape(k * o, n, ho, wo * ew)
    if planes.batch_inner:
        out = np.empty((ew * k * o, ho * planes.span), g.dtype)
        compact = np.empty((ew * k * o, n, ho * wo if for_input else 0), g.dtype)
        _batch_inner_rows(g, ew, planes.span, out, compact)
        return out, compact if for_input else None
    out = np.empty((ew * k * o, n, max(planes.span, ho * planes.row)), g.dtype)
    _gradient_rows(g, planes.row, ew, out)
    return out, None


def correlate_weights(planes: Planes, rows: np.ndarray, shape, dtype) -> np.ndarray:
    """The adjoint of ``correlate`` in its weight: a gradient's ``gradient_rows`` against the
    planes' real images, summed over the batch; ``shape`` ``(K, O, C, kh, kw)`` and ``dtype``
    (the gradient's: complex when the rows hold real and imaginary parts) of the result."""
    k, o, c, kh, kw = shape
    out = np.empty((len(rows), c, len(planes.shifts)), dtype=rows.dtype)
    _run_correlate_weights(planes.data, planes, rows, out)
    parts = out[:, :, : kh * kw].reshape(-1, k, o, c, kh, kw)
    if len(parts) == 1:
        return parts[0]
    result = np.empty(shape, dtype=dtype)
    result.real, result.imag = parts
    return result


def _input_planes(planes: Planes, rows: np.ndarray, compact: np.ndarray | None,
                  weight: np.ndarray) -> np.ndarray:  # fmt: skip
    """``sum_r weight[r]^T rows[r]`` added back into image planes ``(C, N, Hp*Wp)``: the
    adjoint of a correlation in its images, for a real weight ``(R, C, kh, kw)`` and real
    gradient rows ``(R, N, >= span)``.  A batch chunk at a time: one GEMM gives every tap's
    products at every output position (``W^T @ rows``, about ``CHUNK_BYTES``, in cache), then
    ``_add_shifted`` adds them into the planes, in long contiguous runs where col2im has runs
    of ``Wo``.  With the rows without their dropped columns (``compact``, from
    ``gradient_rows``, where the planes hold the batch innermost) the GEMM does less work and
    the adds go a run of ``Wo`` at a time."""
    r, c, kh, kw = weight.shape
    (ho, wo), row = planes.out_size, planes.row
    if compact is None:
        source, runs, length = rows, 1, (ho - 1) * row + wo
    else:
        source, runs, length = compact, ho, wo
    n, width = source.shape[1], source.shape[2]
    taps = np.ascontiguousarray(weight.reshape(r, c * kh * kw).T)
    out = np.zeros((c, n, (ho + kh - 1) * row), dtype=source.dtype)
    shifts = _tap_offsets(kh, kw, row)
    chunk = max(1, min(n, CHUNK_BYTES // (c * kh * kw * width * source.itemsize)))
    for first in range(0, n, chunk):
        last = min(n, first + chunk)
        cols = taps @ source[:, first:last].reshape(r, -1)  # (C*kh*kw, Nc*width)
        _add_shifted(cols.reshape(c, kh * kw, last - first, width), shifts, runs, length, row,
                     first, out)  # fmt: skip
    return out


def _images(out: np.ndarray, planes: Planes, kernel, image_size, padding) -> np.ndarray:
    """The images ``(N, C, H, W)`` inside image planes ``(C, N, Hp*Wp)`` (a view)."""
    (h, w), (ph, pw), (kh, _) = image_size, padding, kernel
    c, n = out.shape[:2]
    height, row = planes.out_size[0] + kh - 1, planes.row
    images = out[:, :, : height * row].reshape(c, n, height, row)[:, :, ph : ph + h, pw : pw + w]
    return images.transpose(1, 0, 2, 3)


def correlate_input(planes: Planes, rows: np.ndarray, compact: np.ndarray | None,
                    weight: np.ndarray, image_size, padding) -> np.ndarray:  # fmt: skip
    """The adjoint of ``correlate`` in its images, for a real weight ``(O, C, kh, kw)`` and a
    real gradient's ``gradient_rows`` ``(O, N, >= span)`` (and their compact form or None):
    ``(N, C, H, W)``, laid out channel-major (``_input_planes``)."""
    out = _input_planes(planes, rows, compact, weight)
    return _images(out, planes, weight.shape[2:], image_size, padding)


# --- complex images of order 1 ------------------------------------------------------------


def _stacked(terms: list[Term], parts: np.ndarray) -> tuple[np.ndarray, int]:
    """An output part's terms (``sign * parts[i]`` against the other operand's part j) as
    ``parts``' blocks against that operand's parts ``first`` to ``last``: ``(last - first +
    1, *part shape)``, zero where no term reads a part, and ``first``."""
    first, last = min(j for _, _, j in terms), max(j for _, _, j in terms)
    out = np.zeros((last - first + 1, *parts.shape[1:]), dtype=parts.dtype)
    for sign, i, j in terms:
        out[j - first] += sign * parts[i]
    return out, first


def _joined(parts: list[np.ndarray]) -> np.ndarray:
    """Real and imaginary parts of one shape as one complex array of their memory order."""
    return complex_from(parts[0], parts[1], np.result_type(parts[0].dtype, np.complex64))


def correlate_order_one(planes: Planes, w_parts: np.ndarray, b_parts: np.ndarray | None,
                        ) -> np.ndarray:  # fmt: skip
    """The correlation of complex images (``planes`` of two parts) with a real or complex
    weight, as its parts ``(1 or 2, O, C, kh, kw)`` (real part, i-part), plus a bias's
    parts ``(1 or 2, O)``: complex ``(N, O, Ho, Wo)``, laid out channel-major.  Each part of
    the result is one real correlation over the image parts its terms read, written straight
    into the complex result."""
    o, c, kh, kw = w_parts.shape[1:]
    (ho, wo), n = planes.out_size, planes.batch
    rtype = w_parts.dtype
    out = np.empty((o, n, ho, wo), dtype=np.result_type(rtype, np.complex64))
    out_real = out.view(rtype).reshape(o, n, ho, 2 * wo)
    shifts = np.zeros((2, o), dtype=rtype)
    if b_parts is not None:
        shifts[: len(b_parts)] = b_parts
    terms = order_one_terms(largest_entries(w_parts), planes.largest, rtype)
    for part, part_terms in enumerate(terms):
        stacked, first = _stacked(part_terms, w_parts)  # (B, O, C, kh, kw)
        taps = _padded_taps(stacked.transpose(1, 0, 2, 3, 4).reshape(o, -1, kh * kw),
                            len(planes.shifts))  # fmt: skip
        _run_correlate(planes.part(first, first + len(stacked) - 1), planes, taps, shifts[part],
                       2, part, out_real)  # fmt: skip
    return out.transpose(1, 0, 2, 3)


def correlate_weights_order_one(planes: Planes, rows: np.ndarray, shape,
                                i_part_only: bool) -> np.ndarray:  # fmt: skip
    """The adjoint of ``correlate_order_one`` in its weight: complex images' planes against a
    gradient's ``gradient_rows`` (real, or real parts' rows then i-parts'), summed over the
    batch: complex ``shape`` ``(O, C, kh, kw)``, or its i-part alone (real)."""
    o, c, kh, kw = shape
    g_parts = rows.reshape(len(rows) // o, o, *rows.shape[1:])
    # the i-part's terms do not depend on the parts' sizes: no pass to measure them
    sizes = (0.0,) * len(g_parts) if i_part_only else largest_entries(g_parts)
    terms = order_one_terms(sizes, planes.largest, rows.dtype)
    results = []
    for part_terms in terms[1:] if i_part_only else terms:
        total = np.zeros((o, c, len(planes.shifts)), dtype=rows.dtype)
        for sign, i, j in part_terms:
            out = np.empty_like(total)
            _run_correlate_weights(planes.part(j, j), planes, g_parts[i], out)
            total += sign * out
        results.append(total[:, :, : kh * kw].reshape(shape))
    return results[0] if i_part_only else _joined(results)


def correlate_input_order_one(planes: Planes, rows: np.ndarray, compact: np.ndarray | None,
                              w_parts: np.ndarray, image_size, padding) -> np.ndarray:  # fmt: skip
    """The adjoint of ``correlate_order_one`` in its images: a weight's parts ``(1 or 2, O, C,
    kh, kw)`` against a gradient's ``gradient_rows`` (real, or real parts' rows then
    i-parts'; and their compact form or None), not both real: complex ``(N, C, H, W)``, laid
    out channel-major."""
    o, c, kh, kw = w_parts.shape[1:]
    g_parts = rows.reshape(len(rows) // o, o, *rows.shape[1:])
    terms = order_one_terms(largest_entries(w_parts), largest_entries(g_parts), rows.dtype)
    parts = []
    for part_terms in terms:
        stacked, first = _stacked(part_terms, w_parts)  # (B, O, C, kh, kw)
        blocks = slice(first * o, (first + len(stacked)) * o)
        out = _input_planes(planes, rows[blocks], None if compact is None else compact[blocks],
                            stacked.reshape(-1, c, kh, kw))  # fmt: skip
        parts.append(_images(out, planes, (kh, kw), image_size, padding))
    return _joined(parts)
