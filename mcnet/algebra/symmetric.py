"""Multicomplex numbers perturbed along one direction: k + 1 coefficients instead of 2**k.

``x + h v (i_1 + ... + i_k)`` is unchanged when the units are permuted, and so is everything
computed from it (permuting units is an automorphism of the algebra).  Its coefficient on a
product of units then depends only on how many units there are: the number is held as the
list ``[s_0, ..., s_k]`` of real arrays, ``s_c`` the coefficient of every product of c
distinct units.  This is what ``directional(f, x, [v] * k)`` and ``vᵀHv`` evaluate.

The product is the multicomplex one, e_A e_B = (-1)^|A & B| e_(A ^ B), summed over the
classes: for |C| = c, choose p units of A inside C and q outside,

    (s t)_c = sum_{p <= c, q <= k - c} C(c, p) C(k - c, q) (-1)^q s_{p+q} t_{c-p+q},

so a product costs (k + 1)**2 base products (real GEMMs for matmul) instead of 4**(k-1)
complex ones.  Every other function expands to the general multicomplex layout, applies the
exact recursion of ``multicomplex`` and reads one representative coefficient per class back;
as scalar kernels (``kernels``) the expansion is only renaming, so a fused kernel still reads
and writes k + 1 numbers per element.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from math import comb

from mcnet.algebra import multicomplex as alg

Comps = list  # [s_0, ..., s_k], real arrays

add, sub, neg, scale, where = alg.add, alg.sub, alg.neg, alg.scale, alg.where


def order(s: Comps) -> int:
    return len(s) - 1


def _weights(k: int) -> dict[tuple[int, int], list[tuple[int, int]]]:
    """For each base product s_i t_j, the classes c it adds to and with which integer weight."""
    table: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for c in range(k + 1):
        for p in range(c + 1):
            for q in range(k - c + 1):
                weight = comb(c, p) * comb(k - c, q) * (-1) ** q
                table.setdefault((p + q, c - p + q), []).append((c, weight))
    return table


_WEIGHTS: dict[int, dict] = {}


def mul(a: Comps, b: Comps, base: Callable = operator.mul) -> Comps:
    """The product by class sums: one ``base`` product per pair of coefficients."""
    if len(a) == 1:
        return [base(a[0], y) for y in b]
    if len(b) == 1:
        return [base(x, b[0]) for x in a]
    if len(a) != len(b):
        raise ValueError(
            f"one-direction numbers of orders {len(a) - 1} and {len(b) - 1} do not combine"
        )
    k = len(a) - 1
    table = _WEIGHTS.setdefault(k, _weights(k))
    zero_a, zero_b = _zeros(a), _zeros(b)
    out: list = [None] * (k + 1)
    for (i, j), targets in table.items():
        if i in zero_a or j in zero_b:
            continue
        product = base(a[i], b[j])
        for c, weight in targets:
            term = product if weight == 1 else product * weight
            out[c] = term if out[c] is None else out[c] + term
    for c in range(k + 1):
        if out[c] is None:  # every product feeding it was zero
            out[c] = alg.array_module(a[0]).zeros_like(base(a[0], b[0]))
    return out


# Parameters perturbed along one direction carry s_2 = ... = s_k = 0 exactly: products with
# them are skipped.  Only small arrays are checked, so activations cost no extra pass.
_ZERO_CHECK_SIZE = 1 << 16


def _zeros(s: Comps) -> set[int]:
    return {
        c
        for c, x in enumerate(s)
        if getattr(x, "size", _ZERO_CHECK_SIZE + 1) <= _ZERO_CHECK_SIZE
        and not bool(alg.array_module(x).any(x))
    }


def expand(s: Comps) -> alg.Comps:
    """The general complex-packed layout: component j is s_|j| + i_1 s_(|j|+1)."""
    k = len(s) - 1
    return [s[j.bit_count()] + 1j * s[j.bit_count() + 1] for j in range(2 ** (k - 1))]


def compress(c: alg.Comps, k: int) -> Comps:
    """Back from the general layout: s_c is the coefficient of i_1 ... i_c."""
    return [c[0].real] + [c[(2**m - 1) >> 1].imag for m in range(1, k + 1)]


def _through_multicomplex(fn: Callable) -> Callable[[Comps], Comps]:
    def lifted(s: Comps, *args) -> Comps:
        if len(s) == 1:
            return fn(s, *args)
        return compress(fn(expand(s), *args), len(s) - 1)

    lifted.__name__ = fn.__name__
    lifted.__doc__ = f"{fn.__name__} through the general multicomplex recursion."
    return lifted


inv = _through_multicomplex(alg.inv)
exp = _through_multicomplex(alg.exp)
log = _through_multicomplex(alg.log)
log1p = _through_multicomplex(alg.log1p)
sqrt = _through_multicomplex(alg.sqrt)
sin = _through_multicomplex(alg.sin)
cos = _through_multicomplex(alg.cos)
tan = _through_multicomplex(alg.tan)
sinh = _through_multicomplex(alg.sinh)
cosh = _through_multicomplex(alg.cosh)
tanh = _through_multicomplex(alg.tanh)
arctan = _through_multicomplex(alg.arctan)
sigmoid = _through_multicomplex(alg.sigmoid)
softplus = _through_multicomplex(alg.softplus)
erf = _through_multicomplex(alg.erf)
power = _through_multicomplex(alg.power)


def div(a: Comps, b: Comps) -> Comps:
    return mul(a, inv(b))
