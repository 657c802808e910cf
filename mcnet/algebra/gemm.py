"""2-D products of multicomplex matrices on the CPU: one GEMM for every component pair.

The operands are raw component data, ``(K, p, q)`` and ``(K, q, r)`` arrays in one algebra
(the general layout of ``multicomplex`` or the one-direction layout of ``symmetric``) and
of one base dtype; ``mcnet.functions.matmul`` brings tensors there.

A product of multicomplex matrices is a sum of products of their components, a_i @ b_j,
each added with a sign or integer weight into one component of the result (the product
rule).  Two ways to get them all from ONE GEMM, which reads each operand once instead of
once per product (a network's products are memory-bound: the large operand, an im2col
matrix, comes from memory, the small one, a weight, from cache):

- a small left operand with several components (a weight in a derivative pass) times a
  right one with several: result component c is sum_i B_ci @ b_i with B_ci the weighted
  sum of a's components that multiply b_i into c; with b's components stacked over rows
  (its own layout, (K q, r)) that is ONE GEMM (K_out p, K q) @ (K q, r) which writes the
  result's components directly: no combining pass.  The block matrix B of the small
  operand costs nothing, but its zero blocks cost flops: when a has zero components (a
  one-direction weight's s_2 = ... = s_k = 0) and the pair products below are fewer than
  B's blocks, those are taken instead.
- otherwise a's components stacked over rows and b's side by side, (Ka p, q) @ (q, Kb r),
  give every a_i @ b_j as a block, and the result's components are their signed or
  weighted sums (a view, when each is one block).

Two complex operands of order 1 whose imaginary parts are a small perturbation (the derivative
passes: ``x + i h v``) take 3 real GEMMs instead of the 4 of a complex one: the product of the
imaginary parts, which adds only to the real part, is left out when it is below the roundoff of
the real part's GEMM by ``NEGLIGIBLE`` (``negligible_imaginary_square``, decided per product
from the operands' largest parts; otherwise the whole product is taken).  Likewise a
one-direction product's terms that only correct a class (units that square to -1, of relative
size h^(i+j-c): a_1 @ b_2 at order 2) are left out where they are that far below the class's
leading terms (``negligible_corrections``).

Stacking is a view when the memory allows (data (K, p, q) is (K p, q); its transpose is
(q, K r) in column-major order); otherwise the smaller operand is copied.  A complex operand
times a real one is a real GEMM: the complex one's real and imaginary parts become rows
(left), or its interleaved real view becomes columns (right: a (q, r) complex array is a
(q, 2r) real one).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import numpy as np

from mcnet.algebra import loops, symmetric
from mcnet.algebra.multicomplex import array_module

# Terms: for each component pair (i, j) that contributes, its (result component, weight) pairs.
Terms = dict[tuple[int, int], list[tuple[int, int]]]

# A term left out of a product is at most this fraction of eps times the worst-case roundoff
# bound of the terms kept (see ``negligible_imaginary_square``).
NEGLIGIBLE = 2.0**-8

# Right operands with at most this many elements, side by side, are copied when no view exists.
_SMALL_COPY = 1 << 16


def real_aware(base: Callable, batches_leading_axis: bool) -> Callable:
    """``base``, a product of arrays, with a complex operand times a real one done as real
    products (half the work of a complex GEMM); ``batches_leading_axis``: ``base`` broadcasts
    over a leading axis, so the real and imaginary parts go through it as one stacked array."""

    def product(x, y):
        xc, yc = np.iscomplexobj(x), np.iscomplexobj(y)
        if xc == yc:
            return base(x, y)
        xp = array_module(x)
        z = x if xc else y
        other = y if xc else x
        if batches_leading_axis and z.ndim >= 2:
            stacked = xp.stack([z.real, z.imag])
            if other.ndim > z.ndim:  # keep the stacking axis in front of other's batch axes
                stacked = stacked.reshape((2,) + (1,) * (other.ndim - z.ndim) + z.shape)
            r = base(stacked, y) if xc else base(x, stacked)
            re, im = r[0], r[1]
        else:
            re = base(z.real, y) if xc else base(x, z.real)
            im = base(z.imag, y) if xc else base(x, z.imag)
        out = xp.empty(np.shape(re), dtype=z.dtype)
        out.real, out.imag = re, im
        return out

    return product


class Product:
    """``b -> a @ b`` for right operands ``b`` with ``like``'s component count and dtype: the
    product rule's terms and a's block matrix are prepared once, for every such ``b``.

    ``algebra`` is ``multicomplex`` or ``symmetric``; with ``skip_zeros_of_like``, ``like``'s
    zero components (then those of every ``b``) are left out of the products.
    """

    def __init__(self, algebra: ModuleType, a, like, skip_zeros_of_like: bool = True) -> None:
        self.a = a
        self.terms = _product_terms(algebra, a, like if skip_zeros_of_like else None, len(like))
        self.k_right = len(like)
        self.k_out = max(len(a), len(like))
        self.rows = sorted({i for i, _ in self.terms})
        self.cols = sorted({j for _, j in self.terms})
        self.both_complex = len(a) == len(like) == 1 and a.dtype.kind == like.dtype.kind == "c"
        self._stacked_rows: dict[bool, Any] = {}
        self.corrections = _corrections(self.terms) if a.dtype.kind == "f" else {}

    def __call__(self, b, largest: list[float] | None = None):
        """The component data ``(K, p, r)`` of ``a @ b``.  ``largest``, when given, bounds
        max |b_j| of each of b's components: the whole operand that b is a chunk of (a
        convolution's images at stride 1, whose every pixel is in some window, or an output
        gradient), so that corrections can be left out of its block matrix product."""
        da, ka, kb, p, r = self.a, len(self.a), self.k_right, self.a.shape[1], b.shape[2]
        if not self.terms:  # every component of one operand is zero (a zero direction)
            return np.zeros((self.k_out, p, r), dtype=np.result_type(da, b))
        if self.both_complex and b.dtype == da.dtype:
            product = _without_imaginary_square(self.a_parts, b[0])
            if product is not None:
                return product[None]
        if self._block_matrix_pays(b):
            right = _stack_rows(b, list(range(kb)), copy=False)
            if right is not None:  # b's components over rows: one GEMM with a's block matrix
                if largest is not None and self._corrections_negligible(largest, b.dtype):
                    return self._leading_product(right, r)
                product = _real_view_matmul(self.block_matrix, right, False)
                return product.reshape(self.k_out, p, r)
        split = da.dtype.kind == "c" and b.dtype.kind != "c"
        left = self._stacked_rows.get(split)
        if left is None:  # once for every right operand (a convolution's batch chunks)
            left = self._stacked_rows[split] = _stack_rows_of(da, self.rows, split)
        right = _stack_cols(b, self.cols)  # (q, len(cols) r), or None: a GEMM per column
        terms = self.terms if right is not None else self._terms_without_corrections(b)
        blocks, result = _pair_products(left, split, da.dtype, p, b, right, self.rows,
                                        self.cols, terms)  # fmt: skip
        if result is not None and (ka == 1 or kb == 1):  # each component is one block
            if ka == 1 and self.cols == list(range(kb)):  # (p, Kb r) -> (Kb, p, r), a view
                return result.reshape(p, kb, r).transpose(1, 0, 2)
            if kb == 1 and self.rows == list(range(ka)):  # (Ka p, r) -> (Ka, p, r), a view
                return result.reshape(ka, p, r)
        return _combine(terms, blocks, self.k_out)

    def _block_matrix_pays(self, b) -> bool:
        """Whether one GEMM with a's block matrix beats the pair products: both operands have
        several components of one dtype, a is the small one (it is read from cache), and the
        block matrix has no more blocks than there are pair products."""
        ka, kb = len(self.a), self.k_right
        return (
            ka > 1
            and kb > 1
            and self.a[0].size * 8 <= b[0].size
            and self.a.dtype == b.dtype
            and self.k_out * kb <= len(self.rows) * len(self.cols)
        )

    def _corrections_negligible(self, largest: list[float], dtype) -> bool:
        """Whether ``leading_blocks`` give the product: each correction is negligible beside
        b's bounds."""
        if not self.only_corrections_off_leading:
            return False
        dropped = negligible_corrections(self.corrections, self.a_largest, largest, dtype)
        return len(dropped) == len(self.corrections)

    @functools.cached_property
    def only_corrections_off_leading(self) -> bool:
        """Whether the terms off the leading ones (i + j != c) are exactly the corrections
        (``_corrections``): so at order 1 (a_1 @ b_1), not at order 2, where a_1 @ b_1 also
        adds to its leading class 2."""
        off_leading = {(i, j) for (i, j), targets in self.terms.items()
                       if any(i + j != c for c, _ in targets)}  # fmt: skip
        return bool(self.corrections) and off_leading == set(self.corrections)

    def _leading_product(self, right, r: int):
        """a @ b without its corrections from ``leading_blocks``: class c reads b's components
        0 .. c only (its leading terms have i + j = c), one GEMM a class on b's stacked rows
        ``right``.  At order 1 that is 3 of the block matrix's 4 blocks."""
        p, q = self.a.shape[1], self.a.shape[2]
        out = np.empty((self.k_out, p, r), dtype=self.a.dtype)
        for c in range(self.k_out):
            np.matmul(self.leading_blocks[c * p : (c + 1) * p, : (c + 1) * q],
                      right[: (c + 1) * q], out=out[c])  # fmt: skip
        return out

    @functools.cached_property
    def leading_blocks(self):
        """``block_matrix`` of the leading terms alone (i + j = c): block (c, j) is a_(c-j)
        times its weight for j <= c, zero above the diagonal."""
        return self._blocks(leading_only=True)

    def _terms_without_corrections(self, b) -> Terms:
        """The terms, less the corrections that are negligible for this b (only a GEMM per
        column of b can leave them out: one GEMM for all columns computes them anyway)."""
        if not self.corrections or b.dtype != self.a.dtype:
            return self.terms
        largest = largest_entries(b)
        dropped = negligible_corrections(self.corrections, self.a_largest, largest, b.dtype)
        return {ij: targets for ij, targets in self.terms.items() if ij not in dropped}

    @functools.cached_property
    def a_largest(self) -> list[float]:
        """max |a_i| of each of a's components."""
        return largest_entries(self.a)

    @functools.cached_property
    def a_parts(self):
        """``loops.split_parts`` of a complex a of order 1."""
        return loops.split_parts(self.a[0])

    @functools.cached_property
    def block_matrix(self):
        """(k_out p, kb q): block (c, j) is the sum of weight * a_i over the terms (i, j) -> c."""
        return self._blocks(leading_only=False)

    def _blocks(self, leading_only: bool):
        """``block_matrix``, of every term or of the leading ones (i + j = c) alone."""
        da = self.a
        _, p, q = da.shape
        out = np.zeros((self.k_out, p, self.k_right, q), dtype=da.dtype)
        for (i, j), targets in self.terms.items():
            for c, weight in targets:
                if not leading_only or i + j == c:
                    out[c, :, j] += da[i] if weight == 1 else da[i] * weight
        return out.reshape(self.k_out * p, self.k_right * q)


def negligible_imaginary_square(a_real: float, a_imag: float, b_real: float, b_imag: float,
                                dtype) -> bool:  # fmt: skip
    """Whether, for complex matrices a and b with these largest |parts|, the product of
    their imaginary parts can be left out of a @ b: its entries are at most q |a_i| |b_i|
    and the roundoff of the real GEMM a_r @ b_r is bounded by about q eps |a_r| |b_r|, so
    |a_i| |b_i| <= NEGLIGIBLE eps |a_r| |b_r| keeps it below NEGLIGIBLE of that bound.
    (In a derivative pass the imaginary parts are h times the real parts' scale, h = 2**-24
    in float32: the margin is large.)  False for parts that are not finite."""
    eps = float(np.finfo(dtype).eps)
    return a_imag * b_imag <= NEGLIGIBLE * eps * (a_real * b_real)


# (sign, i, j): sign * a[i] @ b[j], for parts i of a and j of b (``order_one_terms``)
Term = tuple[int, int, int]


def order_one_terms(a_largest: Sequence[float], b_largest: Sequence[float],
                    dtype) -> list[list[Term]]:  # fmt: skip
    """The product rule of ``a @ b`` for operands of one part (real) or two (real part and
    i-part of order-1 numbers), given by their parts' largest |entries|: the real part's
    terms, then the i-part's, if any.  The product of the i-parts, which adds only to the
    real part, is left out where it is below the real product's roundoff
    (``negligible_imaginary_square``), as every CPU product does."""
    real: list[Term] = [(1, 0, 0)]
    both = len(a_largest) == 2 and len(b_largest) == 2
    if both and not negligible_imaginary_square(a_largest[0], a_largest[1], b_largest[0],
                                                b_largest[1], dtype):  # fmt: skip
        real.append((-1, 1, 1))
    if len(a_largest) == 1 and len(b_largest) == 1:
        return [real]
    imag: list[Term] = [(1, 0, 1)] if len(b_largest) == 2 else []
    if len(a_largest) == 2:
        imag.append((1, 1, 0))
    return [real, imag]


def _corrections(terms: Terms) -> dict[tuple[int, int], list[tuple[int, int, list]]]:
    """The one-direction products (i, j) that only correct their classes: every class c they
    add to has i + j > c (a product of units that square to -1, of relative size h^(i+j-c)
    in a derivative pass), each with (c, weight, the leading terms of c: those with
    i' + j' = c, as (i', j', weight))."""
    leading: dict[int, list[tuple[int, int, int]]] = {}
    for (i, j), targets in terms.items():
        for c, weight in targets:
            if i + j == c:
                leading.setdefault(c, []).append((i, j, weight))
    return {(i, j): [(c, weight, leading.get(c, [])) for c, weight in targets]
            for (i, j), targets in terms.items()
            if all(i + j > c for c, _ in targets)}  # fmt: skip


def negligible_corrections(corrections, a_largest: list[float], b_largest: list[float],
                           dtype) -> set[tuple[int, int]]:  # fmt: skip
    """The corrections (``_corrections``) that can be left out of a one-direction product
    whose operands' components have these largest |entries|: for every class they add to,
    |weight| |a_i| |b_j| <= NEGLIGIBLE eps max |w'| |a_i'| |b_j'| over the class's leading
    terms, the worst-case roundoff bound of their GEMMs (as ``negligible_imaginary_square``).
    NaN or inf maxima leave everything in."""
    eps = float(np.finfo(dtype).eps)
    dropped = set()
    for (i, j), targets in corrections.items():
        size = a_largest[i] * b_largest[j]
        if all(abs(weight) * size <= NEGLIGIBLE * eps * max(
                (abs(w) * a_largest[i2] * b_largest[j2] for i2, j2, w in lead), default=0.0)
               for _, weight, lead in targets):  # fmt: skip
            dropped.add((i, j))
    return dropped


def largest_entries(d) -> list[float]:
    """max |entry| of each component of real (K, ...) data (NaN for one that is not finite,
    so that no term is judged negligible beside it)."""
    out = []
    for x in d:
        high, low = float(x.max()), float(x.min())
        out.append(max(high, -low) if np.isfinite(high) and np.isfinite(low) else np.nan)
    return out


def _without_imaginary_square(a_parts, b):
    """a @ b for complex 2-D a (given by ``loops.split_parts``) and b in 3 real GEMMs,
    without a_i @ b_i, or None when that term is not negligible."""
    ar, ai, ar_max, ai_max = a_parts
    br, bi, br_max, bi_max = loops.split_parts(b, want_imag=not b.flags.c_contiguous)
    if not negligible_imaginary_square(ar_max, ai_max, br_max, bi_max, ar.dtype):
        return None
    if bi is None:  # a_r @ b on b's interleaved real view: a_r b_r + i a_r b_i, one GEMM
        out = _real_view_matmul(ar, b, True)
        out.imag += ai @ br
        return out
    imag = ar @ bi
    imag += ai @ br
    return complex_from(ar @ br, imag, b.dtype)


def imaginary_part(a, b, out=None):
    """Im(a @ b) for 2-D real or complex arrays, as a real array (written into ``out`` when
    given): a_r b_i + a_i b_r, one real GEMM per complex operand, from contiguous parts
    (``loops.split_parts``)."""
    ar, ai = loops.split_parts(a)[:2] if np.iscomplexobj(a) else (a, None)
    br, bi = loops.split_parts(b)[:2] if np.iscomplexobj(b) else (b, None)
    if out is None:
        real = np.result_type(ar, br)
        out = np.empty((a.shape[0], b.shape[1]), dtype=real)
    if ai is None and bi is None:
        out[...] = 0
        return out
    if ai is None:
        return np.matmul(ar, bi, out=out)
    if bi is None:
        return np.matmul(ai, br, out=out)
    np.matmul(ar, bi, out=out)
    out += ai @ br
    return out


def _product_terms(algebra: ModuleType, da, db, kb: int) -> Terms:
    """The product rule's terms for ``da`` times kb components; ``db``, when given, is checked
    for zero components, which contribute no terms."""
    ka = len(da)
    if algebra is symmetric:
        zero_a = symmetric.zero_components(list(da)) if ka > 1 else set()
        zero_b = set() if db is None or kb == 1 else symmetric.zero_components(list(db))
    else:
        zero_a = zero_b = set()
    if ka == 1 or kb == 1:  # a one-component operand: each component of the other but zeros
        return {(i, j): [(max(i, j), 1)] for i in range(ka) for j in range(kb)
                if i not in zero_a and j not in zero_b}  # fmt: skip
    if algebra is symmetric:
        table = symmetric.weights(ka - 1)
        return {ij: targets for ij, targets in table.items()
                if ij[0] not in zero_a and ij[1] not in zero_b}  # fmt: skip
    # general layout: e_i e_j = (-1)^popcount(i & j) e_(i ^ j), over complex components
    return {(i, j): [(i ^ j, -1 if (i & j).bit_count() % 2 else 1)]
            for i in range(ka) for j in range(kb)}  # fmt: skip


def _stack_rows_of(da, rows: list[int], split: bool):
    """a's components ``rows`` stacked as (len(rows) p, q); with ``split`` (a complex, b
    real) their real and imaginary parts stacked as rows of one real matrix."""
    left = _stack_rows(da, rows)
    return np.concatenate([left.real, left.imag]) if split else left


def _pair_products(left, split: bool, a_dtype, p: int, db, right, rows: list[int],
                   cols: list[int], terms: Terms):  # fmt: skip
    """{(i, j): a_i @ db[j]} for the pairs of ``terms`` (i in rows, j in cols), from a's
    stacked rows ``left`` (``_stack_rows_of``): one GEMM with b's components side by side
    (``right``, from ``_stack_cols``), or one per column component when they cannot be
    (``right`` None), with only the leading rows that column needs; and that one GEMM's
    result when it is already the answer's layout (real or complex operands of one kind)."""
    r = db.shape[2]
    a_complex, b_complex = a_dtype.kind == "c", db.dtype.kind == "c"
    if right is None:
        products = {}
        for j in cols:
            needed = 1 + max((x for x, i in enumerate(rows) if (i, j) in terms), default=-1)
            if needed == 0:  # every product with this column was left out
                continue
            part = left if split or needed == len(rows) else left[: needed * p]
            products[j] = _real_view_matmul(part, db[j], b_complex and not a_complex)
        product = None
        block = lambda x, y: products[cols[y]][x * p : (x + 1) * p]  # noqa: E731
    else:
        product = _real_view_matmul(left, right, b_complex and not a_complex)

        def block(x, y):
            return product[x * p : (x + 1) * p, y * r : (y + 1) * r]

    out = {}
    for x, i in enumerate(rows):
        for y, j in enumerate(cols):
            if (i, j) not in terms:
                continue
            if split:
                out[i, j] = complex_from(block(x, y), block(x + len(rows), y), a_dtype)
            else:
                out[i, j] = block(x, y)
    return out, (None if split else product)


def _real_view_matmul(left, right, right_complex_only: bool):
    """left @ right; a complex ``right`` times a real ``left`` as one real GEMM on right's
    interleaved real view (when its rows are contiguous).  Every GEMM of a multicomplex
    product goes through here (``benchmarks/bench_nn.py --gemms`` times them by shape)."""
    if right_complex_only:
        if right.strides[-1] == right.itemsize and right.flags.c_contiguous:
            real = right.view(left.dtype)  # (q, 2r): [re, im] of each element side by side
            return np.matmul(left, real).view(right.dtype)
        real, imag = loops.split_parts(right)[:2]  # contiguous parts: BLAS reads them directly
        return complex_from(left @ real, left @ imag, right.dtype)
    return np.matmul(left, right)


def complex_from(re, im, dtype):
    """Real and imaginary parts of one shape as a complex array of ``dtype``, in re's memory
    order."""
    out = np.empty_like(re, dtype=dtype)
    out.real = re
    out.imag = im
    return out


def _stack_rows(d, rows: list[int], copy: bool = True):
    """The components ``rows`` of (K, p, q) data stacked as (len(rows) p, q): a view when
    the memory allows, else a copy (or None with ``copy=False``)."""
    _, p, q = d.shape
    picked = d[rows[0] : rows[-1] + 1] if rows == list(range(rows[0], rows[-1] + 1)) else d[rows]
    if len(rows) == 1:
        return picked[0]
    view = _view_as(picked, (len(rows) * p, q))
    if view is not None or not copy:
        return view
    return np.ascontiguousarray(picked).reshape(len(rows) * p, q)


def _stack_cols(d, cols: list[int]):
    """The components ``cols`` of (K, q, r) data side by side as (q, len(cols) r): a view when
    the memory allows (the transpose of row-stacked memory), a copy when it is small, else
    None."""
    _, q, r = d.shape
    if len(cols) == 1:
        return d[cols[0]]
    if cols == list(range(cols[0], cols[-1] + 1)):
        view = _view_as(d[cols[0] : cols[-1] + 1].transpose(1, 0, 2), (q, len(cols) * r))
        if view is not None:
            return view
    if len(cols) * q * r <= _SMALL_COPY:
        return np.ascontiguousarray(d[cols].transpose(1, 0, 2)).reshape(q, len(cols) * r)
    return None


def _view_as(a, shape):
    """``a`` reshaped without a copy, or None when its memory does not allow it."""
    try:
        return np.reshape(a, shape, copy=False)
    except ValueError:
        return None


def _combine(terms: Terms, blocks: dict, k: int):
    """The result's k components from the pair products: signed or weighted sums."""
    targets: dict[int, list[tuple[Any, int]]] = {}
    for ij, out in terms.items():
        for c, weight in out:
            targets.setdefault(c, []).append((blocks[ij], weight))
    first = next(iter(blocks.values()))
    comps = []
    for c in range(k):
        parts = targets.get(c)
        if not parts:
            comps.append(np.zeros(first.shape, dtype=first.dtype))
            continue
        total: Any = None
        for block, weight in parts:
            term = block if weight == 1 else (-block if weight == -1 else block * weight)
            total = term if total is None else total + term
        comps.append(total)
    return comps[0][None] if k == 1 else np.stack(comps)
