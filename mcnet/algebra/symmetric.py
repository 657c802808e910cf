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
complex ones.  A function of a number whose perturbation is tiny (``is_tiny``: the derivative
case) is its truncated Taylor series (``taylor``), which agrees with the multicomplex value to
roundoff at O(k^2) cost; otherwise it expands to the general layout, applies the exact
recursion of ``multicomplex`` and reads one representative coefficient per class back.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from math import comb

from mcnet.algebra import multicomplex as alg
from mcnet.algebra import taylor

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


def weights(k: int) -> dict[tuple[int, int], list[tuple[int, int]]]:
    """``_weights(k)``, computed once per order."""
    table = _WEIGHTS.get(k)
    if table is None:
        table = _WEIGHTS[k] = _weights(k)
    return table


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
    table = weights(k)
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


# --- functions: exact through the general layout, or by Taylor series when tiny ------------

# name: (jet recurrence, general recursion, whether the function's scale is |s_0| — a pole or
# branch point at 0 — rather than 1)
_FUNCTIONS: dict[str, tuple[Callable, Callable, bool]] = {
    "inv": (taylor.inv, alg.inv, True),
    "exp": (taylor.exp, alg.exp, False),
    "log": (taylor.log, alg.log, True),
    "log1p": (taylor.log1p, alg.log1p, False),
    "sqrt": (taylor.sqrt, alg.sqrt, True),
    "sin": (taylor.sin, alg.sin, False),
    "cos": (taylor.cos, alg.cos, False),
    "tan": (taylor.tan, alg.tan, False),
    "sinh": (taylor.sinh, alg.sinh, False),
    "cosh": (taylor.cosh, alg.cosh, False),
    "tanh": (taylor.tanh, alg.tanh, False),
    "arctan": (taylor.arctan, alg.arctan, False),
    "sigmoid": (taylor.sigmoid, alg.sigmoid, False),
    "softplus": (taylor.softplus, alg.softplus, False),
    "erf": (taylor.erf, alg.erf, False),
}


def exact(name: str) -> Callable[[Comps], Comps]:
    """``name`` through the general layout: exact for any argument."""
    general = _FUNCTIONS[name][1]
    return lambda s: compress(general(expand(s)), len(s) - 1)


def series(name: str) -> Callable[[Comps], Comps]:
    """``name`` by its Taylor recurrence on t_c = s_c / c!: equal to ``exact`` to roundoff
    when ``is_tiny``."""
    jet = _FUNCTIONS[name][0]

    def apply(s: Comps) -> Comps:
        factorials = [math.factorial(c) for c in range(len(s))]
        t = [x * (1.0 / f) if f > 1 else x for x, f in zip(s, factorials)]
        return [y * float(f) if f > 1 else y for y, f in zip(jet(t), factorials)]

    return apply


def is_tiny(name: str, s: Comps) -> bool:
    """Whether the perturbation is small enough that the multicomplex value and the Taylor
    series agree to roundoff: every |s_c| <= (tau * scale)**c, tau = 2**-8 sqrt(eps), so the
    terms in which the units square to -1 (relative size ~ (|s_c|^(1/c) / scale)**2) stay
    below eps / 2**16.  ``scale`` is 1, or |s_0| for functions singular at 0."""
    xp = alg.array_module(s[0])
    tau = 2.0**-8 * math.sqrt(float(xp.finfo(s[0].dtype).eps))
    relative_to_zero = _FUNCTIONS[name][2]
    size = xp.abs(s[0]) if relative_to_zero else None
    for c in range(1, len(s)):
        bound = (tau * size) ** c if relative_to_zero else tau**c
        if not bool(xp.all(xp.abs(s[c]) <= bound)):
            return False
    return True


def _dispatching(name: str) -> Callable[[Comps], Comps]:
    exact_path, series_path, general = exact(name), series(name), _FUNCTIONS[name][1]

    def lifted(s: Comps) -> Comps:
        if len(s) == 1:
            return general(s)
        return series_path(s) if is_tiny(name, s) else exact_path(s)

    lifted.__name__ = name
    lifted.__doc__ = f"{name} of a one-direction number (Taylor series when tiny, else exact)."
    return lifted


inv = _dispatching("inv")
exp = _dispatching("exp")
log = _dispatching("log")
log1p = _dispatching("log1p")
sqrt = _dispatching("sqrt")
sin = _dispatching("sin")
cos = _dispatching("cos")
tan = _dispatching("tan")
sinh = _dispatching("sinh")
cosh = _dispatching("cosh")
tanh = _dispatching("tanh")
arctan = _dispatching("arctan")
sigmoid = _dispatching("sigmoid")
softplus = _dispatching("softplus")
erf = _dispatching("erf")


def power(s: Comps, p) -> Comps:
    """s**p through the general layout (integer powers are products there)."""
    if len(s) == 1:
        return alg.power(s, p)
    return compress(alg.power(expand(s), p), len(s) - 1)


def div(a: Comps, b: Comps) -> Comps:
    return mul(a, inv(b))
