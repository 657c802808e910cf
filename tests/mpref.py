"""mpmath references for multicomplex functions, independent of mcnet's algebra.

Two ways to the exact value of f at a multicomplex number z given by its API-layout parts:

- ``idempotent_value``: C^n is a product of 2**(n-1) copies of C (the idempotent split), a
  ring isomorphism, so f(z) is f applied to each idempotent component, mapped back.  Done in
  mpmath at ``dps`` digits, the subtractions of the split cost nothing: a reference for O(1)
  imaginary parts anywhere in f's domain.
- ``series_value``: for z = x + sum_j eps_j i_j with a real x and tiny eps_j (the derivative
  regime), the coefficient of prod_{j in S} i_j is the sum over n_j = [j in S] + 2 m_j of
  f^(|n|)(x) prod_j (-1)^(m_j) eps_j^(n_j) / n_j!  (the units commute and square to -1), with
  the derivatives of f from mpmath; the leading term is the mixed partial f^(|S|)(x)
  prod_{j in S} eps_j.  Terms up to ``extra`` squares of a unit are summed.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np


def _to_comps(p):
    """Complex components (real + i_1 part) of one element's parts, as mpc."""
    return [mpmath.mpc(p[2 * j], p[2 * j + 1]) for j in range(len(p) // 2)]


def _from_comps(c):
    out = []
    for z in c:
        out += [z.real, z.imag]
    return out


def idempotent(c):
    """z1 + z2 i_n -> (z1 - i_1 z2, z1 + i_1 z2), recursively (i_1 acts as 1j)."""
    if len(c) == 1:
        return list(c)
    h = len(c) // 2
    lower = [x - 1j * y for x, y in zip(c[:h], c[h:])]
    upper = [x + 1j * y for x, y in zip(c[:h], c[h:])]
    return idempotent(lower) + idempotent(upper)


def from_idempotent(e):
    if len(e) == 1:
        return list(e)
    h = len(e) // 2
    p, m = from_idempotent(e[:h]), from_idempotent(e[h:])
    return [(x + y) / 2 for x, y in zip(p, m)] + [1j * (x - y) / 2 for x, y in zip(p, m)]


def idempotent_components(parts: np.ndarray) -> list[list]:
    """For each element of ``parts`` (shape (2**n, size)), its idempotent components (mpc)."""
    return [idempotent(_to_comps(parts[:, e])) for e in range(parts.shape[1])]


def parts_from_components(components: list[list]) -> np.ndarray:
    """Float64 parts (2**n, size) of the numbers with these idempotent components."""
    columns = [_from_comps(from_idempotent([mpmath.mpc(z) for z in c])) for c in components]
    return np.array([[float(v) for v in col] for col in columns]).T


def idempotent_value(f, parts: np.ndarray, dps: int = 40) -> np.ndarray:
    """f(z) for every element of ``parts`` (shape (2**n, size), n >= 1): f maps an mpc to an
    mpc (or takes (mpc, element index) when it needs to know the element)."""
    with mpmath.workdps(dps):
        columns = []
        for e in range(parts.shape[1]):
            comps = idempotent(_to_comps(parts[:, e]))
            values = [f(z, e) for z in comps]
            columns.append([float(v) for v in _from_comps(from_idempotent(values))])
    return np.array(columns).T


def derivatives(f, x: float, n: int, dps: int = 50) -> list:
    """f(x), f'(x), ..., f^(n)(x) in mpmath (f maps an mpf to an mpf)."""
    with mpmath.workdps(dps):
        coefficients = mpmath.taylor(f, mpmath.mpf(x), n)
        return [c * math.factorial(m) for m, c in enumerate(coefficients)]


def series_value(derivs: list, eps: list, extra: int = 4, dps: int = 50) -> np.ndarray:
    """Parts (2**k,) of f(x + sum_j eps_j i_j) from f's derivatives at x (``derivs``, at
    least k + 2 * extra of them) and the perturbations eps_1..eps_k (floats)."""
    k = len(eps)
    with mpmath.workdps(dps):
        e = [mpmath.mpf(v) for v in eps]
        out = []
        for m in range(2**k):
            bits = [(m >> j) & 1 for j in range(k)]
            # per unit, the series in its number of squares: g_j(s) = (-1)^s eps^n / n!
            # the product over units of g_j(s) = (-1)^s eps_j^n / n!, n = bit_j + 2 s,
            # as a polynomial in the total number of squares t, truncated at ``extra``
            poly = [mpmath.mpf(1)] + [mpmath.mpf(0)] * extra
            for j in range(k):
                g = [
                    (-1) ** s * e[j] ** (bits[j] + 2 * s) / math.factorial(bits[j] + 2 * s)
                    for s in range(extra + 1)
                ]
                product = [mpmath.mpf(0)] * (extra + 1)
                for a, pa in enumerate(poly):
                    for s, gs in enumerate(g[: extra + 1 - a]):
                        product[a + s] += pa * gs
                poly = product
            c = sum(bits)
            out.append(sum(derivs[c + 2 * t] * poly[t] for t in range(len(poly))))
        return np.array([float(v) for v in out])


def subsets(k: int):
    """Every subset of the units 1..k, as (bit mask, tuple of units)."""
    for m in range(2**k):
        yield m, tuple(j + 1 for j in range(k) if (m >> j) & 1)


__all__ = [
    "derivatives",
    "from_idempotent",
    "idempotent",
    "idempotent_components",
    "idempotent_value",
    "parts_from_components",
    "series_value",
    "subsets",
]
