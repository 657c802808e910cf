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
from dataclasses import dataclass

import numpy as np
from numba import njit

from mcnet.algebra.gemm import negligible_imaginary_square
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
def _filters(w, out):  # pragma: no cover - compiled
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
def _outputs(m, extra, sign, th, tw, n_batch, bias, out):  # pragma: no cover - compiled
    # m (16, >= O*N*th*tw) (+ sign * extra) -> out (O*N, ho, wo): A^T m A + bias[o]; the
    # last tile row or column is half outside the output when ho or wo is odd
    _, ho, wo = out.shape
    u = np.empty(16, dtype=out.dtype)
    t = 0
    for p in range(out.shape[0]):
        bias_p = bias[p // n_batch]
        for a in range(th):
            i = 2 * a
            top, bottom = out[p, i], out[p, min(i + 1, ho - 1)]
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
    # g (O*N, ho, wo) -> out (16, >= O*N*th*tw): A g A^T, g zero past its edges.  Returns
    # the largest |element| written.
    _, ho, wo = g.shape
    zero = out.dtype.type(0)
    largest = abs(zero)
    t = 0
    for p in range(g.shape[0]):
        for a in range(th):
            i = 2 * a
            top, bottom = g[p, i], g[p, min(i + 1, ho - 1)]
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


Term = tuple[int, np.ndarray, np.ndarray]  # (sign, a, b): sign * a @ b, 16 planes each


def _matrices(planes: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The 16 planes' data as matrices of ``shape``: a ``(16, *shape)`` view."""
    return planes[:, : shape[0] * shape[1]].reshape(16, *shape)


def _product_rule(a: list[np.ndarray], b: list[np.ndarray], a_largest, b_largest,
                  dtype) -> list[list[Term]]:  # fmt: skip
    """The parts of ``a @ b`` for operands of one part (real) or two (real part, i-part of
    order-1 numbers): the real part's terms, then the i-part's, if any.  The product of the
    i-parts, which adds only to the real part, is left out where it is below the real
    product's roundoff (``gemm.negligible_imaginary_square``), as every CPU product does."""
    real: list[Term] = [(1, a[0], b[0])]
    both = len(a) == 2 and len(b) == 2
    if both and not negligible_imaginary_square(a_largest[0], a_largest[1], b_largest[0],
                                                b_largest[1], dtype):  # fmt: skip
        real.append((-1, a[1], b[1]))
    if len(a) == 1 and len(b) == 1:
        return [real]
    imag: list[Term] = [(1, a[0], b[1])] if len(b) == 2 else []
    if len(a) == 2:
        imag.append((1, a[1], b[0]))
    return [real, imag]


def _gemms(terms: list[Term]) -> tuple[np.ndarray, np.ndarray | None, int]:
    """The 16 planes of each term's product (a gapped buffer each): the first, the second
    or None, and the second's sign."""
    products = []
    for _, a, b in terms:
        planes = np.empty((16, a.shape[1] * b.shape[2] + _ROW_GAP), dtype=a.dtype)
        np.matmul(a, b, out=_matrices(planes, (a.shape[1], b.shape[2])))
        products.append(planes)
    second = products[1] if len(products) > 1 else None
    return products[0], second, terms[-1][0]


@dataclass(frozen=True)
class _Transformed:
    """The transformed tiles ``V`` and filters ``U`` of a correlation, as 16 planes per part,
    with their parts' largest |entries|."""

    tiles: list[np.ndarray]  # (16, C, N*th*tw) views, one per part
    filters: list[np.ndarray]  # (16, O, C)
    tiles_largest: tuple[float, ...]
    filters_largest: tuple[float, ...]
    tile_counts: tuple[int, int]  # (th, tw)


def _transform(images: np.ndarray, weight: np.ndarray, padding: tuple[int, int]) -> _Transformed:
    parts, c, n, h, w = images.shape
    o = weight.shape[1]
    ph, pw = padding
    th, tw = (h + 2 * ph - 1) // 2, (w + 2 * pw - 1) // 2  # ceil(output size / 2)
    padded = np.zeros((parts, c * n, 2 * th + 2, 2 * tw + 2), dtype=images.dtype)
    padded.reshape(parts, c, n, 2 * th + 2, 2 * tw + 2)[..., ph : ph + h, pw : pw + w] = images
    tiles = np.empty((parts, 16, c * n * th * tw + _ROW_GAP), dtype=images.dtype)
    tiles_largest = tuple(float(_tiles(padded[q], th, tw, tiles[q])) for q in range(parts))
    filters = np.empty((len(weight), 16, o * c + _ROW_GAP), dtype=images.dtype)
    filters_largest = tuple(float(_filters(np.ascontiguousarray(part).reshape(o * c, 9),
                                           planes))  # fmt: skip
                            for part, planes in zip(weight, filters))  # fmt: skip
    return _Transformed([_matrices(v, (c, n * th * tw)) for v in tiles],
                        [_matrices(u, (o, c)) for u in filters],
                        tiles_largest, filters_largest, (th, tw))  # fmt: skip


def forward(images: np.ndarray, weight: np.ndarray, bias: np.ndarray | None,
            padding: tuple[int, int]) -> np.ndarray:  # fmt: skip
    """The correlation of channel-major images ``(P, C, N, H, W)`` with a 3x3 filter bank
    ``(Q, O, C, 3, 3)``, plus ``bias`` ``(R, O)``: ``(S, O, N, Ho, Wo)``.  Each operand's
    leading axis holds its parts, all of one real dtype: one, a real number; two, the real
    part and i-part of an order-1 number; S = 2 where any operand has two."""
    _, c, n, h, w = images.shape
    o, dtype = weight.shape[1], images.dtype
    ho, wo = h + 2 * padding[0] - 2, w + 2 * padding[1] - 2
    t = _transform(images, weight, padding)
    rule = _product_rule(t.filters, t.tiles, t.filters_largest, t.tiles_largest, dtype)
    out = np.empty((max(len(rule), 1 if bias is None else len(bias)), o, n, ho, wo), dtype=dtype)
    for part, planes in enumerate(out):
        shift = bias[part] if bias is not None and part < len(bias) else np.zeros(o, dtype)
        if part < len(rule):
            first, second, sign = _gemms(rule[part])
            _outputs(first, second, dtype.type(sign), *t.tile_counts, n, shift,
                     planes.reshape(o * n, ho, wo))  # fmt: skip
        else:  # a bias's i-part alone
            planes[...] = shift[:, None, None, None]
    return out


def backward(images: np.ndarray, weight: np.ndarray, padding: tuple[int, int],
             grad: np.ndarray, weight_out: Sequence[np.ndarray | None],
             images_wanted: bool) -> np.ndarray | None:  # fmt: skip
    """The adjoints of ``forward`` at ``images`` and ``weight`` (as there; the transforms are
    computed again, cheaper than keeping them: 4x the images and 16/9 the weight, per
    part) for the output gradient ``grad`` ``(G, O, N, Ho, Wo)``, C-contiguous: the filter
    bank's gradient, part by part, into the ``(O, C, 3, 3)`` arrays of ``weight_out`` (None:
    a part not wanted; one part where images and gradient are real, two otherwise); and, if
    wanted, the images' ``(S, C, N, H, W)``."""
    _, c, n, h, w = images.shape
    o, dtype = weight.shape[1], grad.dtype
    ho, wo = grad.shape[3:]
    t = _transform(images, weight, padding)
    (th, tw), count = t.tile_counts, n * t.tile_counts[0] * t.tile_counts[1]
    dm = np.empty((len(grad), 16, o * count + _ROW_GAP), dtype=dtype)
    dm_largest = tuple(float(_outputs_adjoint(part.reshape(o * n, ho, wo), th, tw, planes))
                       for part, planes in zip(grad, dm))  # fmt: skip
    dm_matrices = [_matrices(planes, (o, count)) for planes in dm]
    rule = _product_rule(dm_matrices, [v.transpose(0, 2, 1) for v in t.tiles], dm_largest,
                         t.tiles_largest, dtype)  # fmt: skip
    for terms, out in zip(rule, weight_out):
        if out is not None:
            first, second, sign = _gemms(terms)
            _filters_adjoint(first, second, dtype.type(sign), out.reshape(o * c, 9))
    if not images_wanted:
        return None
    rule = _product_rule([u.transpose(0, 2, 1) for u in t.filters], dm_matrices,
                         t.filters_largest, dm_largest, dtype)  # fmt: skip
    padded = np.empty((len(rule), c * n, 2 * th + 2, 2 * tw + 2), dtype=dtype)
    for terms, planes in zip(rule, padded):
        first, second, sign = _gemms(terms)
        _tiles_adjoint(first, second, dtype.type(sign), th, tw, planes)
    ph, pw = padding
    padded_ = padded.reshape(len(rule), c, n, 2 * th + 2, 2 * tw + 2)
    return np.ascontiguousarray(padded_[..., ph : ph + h, pw : pw + w])
