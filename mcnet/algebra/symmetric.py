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

Inside ``with nilpotent_units():`` the same layout holds numbers whose units square to 0
(truncated Taylor, hyper-dual numbers): a product keeps only the terms with no unit in
common, (s t)_c = sum_p C(c, p) s_p t_(c-p) (Leibniz's rule), and every function is its
Taylor recurrence.  Then f(x + w (e_1 + ... + e_k)) has s_c = f^(c)(x) w^c exactly, for any
w: no truncation error at any step, which ``mcnet.derivatives`` uses for plain functions.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import operator
from collections.abc import Callable, Iterator
from math import comb
from typing import Any

import numpy as np

from mcnet.algebra import multicomplex as alg
from mcnet.algebra import taylor

Comps = list  # [s_0, ..., s_k], real arrays

add, sub, neg, scale, where = alg.add, alg.sub, alg.neg, alg.scale, alg.where


_NILPOTENT = contextvars.ContextVar("mcnet_nilpotent_units", default=False)


class MixedLayoutError(TypeError):
    """A number with nilpotent units met a general-layout (multicomplex) one: the two
    algebras do not combine."""


@contextlib.contextmanager
def nilpotent_units() -> Iterator[None]:
    """One-direction numbers computed in this block have units with e^2 = 0."""
    token = _NILPOTENT.set(True)
    try:
        yield
    finally:
        _NILPOTENT.reset(token)


def nilpotent() -> bool:
    """Whether one-direction numbers are nilpotent here (``nilpotent_units``)."""
    return _NILPOTENT.get()


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


def _nilpotent_weights(k: int) -> dict[tuple[int, int], list[tuple[int, int]]]:
    """The same for nilpotent units: only q = 0, s_p t_(c-p) into c with weight C(c, p)."""
    return {(p, c - p): [(c, comb(c, p))] for c in range(k + 1) for p in range(c + 1)}


_WEIGHTS: dict[tuple[int, bool], dict] = {}


def weights(k: int) -> dict[tuple[int, int], list[tuple[int, int]]]:
    """``_weights(k)`` (``_nilpotent_weights(k)`` inside ``nilpotent_units``), computed once
    per order."""
    key = (k, nilpotent())
    table = _WEIGHTS.get(key)
    if table is None:
        table = _WEIGHTS[key] = (_nilpotent_weights if key[1] else _weights)(k)
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
    zero_a, zero_b = zero_components(a), zero_components(b)
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
# them are skipped.  Large arrays are checked only when their first and last entries are zero
# (NumPy), so activations cost no extra pass while a large weight's zero s_2 is still found
# (it would cost a third of a forward's GEMMs); other large arrays are not checked.
_ZERO_CHECK_SIZE = 1 << 16


def zero_components(s: Comps) -> set[int]:
    """The indices of the coefficients known to be exactly zero (only small ones, or NumPy
    arrays whose ends are zero, are checked, except with nilpotent units)."""
    # with nilpotent units every size is checked: 0 * inf must not make a NaN there
    return {c for c, x in enumerate(s) if _known_zero(x, everything=nilpotent())}


def _known_zero(x, everything: bool) -> bool:
    size = getattr(x, "size", math.inf)
    if not everything and size > _ZERO_CHECK_SIZE:
        if not isinstance(x, np.ndarray) or x.ndim == 0:
            return False
        if x[(0,) * x.ndim] or x[(-1,) * x.ndim]:
            return False
    return not bool(alg.array_module(x).any(x))


def expand(s: Comps) -> alg.Comps:
    """The general complex-packed layout: component j is s_|j| + i_1 s_(|j|+1)."""
    if nilpotent():
        raise MixedLayoutError(
            "a number with nilpotent units (mcnet.derivatives' exact mode) cannot be expanded "
            "to the multicomplex general layout"
        )
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
    "expm1": (taylor.expm1, alg.expm1, False),
    "arcsin": (taylor.arcsin, alg.arcsin, False),
    "arccos": (taylor.arccos, alg.arccos, False),
    "arctanh": (taylor.arctanh, alg.arctanh, False),
    "arcsinh": (taylor.arcsinh, alg.arcsinh, False),
}


def exact(name: str) -> Callable[[Comps], Comps]:
    """``name`` through the general layout: exact for any argument."""
    general = _FUNCTIONS[name][1]
    return lambda s: compress(general(expand(s)), len(s) - 1)


def series(name: str) -> Callable[[Comps], Comps]:
    """``name`` by its Taylor recurrence on t_c = s_c / c!: equal to ``exact`` to roundoff
    when ``is_tiny``, and the exact value for nilpotent units."""
    return _by_jet(lambda t: _FUNCTIONS[name][0](t))


def _by_jet(jet: Callable[[list], list]) -> Callable[[Comps], Comps]:
    """A Taylor recurrence on t_c = s_c / c! lifted to one-direction coefficients s_c.  With
    nilpotent units, coefficients that are exactly zero enter as ``taylor.ZERO``."""

    def apply(s: Comps) -> Comps:
        factorials = [math.factorial(c) for c in range(len(s))]
        zeros = zero_components(s[1:]) if nilpotent() else set()
        t = [
            taylor.ZERO if c - 1 in zeros else x * (1.0 / f) if f > 1 else x
            for c, (x, f) in enumerate(zip(s, factorials))
        ]
        y = [y * float(f) if f > 1 else y for y, f in zip(jet(t), factorials)]
        return [alg.array_module(s[0]).zeros_like(s[0]) if v is taylor.ZERO else v for v in y]

    return apply


def is_tiny(name: str, s: Comps) -> bool:
    """Whether the perturbation is small enough that the multicomplex value and the Taylor
    series agree to roundoff: every |s_c| <= (tau * scale)**c, tau = 2**-8 sqrt(eps), so the
    terms in which the units square to -1 (relative size ~ (|s_c|^(1/c) / scale)**2) stay
    below eps / 2**16.  ``scale`` is 1, or |s_0| for functions singular at 0."""
    xp = alg.array_module(s[0])
    tau = 2.0**-8 * math.sqrt(float(xp.finfo(s[0].dtype).eps))
    relative_to_zero = _FUNCTIONS[name][2]
    size: Any = xp.abs(s[0]) if relative_to_zero else None
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
        if nilpotent() or is_tiny(name, s):
            return series_path(s)
        return exact_path(s)

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
expm1 = _dispatching("expm1")
arcsin = _dispatching("arcsin")
arccos = _dispatching("arccos")
arctanh = _dispatching("arctanh")
arcsinh = _dispatching("arcsinh")


def power(s: Comps, p) -> Comps:
    """s**p through the general layout (integer powers are products there); with nilpotent
    units integer powers by repeated products, others by their Taylor recurrence."""
    if len(s) == 1:
        return alg.power(s, p)
    if not nilpotent():
        return compress(alg.power(expand(s), p), len(s) - 1)
    integral = isinstance(p, (int, np.integer)) or (float(p).is_integer() and abs(p) < 2**31)
    if not integral:
        return _by_jet(lambda t: taylor.power(t, float(p)))(s)
    p = int(p)
    base, result = (inv(s) if p < 0 else s), None
    for bit in bin(abs(p))[2:]:  # square and multiply, from the top bit
        result = None if result is None else mul(result, result)
        if bit == "1":
            result = base if result is None else mul(result, base)
    if result is None:  # p == 0
        xp = alg.array_module(s[0])
        return [xp.ones_like(s[0])] + [xp.zeros_like(x) for x in s[1:]]
    return result


def div(a: Comps, b: Comps) -> Comps:
    return mul(a, inv(b))
