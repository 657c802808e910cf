"""Winograd's minimal filtering F(2x2, 3x3) for 3x3 convolutions at stride 1, forward and
both adjoints: Numba loops for the transforms, 16 GEMMs for the products.

Every 2x2 block of outputs reads a 4x4 tile of the (zero-padded) input, and tiles overlap by
two pixels.  With the transforms of Lavin and Gray (2016),

    Y = A^T [(G w G^T) * (B^T d B)] A          (* elementwise, 4x4)

the 9 multiply-adds per output and channel pair of a direct 3x3 correlation become 16 per
2x2 block: 4 per output, 2.25x fewer.  Summed over the input channels, each of the 16
elements of the 4x4 product is one GEMM: ``M[k] = U[k] @ V[k]``, ``U[k]`` (O, C) the
transformed filters and ``V[k]`` (C, tiles) the transformed tiles.  The transforms are
linear maps with entries 0, +-1 and 1/2, so their roundoff is a few units of the last place
of the sums they form; the products' roundoff is that of im2col's GEMM, with fewer terms.

Operands real or complex of order 1 (a derivative pass), the latter as their real part and
i-part: the transforms act on each part alone, and the 16 products follow the product rule,
the product of the i-parts left out where it is below the real product's roundoff, as in
every CPU product (``algebra.gemm``).  A second product of a part is summed in by the loop
that reads the first, not by a pass of its own.

The backward is the adjoint of each step: ``dM = A dY A^T``, ``dU[k] = dM[k] @ V[k]^T``
(the filters' gradient ``G^T dU G``) and ``dV[k] = U[k]^T @ dM[k]`` (the images' gradient
``B dV B^T``, added back into the overlapping tiles).  So the weight gradient is exactly the
adjoint of the forward that was computed, as the other paths' are.

Layouts: images channel-major (C, N, H, W), as the CPU path keeps them, outputs (O, N, Ho,
Wo); tiles run along n, then tile row, then tile column.  The 16 transformed planes are rows
of one buffer, each ``_ROW_GAP`` elements longer than its data: with planes a power of two
apart (they often are), the 16 streams that a transform reads or writes map to the same
cache sets, and the loops run several times slower."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numba import njit

from mcnet.algebra.gemm import Term, order_one_terms
from mcnet.algebra.loops import JIT_OPTIONS

_ROW_GAP = 16  # elements past each transformed plane's data (see the module's docstring)


@njit(**JIT_OPTIONS)
def _bt(d0, d1, d2, d3):  # pragma: no cover - compiled
    # B^T d for a 4-vector d
    return d0 - d2, d1 + d2, d2 - d1, d1 - d3


@njit(**JIT_OPTIONS)
def _b(v0, v1, v2, v3):  # pragma: no cover - compiled
    # B v, the adjoint of _bt
    return v0, v1 - v2 + v3, v1 + v2 - v0, -v3


@njit(**JIT_OPTIONS)
def _at(m0, m1, m2, m3):  # pragma: no cover - compiled
    # A^T m: a 4-vector to the 2 outputs it yields
    return m0 + m1 + m2, m1 - m2 - m3


@njit(**JIT_OPTIONS)
def _a(y0, y1):  # pragma: no cover - compiled
    # A y, the adjoint of _at
    return y0, y0 + y1, y0 - y1, -y1


@njit(**JIT_OPTIONS)
def _g(w0, w1, w2, half):  # pragma: no cover - compiled
    # G w for 3 filter taps
    return w0, half * (w0 + w1 + w2), half * (w0 - w1 + w2), w2


@njit(**JIT_OPTIONS)
def _gt(u0, u1, u2, u3, half):  # pragma: no cover - compiled
    # G^T u, the adjoint of _g
    return u0 + half * (u1 + u2), half * (u1 - u2), half * (u1 + u2) + u3


@njit(**JIT_OPTIONS)
def _term(m, extra, sign, k, t):  # pragma: no cover - compiled
    # m[k, t], plus sign * extra[k, t] when a second product is summed in on the way
    if extra is None:
        return m[k, t]
    return m[k, t] + sign * extra[k, t]


@njit(**JIT_OPTIONS)
def _transform_filters(w, out):  # pragma: no cover - compiled
    # w (P, 9): P = O*C filters, rows of 3 taps; out (16, >= P): G w G^T, element 4i + j.
    # Returns the largest |element| written.
    half = out.dtype.type(0.5)
    largest = abs(half - half)
    for p in range(w.shape[0]):
        a0, a1, a2, a3 = _g(w[p, 0], w[p, 3], w[p, 6], half)  # column 0 of G w
        b0, b1, b2, b3 = _g(w[p, 1], w[p, 4], w[p, 7], half)
        c0, c1, c2, c3 = _g(w[p, 2], w[p, 5], w[p, 8], half)
        for i, (u0, u1, u2) in enumerate(((a0, b0, c0), (a1, b1, c1), (a2, b2, c2), (a3, b3, c3))):
            e0, e1, e2, e3 = _g(u0, u1, u2, half)
            out[4 * i, p], out[4 * i + 1, p], out[4 * i + 2, p], out[4 * i + 3, p] = e0, e1, e2, e3
            largest = max(largest, abs(e0), abs(e1), abs(e2), abs(e3))
    return largest


@njit(**JIT_OPTIONS)
def _filters_adjoint(du, extra, sign, out):  # pragma: no cover - compiled
    # du (16, >= P) (+ sign * extra) -> out (P, 9): G^T du G
    half = out.dtype.type(0.5)
    u = np.empty(16, dtype=out.dtype)
    for p in range(out.shape[0]):
        for k in range(16):
            u[k] = _term(du, extra, sign, k, p)
        a0, a1, a2 = _gt(u[0], u[4], u[8], u[12], half)  # column 0 of G^T du
        b0, b1, b2 = _gt(u[1], u[5], u[9], u[13], half)
        c0, c1, c2 = _gt(u[2], u[6], u[10], u[14], half)
        d0, d1, d2 = _gt(u[3], u[7], u[11], u[15], half)
        out[p, 0], out[p, 1], out[p, 2] = _gt(a0, b0, c0, d0, half)
        out[p, 3], out[p, 4], out[p, 5] = _gt(a1, b1, c1, d1, half)
        out[p, 6], out[p, 7], out[p, 8] = _gt(a2, b2, c2, d2, half)


@njit(**JIT_OPTIONS)
def _tiles(x, th, tw, out):  # pragma: no cover - compiled
    # x (C*N, 2*th + 2, 2*tw + 2) zero-padded planes; out (16, >= C*N*th*tw): B^T d B.
    # Returns the largest |element| written.
    largest = abs(out.dtype.type(0))
    t = 0
    for p in range(x.shape[0]):
        for a in range(th):
            r0, r1, r2, r3 = x[p, 2 * a], x[p, 2 * a + 1], x[p, 2 * a + 2], x[p, 2 * a + 3]
            for b in range(tw):
                s = 2 * b
                a0, a1, a2, a3 = _bt(r0[s], r1[s], r2[s], r3[s])  # column 0 of B^T d
                b0, b1, b2, b3 = _bt(r0[s + 1], r1[s + 1], r2[s + 1], r3[s + 1])
                c0, c1, c2, c3 = _bt(r0[s + 2], r1[s + 2], r2[s + 2], r3[s + 2])
                d0, d1, d2, d3 = _bt(r0[s + 3], r1[s + 3], r2[s + 3], r3[s + 3])
                rows = ((a0, b0, c0, d0), (a1, b1, c1, d1), (a2, b2, c2, d2), (a3, b3, c3, d3))
                for i, (u0, u1, u2, u3) in enumerate(rows):
                    e0, e1, e2, e3 = _bt(u0, u1, u2, u3)
                    out[4 * i, t], out[4 * i + 1, t], out[4 * i + 2, t] = e0, e1, e2
                    out[4 * i + 3, t] = e3
                    largest = max(largest, abs(e0), abs(e1), abs(e2), abs(e3))
                t += 1
    return largest


@njit(**JIT_OPTIONS)
def _tiles_adjoint(dv, extra, sign, th, tw, out):  # pragma: no cover - compiled
    # dv (16, >= C*N*th*tw) (+ sign * extra) -> out (C*N, 2*th + 2, 2*tw + 2), zeroed
    # here: B dv B^T, added into the overlapping tiles
    out[...] = 0
    v = np.empty(16, dtype=out.dtype)
    t = 0
    for p in range(out.shape[0]):
        for a in range(th):
            r0, r1, r2, r3 = out[p, 2 * a], out[p, 2 * a + 1], out[p, 2 * a + 2], out[p, 2 * a + 3]
            for b in range(tw):
                s = 2 * b
                for k in range(16):
                    v[k] = _term(dv, extra, sign, k, t)
                a0, a1, a2, a3 = _b(v[0], v[4], v[8], v[12])  # column 0 of B dv
                b0, b1, b2, b3 = _b(v[1], v[5], v[9], v[13])
                c0, c1, c2, c3 = _b(v[2], v[6], v[10], v[14])
                d0, d1, d2, d3 = _b(v[3], v[7], v[11], v[15])
                sums = ((r0, a0, b0, c0, d0), (r1, a1, b1, c1, d1), (r2, a2, b2, c2, d2),
                        (r3, a3, b3, c3, d3))  # fmt: skip
                for row, u0, u1, u2, u3 in sums:
                    e0, e1, e2, e3 = _b(u0, u1, u2, u3)
                    row[s] += e0
                    row[s + 1] += e1
                    row[s + 2] += e2
                    row[s + 3] += e3
                t += 1


@njit(**JIT_OPTIONS)
def _outputs(m, extra, sign, th, tw, bias, out):  # pragma: no cover - compiled
    # m (16, >= O*N*th*tw) (+ sign * extra) -> out (O, N, ho, wo): A^T m A + bias[o]; the
    # last tile row or column is half outside the output when ho or wo is odd
    _, n_batch, ho, wo = out.shape
    u = np.empty(16, dtype=out.dtype)
    t = 0
    for p in range(out.shape[0] * n_batch):
        o, n = p // n_batch, p % n_batch
        bias_p = bias[o]
        for a in range(th):
            i = 2 * a
            top, bottom = out[o, n, i], out[o, n, min(i + 1, ho - 1)]
            for b in range(tw):
                for k in range(16):
                    u[k] = _term(m, extra, sign, k, t)
                a0, a1 = _at(u[0], u[4], u[8], u[12])  # column 0 of A^T m
                b0, b1 = _at(u[1], u[5], u[9], u[13])
                c0, c1 = _at(u[2], u[6], u[10], u[14])
                d0, d1 = _at(u[3], u[7], u[11], u[15])
                y00, y01 = _at(a0, b0, c0, d0)
                y10, y11 = _at(a1, b1, c1, d1)
                j = 2 * b
                if i + 1 < ho:
                    bottom[j] = y10 + bias_p
                    if j + 1 < wo:
                        bottom[j + 1] = y11 + bias_p
                top[j] = y00 + bias_p
                if j + 1 < wo:
                    top[j + 1] = y01 + bias_p
                t += 1


@njit(**JIT_OPTIONS)
def _outputs_adjoint(g, th, tw, out):  # pragma: no cover - compiled
    # g (O, N, ho, wo) -> out (16, >= O*N*th*tw): A g A^T, g zero past its edges.  Returns
    # the largest |element| written.
    _, n_batch, ho, wo = g.shape
    zero = out.dtype.type(0)
    largest = abs(zero)
    t = 0
    for p in range(g.shape[0] * n_batch):
        o, n = p // n_batch, p % n_batch
        for a in range(th):
            i = 2 * a
            top, bottom = g[o, n, i], g[o, n, min(i + 1, ho - 1)]
            for b in range(tw):
                j = 2 * b
                y00 = top[j]
                y01 = top[j + 1] if j + 1 < wo else zero
                y10 = bottom[j] if i + 1 < ho else zero
                y11 = bottom[j + 1] if i + 1 < ho and j + 1 < wo else zero
                a0, a1, a2, a3 = _a(y00, y10)  # column 0 of A g
                b0, b1, b2, b3 = _a(y01, y11)
                for i_, (u0, u1) in enumerate(((a0, b0), (a1, b1), (a2, b2), (a3, b3))):
                    e0, e1, e2, e3 = _a(u0, u1)
                    out[4 * i_, t], out[4 * i_ + 1, t], out[4 * i_ + 2, t] = e0, e1, e2
                    out[4 * i_ + 3, t] = e3
                    largest = max(largest, abs(e0), abs(e1), abs(e2), abs(e3))
                t += 1
    return largest


# --- the products, by the product rule of order-1 numbers ------------------------------------

# Transformed tiles of one part, a batch chunk at most: below glibc's largest mmap threshold
# (``algebra.memory``), so that a pass reuses freed memory, and a bound on what a large batch
# holds at once (4x its images, against im2col's chunks).
_CHUNK_BYTES = 16 << 20


def _matrices(planes: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The 16 planes' data as matrices of ``shape``: a ``(16, *shape)`` view."""
    return planes[:, : shape[0] * shape[1]].reshape(16, *shape)


def _gemm(a: np.ndarray, b: np.ndarray, into: np.ndarray | None = None) -> np.ndarray:
    """``a @ b`` of 16 matrices each as a gapped buffer of planes, or added into ``into``."""
    shape = (a.shape[1], b.shape[2])
    if into is None:
        into = np.empty((16, shape[0] * shape[1] + _ROW_GAP), dtype=a.dtype)
        np.matmul(a, b, out=_matrices(into, shape))
    else:
        _matrices(into, shape)[...] += np.matmul(a, b)
    return into


def _gemms(terms: list[Term], a: list[np.ndarray], b: list[np.ndarray]):
    """The first term's product, the second's or None, and the second's sign."""
    products = [_gemm(a[i], b[j]) for _, i, j in terms]
    return products[0], (products[1] if len(products) > 1 else None), terms[-1][0]


def _filters(weight: np.ndarray) -> tuple[list[np.ndarray], tuple[float, ...]]:
    """The transformed filters ``U`` of a bank ``(Q, O, C, 3, 3)``, ``(16, O, C)`` views per
    part, and their parts' largest |entries|."""
    _, o, c = weight.shape[:3]
    planes = np.empty((len(weight), 16, o * c + _ROW_GAP), dtype=weight.dtype)
    largest = tuple(float(_transform_filters(np.ascontiguousarray(part).reshape(o * c, 9), u))
                    for part, u in zip(weight, planes))  # fmt: skip
    return [_matrices(u, (o, c)) for u in planes], largest


def _tiles_of(images: np.ndarray, padding: tuple[int, int],
              counts: tuple[int, int]) -> tuple[list[np.ndarray], tuple[float, ...]]:  # fmt: skip
    """The transformed tiles ``V`` of images ``(P, C, N, H, W)``, ``(16, C, N*th*tw)`` views
    per part, and their parts' largest |entries|."""
    parts, c, n, h, w = images.shape
    (ph, pw), (th, tw) = padding, counts
    padded = np.zeros((parts, c * n, 2 * th + 2, 2 * tw + 2), dtype=images.dtype)
    padded.reshape(parts, c, n, 2 * th + 2, 2 * tw + 2)[..., ph : ph + h, pw : pw + w] = images
    planes = np.empty((parts, 16, c * n * th * tw + _ROW_GAP), dtype=images.dtype)
    largest = tuple(float(_tiles(x, th, tw, v)) for x, v in zip(padded, planes))
    return [_matrices(v, (c, n * th * tw)) for v in planes], largest


def _batch_chunks(n: int, channels: int, counts: tuple[int, int], itemsize: int):
    """Image ranges ``(n0, n1)`` whose 16 planes of tiles (of ``channels``) take about
    ``_CHUNK_BYTES`` a part."""
    per_image = 16 * channels * counts[0] * counts[1] * itemsize
    size = max(1, _CHUNK_BYTES // per_image)
    return [(n0, min(n, n0 + size)) for n0 in range(0, n, size)]


def forward(images: np.ndarray, weight: np.ndarray, bias: np.ndarray | None,
            padding: tuple[int, int]) -> np.ndarray:  # fmt: skip
    """The correlation of channel-major images ``(P, C, N, H, W)`` with a 3x3 filter bank
    ``(Q, O, C, 3, 3)``, plus ``bias`` ``(R, O)``: ``(S, O, N, Ho, Wo)``.  Each operand's
    leading axis holds its parts, all of one real dtype: one, a real number; two, the real
    part and i-part of an order-1 number; S = 2 where any operand has two."""
    parts, c, n, h, w = images.shape
    o, dtype = weight.shape[1], images.dtype
    ho, wo = h + 2 * padding[0] - 2, w + 2 * padding[1] - 2
    counts = ((ho + 1) // 2, (wo + 1) // 2)
    filters, filters_largest = _filters(weight)
    products = 2 if max(parts, len(weight)) == 2 else 1
    out = np.empty((max(products, 1 if bias is None else len(bias)), o, n, ho, wo), dtype=dtype)
    shifts = [bias[q] if bias is not None and q < len(bias) else np.zeros(o, dtype)
              for q in range(len(out))]  # fmt: skip
    for n0, n1 in _batch_chunks(n, max(c, o), counts, dtype.itemsize):
        tiles, tiles_largest = _tiles_of(images[:, :, n0:n1], padding, counts)
        rule = order_one_terms(filters_largest, tiles_largest, dtype)
        for part, terms in enumerate(rule):
            first, second, sign = _gemms(terms, filters, tiles)
            _outputs(first, second, dtype.type(sign), *counts, shifts[part],
                     out[part, :, n0:n1])  # fmt: skip
    if len(out) > products:  # a bias's i-part alone
        out[1] = shifts[1][:, None, None, None]
    return out


def backward(images: np.ndarray, weight: np.ndarray, padding: tuple[int, int],
             grad: np.ndarray, weight_out: Sequence[np.ndarray | None],
             images_wanted: bool) -> np.ndarray | None:  # fmt: skip
    """The adjoints of ``forward`` at ``images`` and ``weight`` (as there; the transforms are
    computed again, cheaper than keeping them: 4x the images and 16/9 the weight, per
    part) for the output gradient ``grad`` ``(G, O, N, Ho, Wo)``: the filter bank's
    gradient, part by part, into the ``(O, C, 3, 3)`` arrays of ``weight_out`` (None: a part
    not wanted; one part where images and gradient are real, two otherwise); and, if
    wanted, the images' ``(S, C, N, H, W)``."""
    _, c, n, h, w = images.shape
    o, dtype = weight.shape[1], grad.dtype
    ho, wo = grad.shape[3:]
    counts = ((ho + 1) // 2, (wo + 1) // 2)
    (th, tw), (ph, pw) = counts, padding
    filters, filters_largest = _filters(weight)
    filters_t = [u.transpose(0, 2, 1) for u in filters]
    grad_in = None
    if images_wanted:
        grad_parts = 2 if max(len(weight), len(grad)) == 2 else 1  # the images' do not count
        grad_in = np.empty((grad_parts, c, n, h, w), dtype=dtype)
    sums: dict[tuple[int, int, int, int], np.ndarray] = {}  # (part, sign, i, j): dU, summed
    for n0, n1 in _batch_chunks(n, max(c, o), counts, dtype.itemsize):
        tiles, tiles_largest = _tiles_of(images[:, :, n0:n1], padding, counts)
        count = (n1 - n0) * th * tw
        dm_planes = np.empty((len(grad), 16, o * count + _ROW_GAP), dtype=dtype)
        dm_largest = tuple(float(_outputs_adjoint(part[:, n0:n1], th, tw, planes))
                           for part, planes in zip(grad, dm_planes))  # fmt: skip
        dm = [_matrices(planes, (o, count)) for planes in dm_planes]
        tiles_t = [v.transpose(0, 2, 1) for v in tiles]
        for part, terms in enumerate(order_one_terms(dm_largest, tiles_largest, dtype)):
            if weight_out[part] is not None:
                for sign, i, j in terms:
                    key = (part, sign, i, j)
                    sums[key] = _gemm(dm[i], tiles_t[j], sums.get(key))
        if grad_in is not None:
            rule = order_one_terms(filters_largest, dm_largest, dtype)
            padded = np.empty(((n1 - n0) * c, 2 * th + 2, 2 * tw + 2), dtype=dtype)
            for part, terms in enumerate(rule):
                first, second, sign = _gemms(terms, filters_t, dm)
                _tiles_adjoint(first, second, dtype.type(sign), th, tw, padded)
                chunk = padded.reshape(c, n1 - n0, 2 * th + 2, 2 * tw + 2)
                grad_in[part, :, n0:n1] = chunk[..., ph : ph + h, pw : pw + w]
    for part, out in enumerate(weight_out):
        keys = [key for key in sums if key[0] == part]
        if out is not None and keys:
            second = sums[keys[1]] if len(keys) > 1 else None
            _filters_adjoint(sums[keys[0]], second, dtype.type(keys[-1][1]),
                             out.reshape(o * c, 9))  # fmt: skip
        elif out is not None:
            out[...] = 0
    return grad_in
