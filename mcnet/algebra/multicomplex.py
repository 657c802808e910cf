"""The multicomplex number system, on lists of components.

A multicomplex array of order n is held as a list of ``2**(n-1)`` complex arrays (one real
array for order 0).  Element ``j`` of the list is the complex coefficient (real part + i_1
part) of the product of the units ``i_{k+2}`` for every bit ``k`` set in ``j``.  So the list
splits on its top unit: ``z = z[:L/2] + z[L/2:] * i_n``, and every algorithm below is the
textbook recursion on that split with NumPy's (or CuPy's) complex arithmetic as the base
case.  Nothing here forms a difference of O(1) numbers to get a small coefficient: no
idempotent representation, no 3-multiplication products (docs/numerics.md).

Functions that take a ``base`` argument are *bilinear* primitives lifted to every order:
``mul`` with ``base=operator.mul`` is the elementwise product, with a matmul it is the
multicomplex matrix product, with a convolution it is the multicomplex convolution.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any

import numpy as np

from mcnet.algebra import loops

Comps = list  # list of base arrays, see the module docstring

# --- ring operations --------------------------------------------------------------------


def add(a: Comps, b: Comps) -> Comps:
    """a + b; the shorter operand has zero coefficients beyond its length."""
    if len(a) < len(b):
        a, b = b, a
    common = [x + y for x, y in zip(a, b)]
    if len(a) == len(b):
        return common
    return common + _broadcast_like(a[len(b) :], common[0])


def neg(a: Comps) -> Comps:
    return [-x for x in a]


def sub(a: Comps, b: Comps) -> Comps:
    if len(a) >= len(b):
        common = [x - y for x, y in zip(a, b)]
        return common + _broadcast_like(a[len(b) :], common[0])
    common = [x - y for x, y in zip(a, b)]
    return common + _broadcast_like(neg(b[len(a) :]), common[0])


def _broadcast_like(tail: Comps, head) -> Comps:
    """Broadcast the components of the longer operand's tail to the result's shape."""
    xp = array_module(head)
    shape = np.shape(head)
    return [xp.broadcast_to(t, shape) if np.shape(t) != shape else t for t in tail]


def scale(a: Comps, r) -> Comps:
    """Multiply every component by a real (or order <= 1) array ``r``."""
    return [x * r for x in a]


def mul(a: Comps, b: Comps, base: Callable = operator.mul) -> Comps:
    """Product (z1 + z2 i_n)(w1 + w2 i_n) = (z1 w1 - z2 w2) + (z1 w2 + z2 w1) i_n.

    ``base`` multiplies two complex (or real) arrays; it must be bilinear.  An operand of
    lower order has no top unit, so only the longer one is split.
    """
    if len(a) == 1:
        return [base(a[0], y) for y in b]
    if len(b) == 1:
        return [base(x, b[0]) for x in a]
    if len(a) != len(b):
        if len(a) > len(b):
            h = len(a) // 2
            return mul(a[:h], b, base) + mul(a[h:], b, base)
        h = len(b) // 2
        return mul(a, b[:h], base) + mul(a, b[h:], base)
    h = len(a) // 2
    a1, a2, b1, b2 = a[:h], a[h:], b[:h], b[h:]
    return sub(mul(a1, b1, base), mul(a2, b2, base)) + add(mul(a1, b2, base), mul(a2, b1, base))


def inv(a: Comps) -> Comps:
    """1/(z1 + z2 i_n) = (1 - w i_n) / (z1 (1 + w^2)), w = z2 / z1, two inverses one order lower.

    Not (z1 - z2 i_n) / (z1^2 + z2^2): squaring z1 at every level squares the spread of its
    idempotent components, and z1^2 + z2^2 then cancels (1 + 0.9 i_1 i_2 embedded in order
    4 lost 7 digits that way).  Here only w is squared, and 1 + w^2 ~ 1 for tiny w.  The form
    is accurate for any size of w until w^2 overflows; where z1 is below sqrt(eps) of z2
    (z = i_2 has z1 = 0) it inverts z (-i_n) = z2 - z1 i_n instead, and 1/z = -i_n / (z
    (-i_n)).  Elsewhere, the derivative regime (z2 tiny) included, nothing changes.
    """
    if len(a) == 1:
        return [1 / a[0]]
    h = len(a) // 2
    z1, z2 = a[:h], a[h:]
    swap = _magnitude(z1) < _magnitude(z2) * math.sqrt(float(np.finfo(a[0].dtype).eps))
    if hasattr(swap, "any") and not bool(swap.any()):  # arrays: decided once, no selects
        return _inv_larger_first(z1, z2)
    c = _inv_larger_first(where(swap, z2, z1), where(swap, neg(z1), z2))
    # (c1 + c2 i_n)(-i_n) = c2 - c1 i_n
    return where(swap, c[h:] + neg(c[:h]), c)


def _inv_larger_first(z1: Comps, z2: Comps) -> Comps:
    """1/(z1 + z2 i_n) by w = z2 / z1, for z1 not negligible next to z2."""
    inv_z1 = inv(z1)
    w = mul(z2, inv_z1)
    q = mul(inv_z1, inv(_add_real(mul(w, w), 1.0)))
    return q + neg(mul(w, q))


def _magnitude(a: Comps):
    """The size of a half of z: the sum of |Re| + |Im| over its components (no hypot: this
    runs in every inverse, and only its order of magnitude matters)."""
    xp = array_module(a[0])
    total = None
    for x in a:
        size = xp.abs(x.real) + xp.abs(x.imag) if np.iscomplexobj(x) else xp.abs(x)
        total = size if total is None else total + size
    return total


def div(a: Comps, b: Comps) -> Comps:
    return mul(a, inv(b))


def int_power(a: Comps, p: int) -> Comps:
    """a**p for integer p by repeated squaring (exact for any argument, any sign)."""
    if p < 0:
        return int_power(inv(a), -p)
    result = None
    square = a
    while p:
        if p & 1:
            result = square if result is None else mul(result, square)
        p >>= 1
        if p:
            square = mul(square, square)
    if result is None:  # p == 0
        return _add_real(zeros_like(a), 1.0)
    return result


# --- exact analytic functions: trigonometric and hyperbolic towers ----------------------
# Each recursion uses only products of the order below, so the value is exact for any
# argument, not only for small imaginary parts.


def sincos(a: Comps) -> tuple[Comps, Comps]:
    """sin(z1 + z2 i) = sin z1 cosh z2 + i cos z1 sinh z2,
    cos(z1 + z2 i) = cos z1 cosh z2 - i sin z1 sinh z2."""
    if len(a) == 1:
        xp = array_module(a[0])
        return [xp.sin(a[0])], [xp.cos(a[0])]
    h = len(a) // 2
    s1, c1 = sincos(a[:h])
    sh2, ch2 = sinhcosh(a[h:])
    return mul(s1, ch2) + mul(c1, sh2), mul(c1, ch2) + neg(mul(s1, sh2))


def sinhcosh(a: Comps) -> tuple[Comps, Comps]:
    """sinh(z1 + z2 i) = sinh z1 cos z2 + i cosh z1 sin z2,
    cosh(z1 + z2 i) = cosh z1 cos z2 + i sinh z1 sin z2."""
    if len(a) == 1:
        xp = array_module(a[0])
        return [xp.sinh(a[0])], [xp.cosh(a[0])]
    h = len(a) // 2
    sh1, ch1 = sinhcosh(a[:h])
    s2, c2 = sincos(a[h:])
    return mul(sh1, c2) + mul(ch1, s2), mul(ch1, c2) + mul(sh1, s2)


def exp(a: Comps) -> Comps:
    """exp(z1 + z2 i) = exp(z1) (cos z2 + i sin z2)."""
    if len(a) == 1:
        return [array_module(a[0]).exp(a[0])]
    h = len(a) // 2
    e1 = exp(a[:h])
    s2, c2 = sincos(a[h:])
    return mul(e1, c2) + mul(e1, s2)


def sin(a: Comps) -> Comps:
    return sincos(a)[0]


def cos(a: Comps) -> Comps:
    return sincos(a)[1]


def sinh(a: Comps) -> Comps:
    return sinhcosh(a)[0]


def cosh(a: Comps) -> Comps:
    return sinhcosh(a)[1]


def tan(a: Comps) -> Comps:
    if len(a) == 1:
        return [array_module(a[0]).tan(a[0])]
    s, c = sincos(a)
    return div(s, c)


# --- functions of the real part's sign: stable forms of tanh, sigmoid, softplus ---------


def real_part(a: Comps):
    """The real coefficient, as a real array."""
    x = a[0]
    return x.real if np.iscomplexobj(x) else x


def sign_of_real(a: Comps):
    """+1 where Re z >= 0, -1 elsewhere, as a real array (the tie goes to +1)."""
    xp = array_module(a[0])
    re = real_part(a)
    return xp.where(re >= 0, 1.0, -1.0).astype(re.dtype)


def _add_real(a: Comps, r) -> Comps:
    """z + r for a real scalar or array r (only the first component changes)."""
    head = a[0] + r
    return [head] + _broadcast_like(a[1:], head)


def tanh(a: Comps) -> Comps:
    """tanh z = s (1 - e) / (1 + e), e = exp(-2 s z), s = sign(Re z): e never overflows."""
    if len(a) == 1:
        return [array_module(a[0]).tanh(a[0])]
    s = sign_of_real(a)
    e = exp(scale(a, -2 * s))
    return scale(div(_add_real(neg(e), 1.0), _add_real(e, 1.0)), s)


def sigmoid(a: Comps) -> Comps:
    """1 / (1 + exp(-z)) where Re z >= 0, exp(z) / (1 + exp(z)) elsewhere: e <= 1 always."""
    s = sign_of_real(a)
    e = exp(scale(a, -s))
    r = inv(_add_real(e, 1.0))
    return where(real_part(a) >= 0, r, mul(e, r))


def softplus(a: Comps) -> Comps:
    """log(1 + exp(z)) = max(Re z, 0)-branch + log(1 + exp(-|z|)) with |z| = sign(Re z) z."""
    s = sign_of_real(a)
    tail = log1p(exp(scale(a, -s)))
    positive = real_part(a) >= 0
    return add(where(positive, a, zeros_like(a)), tail)


# --- logarithm, arctangent, square root ---------------------------------------------------


def log(a: Comps) -> Comps:
    """Logarithm: log(z1 + z2 i) = log z1 + log1p(w^2)/2 + i arctan(w), w = z2 / z1.

    Exact (the polar form, with z1^2 + z2^2 factored as z1^2 (1 + w^2)) and free of
    cancellation for tiny w, because log1p and arctan are.  Each level takes the principal
    branch, so exp(log z) = z wherever z1 is invertible.
    """
    if len(a) == 1:
        return [array_module(a[0]).log(a[0])]
    h = len(a) // 2
    w = div(a[h:], a[:h])
    result = add(log(a[:h]), scale(log1p(mul(w, w)), 0.5)) + arctan(w)
    return _onto_principal_branch(result, a, lambda z: array_module(z).log(z))


def log1p(a: Comps) -> Comps:
    """log(1 + z) by the recursion of ``log`` about 1 + z1: exact for tiny z."""
    if len(a) == 1:
        return [_base_log1p(a[0])]
    h = len(a) // 2
    w = div(a[h:], _add_real(a[:h], 1.0))
    result = add(log1p(a[:h]), scale(log1p(mul(w, w)), 0.5)) + arctan(w)
    return _onto_principal_branch(result, a, _base_log1p)


def _base_log1p(z):
    """log1p of a real or complex array; NumPy's complex log1p is log(1 + z), which loses
    tiny real parts, so the complex case is written out: |1 + z|^2 - 1 = a (2 + a) + b^2."""
    xp = array_module(z)
    if not np.iscomplexobj(z):
        return xp.log1p(z)
    a, b = z.real, z.imag
    return 0.5 * xp.log1p(a * (2 + a) + b * b) + 1j * xp.arctan2(b, 1 + a)


def arctan(a: Comps) -> Comps:
    """arctan(x + y i) = atan2(2x, 1 - x^2 - y^2)/2 + i log(n / d)/4,
    n = x^2 + (1 + y)^2, d = x^2 + (1 - y)^2.

    log(n/d) is taken as log1p(4y / d), exact for tiny y, where 4y/d stays small on every
    idempotent component; elsewhere as log n - log d, since 1 + 4y/d would cancel where an
    idempotent component of y nears -+1 (arctan's singularities at -+i).
    """
    if len(a) == 1:
        return [array_module(a[0]).arctan(a[0])]
    xp = array_module(a[0])
    h = len(a) // 2
    x, y = a[:h], a[h:]
    x2 = mul(x, x)
    q = _add_real(neg(add(x2, mul(y, y))), 1.0)
    one_minus_y, one_plus_y = _add_real(neg(y), 1.0), _add_real(y, 1.0)
    d = add(x2, mul(one_minus_y, one_minus_y))
    ratio = div(scale(y, 4.0), d)
    near_singular: Any = None
    for component in idempotent(ratio):
        far = xp.abs(component) > 0.5
        near_singular = far if near_singular is None else near_singular | far
    log_ratio = log1p(ratio)
    if bool(near_singular.any()):
        n = add(x2, mul(one_plus_y, one_plus_y))
        with np.errstate(all="ignore"):
            log_ratio = where(near_singular, sub(log(n), log(d)), log_ratio)
    result = scale(atan2(scale(x, 2.0), q), 0.5) + scale(log_ratio, 0.25)
    return _onto_principal_branch(result, a, lambda z: array_module(z).arctan(z))


def atan2(p: Comps, q: Comps) -> Comps:
    """The angle of q + p i, with the branch decided on real parts.

    arctan(p/q), +-pi where Re q < 0; where |Re p| > |Re q| the form +-pi/2 - arctan(q/p)
    is used instead so that no quotient blows up.
    """
    xp = array_module(p[0])
    rp, rq = real_part(p), real_part(q)
    sign_p = xp.where(rp >= 0, 1.0, -1.0).astype(rp.dtype)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        by_q = _add_real(arctan(div(p, q)), xp.where(rq < 0, math.pi * sign_p, 0.0))
        by_p = _add_real(neg(arctan(div(q, p))), math.pi / 2 * sign_p)
    return where(xp.abs(rq) >= xp.abs(rp), by_q, by_p)


def expm1(a: Comps) -> Comps:
    """exp(z) - 1 = expm1(z1) cos z2 - 2 sin^2(z2 / 2) + i exp(z1) sin z2: no cancellation for
    tiny z (cos z2 - 1 is -2 sin^2(z2 / 2))."""
    if len(a) == 1:
        return [array_module(a[0]).expm1(a[0])]
    h = len(a) // 2
    em1 = expm1(a[:h])
    s2, c2 = sincos(a[h:])
    half = sin(scale(a[h:], 0.5))
    return sub(mul(em1, c2), scale(mul(half, half), 2.0)) + mul(_add_real(em1, 1.0), s2)


def _one_minus_square(a: Comps) -> Comps:
    """1 - z^2 = (1 - x)(1 + x) - s (2x + s), x = Re z, s = z - x: no cancellation near
    x = -+1, nor for tiny x (where (1 - z)(1 + z) would form s - s)."""
    x = real_part(a)
    s = _add_real(a, -x)
    return _add_real(neg(mul(s, _add_real(s, 2.0 * x))), (1.0 - x) * (1.0 + x))


def arcsin(a: Comps) -> Comps:
    """arcsin z = the angle of sqrt(1 - z^2) + z i (branches by real parts)."""
    if len(a) == 1:
        return [array_module(a[0]).arcsin(a[0])]
    return atan2(a, sqrt(_one_minus_square(a)))


def arccos(a: Comps) -> Comps:
    """arccos z = the angle of z + sqrt(1 - z^2) i: no cancellation near z = 1."""
    if len(a) == 1:
        return [array_module(a[0]).arccos(a[0])]
    return atan2(sqrt(_one_minus_square(a)), a)


def arctanh(a: Comps) -> Comps:
    """(log1p(z) - log1p(-z)) / 2: the two logarithms have opposite signs for tiny z."""
    if len(a) == 1:
        return [array_module(a[0]).arctanh(a[0])]
    return scale(sub(log1p(a), log1p(neg(a))), 0.5)


def arcsinh(a: Comps) -> Comps:
    """s log1p(w + w^2 / (1 + sqrt(1 + w^2))), w = s z, s = sign(Re z): no cancellation for
    negative or tiny z."""
    if len(a) == 1:
        return [array_module(a[0]).arcsinh(a[0])]
    s = sign_of_real(a)
    w = scale(a, s)
    w2 = mul(w, w)
    root = sqrt(_add_real(w2, 1.0))
    return scale(log1p(add(w, div(w2, _add_real(root, 1.0)))), s)


# --- principal branches ------------------------------------------------------------------------
# The recursions above pick branches by real parts.  That is right whenever the imaginary
# parts are small next to the real part, but with O(1) imaginary parts the idempotent
# components of z (the 2**(n-1) complex numbers that C^n splits into) can need different
# branches, and the result is then off by multiples of pi/2 (atan2 halved) or i pi (log1p
# halved) on some components.  The idempotent split computes the principal value to absolute
# accuracy but by cancellation (docs/numerics.md), so it only *chooses* the branch: the
# recursion's exact result is moved by whole multiples of pi/2 (real and imaginary), and is
# left untouched, tiny parts and all, where it is already right.

_BRANCH_LATTICE = math.pi / 2


def idempotent(a: Comps) -> Comps:
    """The idempotent components: z1 + z2 i_n -> (z1 - i_1 z2, z1 + i_1 z2), recursively."""
    if len(a) == 1:
        return a
    h = len(a) // 2
    lower = [x - 1j * y for x, y in zip(a[:h], a[h:])]
    upper = [x + 1j * y for x, y in zip(a[:h], a[h:])]
    return idempotent(lower) + idempotent(upper)


def from_idempotent(e: Comps) -> Comps:
    """Inverse of ``idempotent``: z1 = (p + m)/2, z2 = i_1 (p - m)/2."""
    if len(e) == 1:
        return e
    h = len(e) // 2
    p, m = from_idempotent(e[:h]), from_idempotent(e[h:])
    return [(x + y) / 2 for x, y in zip(p, m)] + [0.5j * (x - y) for x, y in zip(p, m)]


def _onto_principal_branch(result: Comps, a: Comps, base: Callable) -> Comps:
    """Shift ``result`` by lattice steps so that every idempotent component agrees with
    ``base`` (the principal complex function) applied to that component of ``a``.

    Where the recursion's result is off that lattice by more than roundoff allows, it is not
    a value of the function at all: with O(1) imaginary parts whose idempotent components lie
    on both sides of a cut, the recursions' inner quotients come near their singularities
    and lost up to 0.1 (log at orders 4-6).  Those elements take the idempotent value, which
    is accurate to the size of the result there; in the derivative regime (tiny imaginary
    parts) the recursion agrees with it to roundoff and keeps its exact tiny parts.
    """
    xp = array_module(a[0])
    with np.errstate(all="ignore"):
        principal = [base(c) for c in idempotent(a)]
        steps = [(p - r) / _BRANCH_LATTICE for p, r in zip(principal, idempotent(result))]
        offsets = [xp.rint(d.real) + 1j * xp.rint(d.imag) for d in steps]
        eps = float(np.finfo(a[0].dtype).eps)
        tolerance = 1e3 * eps
        # elements where the recursion divided by zero but the function exists, or missed
        # the lattice
        broken: Any = None
        for p, d, k in zip(principal, steps, offsets):
            bad = ~xp.isfinite(k) | (xp.abs(d - k) > tolerance * (1 + xp.abs(p) / _BRANCH_LATTICE))
            broken = bad if broken is None else broken | bad
    if broken.any():
        offsets = [xp.where(broken, 0, k) for k in offsets]
    if any(bool(xp.any(k)) for k in offsets):
        result = add(result, from_idempotent([k * _BRANCH_LATTICE for k in offsets]))
    if broken.any():
        with np.errstate(all="ignore"):  # the unselected elements may hold inf or NaN
            result = where(broken, from_idempotent(principal), result)
    return result


def sqrt(a: Comps) -> Comps:
    """Principal square root: exp(log(z) / 2), with sqrt at the base."""
    if len(a) == 1:
        return [array_module(a[0]).sqrt(a[0])]
    return exp(scale(log(a), 0.5))


def power(a: Comps, p) -> Comps:
    """z**p: integers by repeated squaring, anything else as exp(p log z)."""
    integral = isinstance(p, float) and p.is_integer() and abs(p) < 2**31
    if isinstance(p, (int, np.integer)) or integral:
        return int_power(a, int(p))
    if p == 0.5:
        return sqrt(a)
    return exp(scale(log(a), p))


# --- erf: Taylor series about the real part, summed to convergence -----------------------


def erf(a: Comps) -> Comps:
    """erf by its Taylor series about x = Re z, which converges for every z (erf is entire).

    d^k erf/dx^k = 2/sqrt(pi) (-1)^(k-1) H_{k-1}(x) exp(-x^2), with H the Hermite
    polynomials, carried as H_m / m! so that nothing overflows.  Summation stops once
    every coefficient of two consecutive terms is below working precision of the sum's.
    """
    xp = array_module(a[0])
    x = real_part(a)
    if len(a) == 1 and not np.iscomplexobj(a[0]):
        return [_real_erf(x)]
    s = _add_real(a, -x)  # the non-real part of z
    eps = np.finfo(x.dtype).eps
    total = _add_real(zeros_like(a), _real_erf(x))
    gauss = 2 / math.sqrt(math.pi) * xp.exp(-x * x)
    g_prev, g = xp.zeros_like(x), xp.ones_like(x)  # H_{m-1}/(m-1)!, H_m/m!, m = 0
    s_power = s
    order = _order(a)
    negligible_in_a_row = 0
    for k in range(1, 400):
        # coefficient of s^k: erf^(k)(x)/k! = gauss (-1)^(k-1) (H_{k-1}/(k-1)!) / k
        coef = gauss * ((-1) ** (k - 1)) * g / k
        term = scale(s_power, coef)
        total = add(total, term)
        negligible = all(bool(xp.all(xp.abs(t) <= eps * xp.abs(c))) for t, c in zip(term, total))
        negligible_in_a_row = negligible_in_a_row + 1 if negligible else 0
        # Two in a row: at x = 0 every other derivative of erf is exactly 0, so one
        # negligible term does not mean the series has converged (erf(2.5i) stopped at s^2).
        if k > order and negligible_in_a_row == 2:
            break
        m = k - 1  # advance H_m/m! -> H_{m+1}/(m+1)!
        g_prev, g = g, (2 * x * g - 2 * g_prev) / (m + 1)
        s_power = mul(s_power, s)
    return total


def _real_erf(x):
    if array_module(x) is np:
        from scipy.special import erf as scipy_erf

        return scipy_erf(x)
    from cupyx.scipy.special import erf as cupy_erf  # pragma: no cover - GPU only

    return cupy_erf(x)


# --- branch-on-real-part primitives ------------------------------------------------------


def _select(xp, cond, x, y):
    """xp.where(cond, x, y), by ``loops.select`` where it applies (x an array; y may be 0-d)."""
    out = loops.select(cond, x, y)
    return out if out is not None else xp.where(cond, x, y)


def where(cond, a: Comps, b: Comps) -> Comps:
    """Select whole multicomplex elements by a boolean array (decided on real parts)."""
    xp = array_module(a[0])
    if len(a) == len(b):
        return [_select(xp, cond, x, y) for x, y in zip(a, b)]
    # the shorter operand's missing coefficients are zero
    zero = 0j if np.iscomplexobj(a[0]) or np.iscomplexobj(b[0]) else 0.0
    return [
        xp.where(cond, a[j] if j < len(a) else zero, b[j] if j < len(b) else zero)
        for j in range(max(len(a), len(b)))
    ]


def zeros_like(a: Comps) -> Comps:
    return [array_module(x).zeros_like(x) for x in a]


# --- helpers ------------------------------------------------------------------------------


def _order(a: Comps) -> int:
    return 0 if not np.iscomplexobj(a[0]) else len(a).bit_length()


def array_module(x):
    """numpy for NumPy arrays and scalars, cupy for CuPy arrays, and the code-emitting
    namespace for the symbols of ``kernels`` (which is how kernels are generated)."""
    if type(x) is np.ndarray:  # the common case first: asked many times per layer
        return np
    module = type(x).__module__
    if module.startswith("cupy"):
        import cupy

        return cupy
    if module == "mcnet.algebra.kernels":
        return x.namespace
    return np
