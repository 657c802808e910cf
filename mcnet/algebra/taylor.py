"""Truncated Taylor series (jets): coefficients y_0..y_k of f(t_0 + t_1 e + ... + t_k e^k).

Each function is the textbook Taylor-mode recurrence (Griewank & Walther, ch. 13): O(k^2)
operations and one real function evaluation at t_0 per element.  ``algebra.symmetric`` uses
them for one-direction numbers whose perturbation is tiny, where the multicomplex value and
the jet agree to roundoff (the units' squares, -1 instead of 0, only enter at relative order
|perturbation|^2).  The list entries are real arrays, or the symbols of ``kernels`` when a
kernel is traced.

A coefficient may also be ``ZERO``, an exact zero that absorbs every product: the
perturbation ``x + h e`` has t_2 = t_3 = ... = 0 exactly, and where f(x) overflows
(sinh at -800) a term ``0 * inf`` must vanish, not turn the whole jet into NaN.
"""

from __future__ import annotations

import math

from mcnet.algebra import multicomplex as alg

Jet = list


class _Zero:
    """An exact zero coefficient: ``ZERO * a = ZERO`` for every a (inf included),
    ``ZERO + a = a``.  NumPy defers to it (``__array_ufunc__ = None``)."""

    __array_ufunc__ = None

    def __mul__(self, other):
        return self

    __rmul__ = __truediv__ = __mul__

    def __add__(self, other):
        return other

    __radd__ = __add__

    def __sub__(self, other):
        return -other

    def __rsub__(self, other):
        return other

    def __neg__(self):
        return self

    def __float__(self) -> float:
        return 0.0

    def __repr__(self) -> str:
        return "ZERO"


ZERO = _Zero()


def mul(a: Jet, b: Jet) -> Jet:
    """Cauchy product, truncated at the common length."""
    return [sum_of(a[i] * b[c - i] for i in range(c + 1)) for c in range(len(a))]


def sum_of(terms):
    total = None
    for term in terms:
        total = term if total is None else total + term
    return total


def _integrate(t: Jet, y0, derivative: Jet) -> Jet:
    """y with y' = derivative * t' (derivative given as a jet): y_c = sum_j j t_j d_(c-j) / c."""
    return [y0] + [
        sum_of(j * t[j] * derivative[c - j] for j in range(1, c + 1)) * (1.0 / c)
        for c in range(1, len(t))
    ]


def exp(t: Jet) -> Jet:
    y = [alg.array_module(t[0]).exp(t[0])]
    for c in range(1, len(t)):
        y.append(sum_of(j * t[j] * y[c - j] for j in range(1, c + 1)) * (1.0 / c))
    return y


def inv(t: Jet) -> Jet:
    y = [1.0 / t[0]]
    for c in range(1, len(t)):
        y.append(-(sum_of(t[j] * y[c - j] for j in range(1, c + 1)) * y[0]))
    return y


def _log_about(t: Jet, y0, base) -> Jet:
    """log-type recurrence: y' = t' / base with base = t (log) or 1 + t (log1p)."""
    y = [y0]
    for c in range(1, len(t)):
        tail = sum_of(j * y[j] * t[c - j] for j in range(1, c)) if c > 1 else None
        y.append((t[c] if tail is None else t[c] - tail * (1.0 / c)) / base)
    return y


def log(t: Jet) -> Jet:
    return _log_about(t, alg.array_module(t[0]).log(t[0]), t[0])


def log1p(t: Jet) -> Jet:
    return _log_about(t, alg.log1p([t[0]])[0], t[0] + 1.0)


def sqrt(t: Jet) -> Jet:
    y = [alg.array_module(t[0]).sqrt(t[0])]
    for c in range(1, len(t)):
        tail = sum_of(y[j] * y[c - j] for j in range(1, c)) if c > 1 else None
        y.append((t[c] if tail is None else t[c] - tail) / (2.0 * y[0]))
    return y


def _coupled(t: Jet, f0, g0, sign: float) -> tuple[Jet, Jet]:
    """(f, g) with f' = g t', g' = sign f t': sin/cos (sign -1) and sinh/cosh (sign +1)."""
    f, g = [f0], [g0]
    for c in range(1, len(t)):
        f.append(sum_of(j * t[j] * g[c - j] for j in range(1, c + 1)) * (1.0 / c))
        g.append(sum_of(j * t[j] * f[c - j] for j in range(1, c + 1)) * (sign / c))
    return f, g


def sin(t: Jet) -> Jet:
    xp = alg.array_module(t[0])
    return _coupled(t, xp.sin(t[0]), xp.cos(t[0]), -1.0)[0]


def cos(t: Jet) -> Jet:
    xp = alg.array_module(t[0])
    return _coupled(t, xp.sin(t[0]), xp.cos(t[0]), -1.0)[1]


def sinh(t: Jet) -> Jet:
    xp = alg.array_module(t[0])
    return _coupled(t, xp.sinh(t[0]), xp.cosh(t[0]), 1.0)[0]


def cosh(t: Jet) -> Jet:
    xp = alg.array_module(t[0])
    return _coupled(t, xp.sinh(t[0]), xp.cosh(t[0]), 1.0)[1]


def tan(t: Jet) -> Jet:
    return mul(sin(t), inv(cos(t)))


def _riccati(t: Jet, y0, u0, slope) -> Jet:
    """y with y' = u t' and u = q(y) quadratic with q'' = -2: sigmoid (u = y - y^2) and tanh
    (u = 1 - y^2).  u_c = slope y_c - sum_(0<i<c) y_i y_(c-i), slope = q'(y_0); u_0 and
    slope are passed in computed from t_0 directly, as y_0 - y_0^2 and 1 - y_0^2 would cancel
    for large |t_0|."""
    y, u = [y0], [u0]
    for c in range(1, len(t)):
        y.append(sum_of(j * t[j] * u[c - j] for j in range(1, c + 1)) * (1.0 / c))
        middle = sum_of(y[i] * y[c - i] for i in range(1, c))
        u.append(slope * y[c] if middle is None else slope * y[c] - middle)
    return y


def _exp_of_minus_abs(x):
    """(x >= 0, e, m): e = exp(-|x|) and m = expm1(-|x|) = e - 1, each to full relative
    accuracy (1 - e and e would each cancel if taken from the other)."""
    xp = alg.array_module(x)
    positive = x >= 0
    minus_abs = xp.where(positive, -x, x)
    return positive, xp.exp(minus_abs), xp.expm1(minus_abs)


def sigmoid(t: Jet) -> Jet:
    xp = alg.array_module(t[0])
    positive, e, m = _exp_of_minus_abs(t[0])
    r = 1.0 / (1.0 + e)
    e_r = e * r
    # s(t_0) = r or e r; u_0 = s(t_0) s(-t_0) = e r^2; slope = 1 - 2 s(t_0) = -+ (1 - e) r
    return _riccati(t, xp.where(positive, r, e_r), e_r * r, xp.where(positive, m * r, -(m * r)))


def tanh(t: Jet) -> Jet:
    xp = alg.array_module(t[0])
    positive, e, m = _exp_of_minus_abs(2.0 * t[0])
    r = 1.0 / (1.0 + e)
    magnitude = -(m * r)  # tanh|t_0| = (1 - e) / (1 + e), e = exp(-2|t_0|)
    y0 = xp.where(positive, magnitude, -magnitude)
    # u_0 = 1 - tanh^2 = 4 e / (1 + e)^2, computed without cancellation
    return _riccati(t, y0, 4.0 * e * r * r, -2.0 * y0)


def softplus(t: Jet) -> Jet:
    return _integrate(t, alg.softplus([t[0]])[0], sigmoid(t))


def _one_plus_square(t: Jet):
    """(q, m) with 1 + t^2 = m^2 q, q = m^-2 + (t/m)^2, m >= |t_0| a power of two (1 for
    |t_0| <= 1): t_0^2 never overflows (arctan' at 1e200 is 1e-400, a number to divide by
    m twice, not 1 / inf)."""
    xp = alg.array_module(t[0])
    m = xp.ldexp(xp.ones_like(t[0]), xp.frexp(xp.maximum(xp.abs(t[0]), 1.0))[1])
    ratio = [x / m for x in t]
    q = mul(ratio, ratio)
    q[0] = q[0] + (1.0 / m) ** 2
    return q, m


def arctan(t: Jet) -> Jet:
    q, m = _one_plus_square(t)
    return _integrate(t, alg.array_module(t[0]).arctan(t[0]), [x / m / m for x in inv(q)])


def erf(t: Jet) -> Jet:
    gauss = exp([-c for c in mul(t, t)])
    scale = 2.0 / math.sqrt(math.pi)
    return _integrate(t, alg.erf([t[0]])[0], [scale * g for g in gauss])


def expm1(t: Jet) -> Jet:
    y = exp(t)
    y[0] = alg.array_module(t[0]).expm1(t[0])
    return y


def power(t: Jet, p: float) -> Jet:
    """t**p as y_c = t_0**(p - c) w_c, w_0 = 1, w_c = sum_j ((p + 1) j - c) t_j t_0**(j - 1)
    w_(c-j) / c (the recurrence of t y' = p y t' with y_c scaled by t_0**(c - p)): no
    coefficient passes through t_0**p, so x**2.5 at x = 1e300 has finite third and higher
    derivatives although x**2.5 itself overflows."""
    xp = alg.array_module(t[0])
    powers = [1.0]  # t_0**(j - 1)
    w = [1.0]
    for c in range(1, len(t)):
        if len(powers) < c:
            powers.append(powers[-1] * t[0])
        w.append(
            sum_of(((p + 1) * j - c) * t[j] * powers[j - 1] * w[c - j] for j in range(1, c + 1))
            * (1.0 / c)
        )
    with_power = [xp.power(t[0], p - c) for c in range(len(t))]
    return [with_power[0]] + [with_power[c] * w[c] for c in range(1, len(t))]


def _one_minus_square(t: Jet) -> Jet:
    """1 - t^2 with (1 - t_0)(1 + t_0) for the constant term (no cancellation near t_0 = -+1)
    and -(t^2)_c for the others (no cancellation for tiny t_0)."""
    square = mul(t, t)
    return [(1.0 - t[0]) * (1.0 + t[0])] + [-x for x in square[1:]]


def arcsin(t: Jet) -> Jet:
    xp = alg.array_module(t[0])
    return _integrate(t, xp.arcsin(t[0]), inv(sqrt(_one_minus_square(t))))


def arccos(t: Jet) -> Jet:
    xp = alg.array_module(t[0])
    return _integrate(t, xp.arccos(t[0]), [-x for x in inv(sqrt(_one_minus_square(t)))])


def arctanh(t: Jet) -> Jet:
    xp = alg.array_module(t[0])
    return _integrate(t, xp.arctanh(t[0]), inv(_one_minus_square(t)))


def arcsinh(t: Jet) -> Jet:
    """y' = t' / sqrt(1 + t^2) = t' / (m sqrt(q)) (``_one_plus_square``): the derivative at
    1e300 is 1e-300, not 1 / sqrt(inf)."""
    q, m = _one_plus_square(t)
    return _integrate(t, alg.array_module(t[0]).arcsinh(t[0]), [x / m for x in inv(sqrt(q))])
