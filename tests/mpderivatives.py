"""The k-th derivatives of mcnet's elementwise functions in mpmath, by closed forms (and,
for tan, tanh, sigmoid and arctan, their derivative polynomials; for arcsin and arcsinh the
recurrence of their differential equation): none of them is a Taylor recurrence of mcnet's.
Shared by tests/test_derivative_contract.py and benchmarks/sweep_derivatives.py.
"""

from __future__ import annotations

import math

import mpmath


def _falling(p, k):
    return math.prod(p - j for j in range(k))


def _polynomial_derivative(x, k, value, factor):
    """f^(k) for f' = factor(f) with factor a polynomial in f (coefficient lists, lowest
    first): P_0 = y, P_(m+1) = factor(y) P_m'(y), evaluated at y = value."""
    poly = [0, 1]
    for _ in range(k):
        slope = [j * c for j, c in enumerate(poly)][1:] or [0]
        product = [0] * (len(slope) + len(factor) - 1)
        for i, a in enumerate(slope):
            for j, b in enumerate(factor):
                product[i + j] += a * b
        poly = product
    return sum(c * value**j for j, c in enumerate(poly))


def _ode_recurrence(x, k, sign):
    """g^(k-1) for g = (1 + sign x^2)^(-1/2): (1 + sign x^2) g_(m+1) = -sign ((2m + 1) x g_m
    + m^2 g_(m-1)), from differentiating (1 + sign x^2) g' = -sign x g m times."""
    base = 1 + sign * x * x
    g_prev, g = None, base ** mpmath.mpf(-0.5)
    for m in range(k - 1):
        tail = (2 * m + 1) * x * g + (m * m * g_prev if m else 0)
        g_prev, g = g, -sign * tail / base
    return g


def _arctan(x, k):
    """P_k(x) / (1 + x^2)^k with P_1 = 1, P_(m+1) = (1 + x^2) P_m' - 2 m x P_m: integer
    coefficients, so the exact zeros (x = 1 at k = 4) come out as 0."""
    poly = [1]
    for m in range(1, k):
        slope = [j * c for j, c in enumerate(poly)][1:] + [0, 0]
        shifted = [0] + [2 * m * c for c in poly]
        poly = [
            slope[i] + (slope[i - 2] if i >= 2 else 0) - (shifted[i] if i < len(shifted) else 0)
            for i in range(len(poly) + 1)
        ]
    return sum(c * x**j for j, c in enumerate(poly)) / (1 + x * x) ** k


# Beyond this |x| the derivatives of tanh and sigmoid (about e^-|x|) underflow float64.
_SATURATED = 800


def _tanh(x, k):
    if abs(x) > _SATURATED:
        return mpmath.mpf(0)
    with mpmath.workdps(mpmath.mp.dps + int(abs(x))):  # 1 - tanh^2 cancels: e^-2|x| needs them
        return +_polynomial_derivative(x, k, mpmath.tanh(x), [1, 0, -1])


def _sigmoid(x, k):
    if abs(x) > _SATURATED:
        return mpmath.mpf(0)
    with mpmath.workdps(mpmath.mp.dps + int(abs(x))):
        return +_polynomial_derivative(x, k, 1 / (1 + mpmath.exp(-x)), [0, 1, -1])


REFERENCES = {
    "exp": lambda x, k: mpmath.exp(x),
    "expm1": lambda x, k: mpmath.exp(x),
    "log": lambda x, k: (-1) ** (k - 1) * math.factorial(k - 1) / x**k,
    "log1p": lambda x, k: (-1) ** (k - 1) * math.factorial(k - 1) / (1 + x) ** k,
    "sqrt": lambda x, k: _falling(mpmath.mpf(0.5), k) * x ** (mpmath.mpf(0.5) - k),
    "power_2.5": lambda x, k: _falling(mpmath.mpf(2.5), k) * x ** (mpmath.mpf(2.5) - k),
    "sin": lambda x, k: [
        mpmath.sin,
        mpmath.cos,
        lambda t: -mpmath.sin(t),
        lambda t: -mpmath.cos(t),
    ][k % 4](x),
    "cos": lambda x, k: [
        mpmath.cos,
        lambda t: -mpmath.sin(t),
        lambda t: -mpmath.cos(t),
        mpmath.sin,
    ][k % 4](x),
    "sinh": lambda x, k: mpmath.cosh(x) if k % 2 else mpmath.sinh(x),
    "cosh": lambda x, k: mpmath.sinh(x) if k % 2 else mpmath.cosh(x),
    "tan": lambda x, k: _polynomial_derivative(x, k, mpmath.tan(x), [1, 0, 1]),
    "tanh": _tanh,
    "sigmoid": _sigmoid,
    "softplus": lambda x, k: _sigmoid(x, k - 1) if k > 1 else 1 / (1 + mpmath.exp(-x)),
    "arctan": _arctan,
    "erf": lambda x, k: (
        2 / mpmath.sqrt(mpmath.pi) * (-1) ** (k - 1) * mpmath.hermite(k - 1, x) * mpmath.exp(-x * x)
    ),
    "arcsin": lambda x, k: _ode_recurrence(x, k, -1),
    "arccos": lambda x, k: -_ode_recurrence(x, k, -1),
    "arcsinh": lambda x, k: _ode_recurrence(x, k, 1),
    "arctanh": lambda x, k: (
        math.factorial(k - 1) / 2 * ((1 - x) ** -k + (-1) ** (k - 1) * (1 + x) ** -k)
    ),
}

# where each function's domain lies: "all" reals, "positive", "unit" (-1, 1), "above_-1"
DOMAINS = {
    "log": "positive",
    "sqrt": "positive",
    "power_2.5": "positive",
    "arcsin": "unit",
    "arccos": "unit",
    "arctanh": "unit",
    "log1p": "above_-1",
}


def reference(name: str, x: float, k: int) -> float:
    """The k-th derivative at x (a float), rounded to float64 (±inf when it overflows)."""
    # closed forms such as arctanh's (1 - x)^-k - (1 + x)^-k cancel for tiny x: digits for it
    digits = 50 + (min(400, max(0, -math.floor(math.log10(abs(x))))) if x else 0)
    with mpmath.workdps(digits):
        value = REFERENCES[name](mpmath.mpf(x), k)
        return (
            float(value) if abs(value) < mpmath.mpf(2) ** 1024 else math.copysign(math.inf, value)
        )
