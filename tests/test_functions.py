"""Every elementwise function and reduction of the public API: derivatives of orders 1-4
(``mc.derivative``'s Taylor mode, ``mc.directional``) against derivatives written out by hand
(and mpmath for erf); tests/test_derivative_contract.py covers the whole domain."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import mcnet as mc

ORDERS = [1, 2, 3, 4]


def points(lo: float, hi: float, away_from: float | None = None):
    """Arrays of 4 points in [lo, hi], at least 1e-3 from a kink when one is given."""
    values = st.floats(lo, hi, allow_subnormal=False)
    if away_from is not None:
        values = values.filter(lambda v: abs(v - away_from) > 1e-3)
    return hnp.arrays(np.float64, 4, elements=values)


def close(got, want, scale=None, rtol: float = 1e-12):
    """|got - want| <= rtol * (|want| + scale): scale is the size of the terms in ``want``."""
    got, want = np.asarray(got, float), np.asarray(want, float)
    bound = rtol * (np.abs(want) + (0.0 if scale is None else np.asarray(scale)))
    assert np.all(np.abs(got - want) <= bound), f"got {got}, want {want}"


# --- analytic functions: k-th derivative by hand --------------------------------------------


def exp_d(x, k):
    return np.exp(x)


def log_d(x, k):
    return (-1) ** (k - 1) * math.factorial(k - 1) / x**k


def power_d(p):
    def d(x, k):
        falling = np.prod([p - j for j in range(k)])
        return 0.0 * x if falling == 0 else falling * x ** (p - k)

    return d


def sin_d(x, k):
    return [np.cos(x), -np.sin(x), -np.cos(x), np.sin(x)][k - 1]


def cos_d(x, k):
    return [-np.sin(x), -np.cos(x), np.sin(x), np.cos(x)][k - 1]


def sinh_d(x, k):
    return np.cosh(x) if k % 2 else np.sinh(x)


def cosh_d(x, k):
    return np.sinh(x) if k % 2 else np.cosh(x)


def tan_d(x, k):
    t = np.tan(x)
    s = 1 + t * t
    return [s, 2 * t * s, s * (2 + 6 * t * t), s * (16 * t + 24 * t**3)][k - 1]


def tanh_d(x, k):
    t = np.tanh(x)
    s = 1 / np.cosh(x) ** 2  # 1 - t^2 without cancellation
    return [s, -2 * t * s, s * (-2 + 6 * t * t), s * (16 * t - 24 * t**3)][k - 1]


def arctan_d(x, k):
    q = 1 + x * x
    return [1 / q, -2 * x / q**2, (6 * x * x - 2) / q**3, 24 * x * (1 - x * x) / q**4][k - 1]


def sigmoid_d(x, k):
    s, r = 1 / (1 + np.exp(-x)), 1 / (1 + np.exp(x))  # r = 1 - s without cancellation
    d = s * r
    return [d, d * (r - s), d * (1 - 6 * d), d * (r - s) * (1 - 12 * d)][k - 1]


def softplus_d(x, k):
    return 1 / (1 + np.exp(-x)) if k == 1 else sigmoid_d(x, k - 1)


def erf_d(x, k):
    """2/sqrt(pi) (-1)^(k-1) H_{k-1}(x) exp(-x^2), Hermite polynomials written out."""
    hermite = [1.0, 2 * x, 4 * x * x - 2, 8 * x**3 - 12 * x][k - 1]
    return 2 / np.sqrt(np.pi) * (-1) ** (k - 1) * hermite * np.exp(-x * x)


# name: (function, k-th derivative, domain, size of the terms (for near-zero derivatives))
ANALYTIC = {
    "exp": (mc.exp, exp_d, (-5.0, 5.0), lambda x: np.exp(x)),
    "log": (mc.log, log_d, (0.1, 10.0), None),
    "sqrt": (mc.sqrt, power_d(0.5), (0.1, 10.0), None),
    "power_2.5": (lambda t: mc.power(t, 2.5), power_d(2.5), (0.1, 5.0), lambda x: x**2.5),
    "power_-1.5": (lambda t: t**-1.5, power_d(-1.5), (0.1, 5.0), None),
    "power_3": (lambda t: t**3, power_d(3), (-3.0, 3.0), lambda x: 1 + np.abs(x) ** 3),
    "sin": (mc.sin, sin_d, (-6.0, 6.0), lambda x: 1.0),
    "cos": (mc.cos, cos_d, (-6.0, 6.0), lambda x: 1.0),
    "tan": (mc.tan, tan_d, (-1.4, 1.4), lambda x: (1 + np.tan(x) ** 2) ** 3),
    "sinh": (mc.sinh, sinh_d, (-5.0, 5.0), lambda x: np.cosh(x)),
    "cosh": (mc.cosh, cosh_d, (-5.0, 5.0), lambda x: np.cosh(x)),
    "tanh": (mc.tanh, tanh_d, (-8.0, 8.0), lambda x: 1 - np.tanh(x) ** 2),
    "arctan": (mc.arctan, arctan_d, (-5.0, 5.0), lambda x: 1 / (1 + x * x)),
    "sigmoid": (mc.sigmoid, sigmoid_d, (-20.0, 20.0), lambda x: sigmoid_d(x, 1)),
    "softplus": (mc.softplus, softplus_d, (-20.0, 20.0), lambda x: sigmoid_d(x, 1)),
    "erf": (mc.erf, erf_d, (-4.0, 4.0), lambda x: (1 + np.abs(x) ** 3) * np.exp(-x * x)),
}


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("name", sorted(ANALYTIC))
@given(data=st.data())
def test_analytic_derivatives_match_hand_formulas(name, order, data):
    fn, derivative, (lo, hi), size = ANALYTIC[name]
    x = data.draw(points(lo, hi))
    scale = None if size is None else size(x)
    close(mc.derivative(fn, x, order), derivative(x, order), scale, rtol=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("name", sorted(ANALYTIC))
@given(data=st.data())
def test_float32_derivatives_match_hand_formulas(name, order, data):
    """float32 points: float32 results within float32 roundoff of the float64 formula at the
    same (float32) points, over the same domains as float64 (no step to keep clear of 0)."""
    fn, derivative, (lo, hi), size = ANALYTIC[name]
    x = data.draw(points(lo, hi)).astype(np.float32)
    wide = x.astype(np.float64)
    got = mc.derivative(fn, x, order)
    assert got.dtype == np.float32
    scale = np.abs(derivative(wide, order)) + (0.0 if size is None else size(wide))
    close(got, derivative(wide, order), scale, rtol=2e-5)


def test_order_zero_derivative_is_the_value():
    x = np.array([0.3, -1.2])
    np.testing.assert_allclose(mc.derivative(mc.tanh, x, 0), np.tanh(x), rtol=1e-15)


def test_erf_derivatives_match_mpmath():
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 50
    for x in [-2.3, -0.4, 0.0, 0.7, 1.9]:
        for k in ORDERS:
            want = float(mpmath.diff(mpmath.erf, mpmath.mpf(x), k))
            close(mc.derivative(mc.erf, x, k), want, scale=np.exp(-x * x), rtol=1e-12)


def test_power_with_tensor_exponent_differentiates_both_ways():
    x = np.array([0.5, 1.3, 2.0])
    # d/dx x**p at fixed tensor p, and d/dp a**p at fixed base a
    p = mc.tensor(np.array([1.7, -0.3, 2.2]))
    for k in ORDERS:
        close(
            mc.derivative(lambda t: mc.power(t, p), x, k),
            [power_d(pi)(xi, k) for xi, pi in zip(x, p.real)],
            rtol=1e-12,
        )
        close(
            mc.derivative(lambda t: mc.power(2.5, t), x, k), np.log(2.5) ** k * 2.5**x, rtol=1e-12
        )


# --- branching functions: the chosen branch's derivative, and the documented ties ---------


@pytest.mark.parametrize("order", ORDERS)
@given(x=points(-5.0, 5.0, away_from=0.0))
def test_relu_elu_abs_follow_the_branch(order, x):
    positive = x > 0
    want_relu = np.where(positive, 1.0 if order == 1 else 0.0, 0.0)
    np.testing.assert_array_equal(mc.derivative(mc.relu, x, order), want_relu)
    want_elu = np.where(positive, 1.0 if order == 1 else 0.0, 0.7 * np.exp(x))
    close(mc.derivative(lambda t: mc.elu(t, alpha=0.7), x, order), want_elu, rtol=1e-13)
    want_abs = np.where(positive, 1.0, -1.0) if order == 1 else np.zeros(4)
    np.testing.assert_array_equal(mc.derivative(mc.abs, x, order), want_abs)


def test_branching_ties_follow_the_documented_rule():
    zero = np.zeros(2)
    # relu and elu take the x <= 0 branch at 0; abs takes +x
    np.testing.assert_array_equal(mc.derivative(mc.relu, zero, 1), [0.0, 0.0])
    np.testing.assert_array_equal(mc.derivative(mc.elu, zero, 1), [1.0, 1.0])  # alpha e^0
    np.testing.assert_array_equal(mc.derivative(lambda t: mc.elu(t, 2.0), zero, 2), [2.0, 2.0])
    np.testing.assert_array_equal(mc.derivative(mc.abs, zero, 1), [1.0, 1.0])
    # maximum/minimum: ties give the first operand; clip keeps x at a bound
    np.testing.assert_array_equal(mc.derivative(lambda t: mc.maximum(t, 0.0), zero, 1), [1, 1])
    np.testing.assert_array_equal(mc.derivative(lambda t: mc.maximum(0.0, t), zero, 1), [0, 0])
    np.testing.assert_array_equal(mc.derivative(lambda t: mc.minimum(t, 0.0), zero, 1), [1, 1])
    np.testing.assert_array_equal(mc.derivative(lambda t: mc.minimum(0.0, t), zero, 1), [0, 0])
    bounds = np.array([-1.0, 1.0])
    np.testing.assert_array_equal(
        mc.derivative(lambda t: mc.clip(t, -1.0, 1.0), bounds, 1), [1.0, 1.0]
    )
    # max: the first of equal real parts carries its imaginary parts
    v = np.array([1.0, 0.0, 0.0])
    assert mc.directional(mc.max, np.array([2.0, 2.0, 1.0]), [v]) == 1.0
    assert mc.directional(mc.max, np.array([2.0, 2.0, 1.0]), [v[::-1]]) == 0.0


def test_branches_decide_on_real_parts_not_imaginary():
    # equal real parts, imaginary parts ordered the other way: numpy's lexicographic
    # maximum would pick y; the rule picks the first operand
    x = mc.from_parts(np.array([[1.0], [0.0]]))
    y = mc.from_parts(np.array([[1.0], [5.0]]))
    assert mc.maximum(x, y).parts[1, 0] == 0.0
    assert mc.max(mc.concatenate([x, y])).parts[1] == 0.0


@pytest.mark.parametrize("order", ORDERS)
@given(x=points(-3.0, 3.0, away_from=0.5), y=points(-3.0, 3.0))
def test_maximum_minimum_where_clip(order, x, y):
    assume(np.all(np.abs(x - 0.5 * y) > 1e-3))
    other = 0.5 * y  # a NumPy array mixing in as a constant operand
    # maximum(t, c): derivative of t where t > c, 0 elsewhere
    first = 1.0 if order == 1 else 0.0
    np.testing.assert_array_equal(
        mc.derivative(lambda t: mc.maximum(t, other), x, order), np.where(x > other, first, 0.0)
    )
    np.testing.assert_array_equal(
        mc.derivative(lambda t: mc.minimum(t, other), x, order), np.where(x < other, first, 0.0)
    )
    # maximum of two functions of t: the larger one's derivative
    want = np.where(np.sin(x) >= np.exp(0.2 * x), sin_d(x, order), 0.2**order * np.exp(0.2 * x))
    close(
        mc.derivative(lambda t: mc.maximum(mc.sin(t), mc.exp(0.2 * t)), x, order),
        want,
        scale=1.0,
        rtol=1e-13,
    )
    want = np.where(x > 0.5, np.exp(x), sin_d(x, order))
    close(
        mc.derivative(lambda t: mc.where(t > 0.5, mc.exp(t), mc.sin(t)), x, order),
        want,
        scale=1.0,
        rtol=1e-13,
    )
    inside = (x >= -1.0) & (x <= 0.5)  # at a bound x itself is kept
    np.testing.assert_array_equal(
        mc.derivative(lambda t: mc.clip(t, -1.0, 0.5), x, order), np.where(inside, first, 0.0)
    )


# --- reductions: derivatives along v are the cumulants of v under softmax(x) ---------------


def cumulants(x, v, axis=-1):
    """kappa_1..4 of v under p = softmax(x): d^k/dt^k logsumexp(x + t v) at t = 0."""
    p = np.exp(x - x.max(axis=axis, keepdims=True))
    p /= p.sum(axis=axis, keepdims=True)
    mean = (p * v).sum(axis=axis, keepdims=True)
    c = v - mean

    def moment(k):
        return (p * c**k).sum(axis=axis)

    return [mean.squeeze(axis), moment(2), moment(3), moment(4) - 3 * moment(2) ** 2]


@pytest.mark.parametrize("order", ORDERS)
@given(data=st.data())
def test_logsumexp_and_log_softmax_derivatives_are_cumulants(order, data):
    x = data.draw(hnp.arrays(np.float64, (3, 5), elements=st.floats(-30.0, 30.0)))
    v = data.draw(hnp.arrays(np.float64, (3, 5), elements=st.floats(-1.0, 1.0)))
    kappa = cumulants(x, v)[order - 1]
    # directional scales v as a whole: entries far below max |v| carry only their share
    scale = np.abs(v).max() ** order + 1e-300
    close(mc.directional(lambda t: mc.logsumexp(t, axis=-1), x, [v] * order), kappa, scale)
    want = (v - kappa[:, None]) if order == 1 else -np.broadcast_to(kappa[:, None], x.shape)
    got = mc.directional(lambda t: mc.log_softmax(t, axis=-1), x, [v] * order)
    assert got.shape == x.shape
    close(got, want, scale)
    # along axis 0 as well
    kappa0 = cumulants(x, v, axis=0)[order - 1]
    got0 = mc.directional(lambda t: mc.logsumexp(t, axis=0), x, [v] * order)
    close(got0, kappa0, scale)


def test_logsumexp_mixed_second_derivative_is_softmax_covariance():
    x = np.array([0.3, -1.0, 2.0, 0.5])
    u, v = np.array([1.0, 0.0, -2.0, 0.5]), np.array([0.2, 1.0, 0.3, -1.0])
    p = np.exp(x) / np.exp(x).sum()
    want = (p * u * v).sum() - (p * u).sum() * (p * v).sum()
    close(mc.directional(mc.logsumexp, x, [u, v]), want, 1.0)


def test_logsumexp_does_not_overflow():
    x = np.array([1000.0, 999.0, -1000.0])
    v = np.array([1.0, 0.0, 0.0])
    p = 1 / (1 + np.exp(-1.0))
    close(mc.directional(mc.logsumexp, x, [v, v]), p * (1 - p), 1.0)


@pytest.mark.parametrize("order", ORDERS)
@given(
    x=hnp.arrays(np.float64, (4, 3), elements=st.floats(-5, 5), unique=True),
    v=hnp.arrays(np.float64, (4, 3), elements=st.floats(-1, 1)),
)
def test_max_carries_the_argmax_element(order, x, v):
    index = np.argmax(x, axis=1)
    want = v[np.arange(4), index] if order == 1 else np.zeros(4)
    got = mc.directional(lambda t: mc.max(t, axis=1), x, [v] * order)
    close(got, want, scale=np.abs(v).max() ** order)  # entries << max |v| may underflow
    got = mc.directional(lambda t: mc.max(t, axis=1, keepdims=True), x, [v] * order)
    assert got.shape == (4, 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(x=st.floats(-30, 30), scale=st.sampled_from([2.0**-40, 2.0**-20, 0.5, 3.0]))
def test_complex_tanh_matches_mpmath_on_both_branches(dtype, x, scale):
    """tanh of order-1 data on the CPU (the NumPy + Numba path): the derivative branch (tiny
    imaginary part) and the exact one, against mpmath's complex tanh to a few ulps."""
    import mpmath

    z = np.array([complex(x, scale * (1 + abs(x)) / 7)], dtype=_complex(dtype))
    got = mc.tanh(mc.from_parts(np.stack([z.real, z.imag]))).parts
    with mpmath.workprec(120):
        want = complex(mpmath.tanh(mpmath.mpc(float(z[0].real), float(z[0].imag))))
    tiny = np.finfo(dtype).tiny
    for part, expected in zip(got[:, 0], (want.real, want.imag)):
        if abs(expected) >= tiny:  # a subnormal result has fewer bits than the format's
            assert abs(part - expected) <= 8 * np.finfo(dtype).eps * abs(expected)


def _complex(dtype):
    return np.complex64 if dtype == np.float32 else np.complex128


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(x=st.floats(-90, 90), y=st.sampled_from([0.0, 2.0**-40, 2.0**-30]))
def test_softplus_on_the_cpu_matches_mpmath_to_a_few_ulps(dtype, x, y):
    """softplus of real and complex data on the CPU (``loops.softplus``: log1p(e) as
    log(u) e / (u - 1)), far into both tails, where log(1 + e) alone keeps no digit of the
    tail: the value and, for a tiny imaginary part, y sigmoid(x), against mpmath."""
    import mpmath

    z = complex(x, y * (1 + abs(x)))
    data = np.array([z.real], dtype) if y == 0 else np.array([z], _complex(dtype))
    got = mc.softplus(mc.Tensor(np.broadcast_to(data, (1, 2048)).copy())).data[0, -1]
    z = complex(data[0])  # as rounded to dtype
    with mpmath.workprec(120):
        want = complex(mpmath.log1p(mpmath.exp(mpmath.mpc(z.real, z.imag))))
    for part, expected in ((complex(got).real, want.real), (complex(got).imag, want.imag)):
        if abs(expected) >= np.finfo(dtype).tiny:
            assert abs(part - expected) <= 8 * np.finfo(dtype).eps * abs(expected)


_EXP_EDGES = {  # the overflow and underflow edges of each precision
    np.float64: (-750.0, 750.0, [709.78, 709.79, -745.13, -745.14, -708.4]),
    np.float32: (-110.0, 95.0, [88.72, 88.73, -103.27, -103.28, -87.3]),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(data=st.data())
def test_exp_loop_is_within_one_ulp_of_mpmath(dtype, data):
    """``loops.exp_in_place`` (the sigmoid's, tanh's and softplus's exp: a polynomial and
    exponent bits instead of NumPy's ufunc), over the whole range, at the overflow and
    underflow edges and in the subnormals, in the vectorised body and the remainder."""
    import mpmath

    from mcnet.algebra import loops

    low, high, edges = _EXP_EDGES[dtype]
    x = data.draw(st.one_of(st.floats(low, high), st.sampled_from(edges)))
    rounded = float(dtype(x))
    got = loops.exp_in_place(np.full(1500, rounded, dtype=dtype))  # whole vectors and a remainder
    with mpmath.workprec(120):
        exact = mpmath.exp(mpmath.mpf(rounded))
        want = dtype(float(exact))
    assert np.all(got == got[0])
    if want == 0 or np.isinf(want):
        assert got[0] == want
    else:
        assert abs(mpmath.mpf(float(got[0])) - exact) <= float(np.spacing(want))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(data=st.data())
def test_expm1_loop_is_within_ulps_of_mpmath(dtype, data):
    """``loops.exp_and_expm1`` (the order-2 sigmoid's and the complex tanh's expm1: a
    polynomial below |x| = 1, e - 1 above) at tiny, moderate and overflowing x and at the
    switch |x| = 1, every element of a vectorised loop's body and remainder checked (the
    order-2 sigmoid and the complex tanh inline the same scalar expm1)."""
    import mpmath

    from mcnet.algebra import loops

    low, high, _ = _EXP_EDGES[dtype]
    tiny = st.builds(lambda m, k: m * 10.0**k, st.floats(-1, 1), st.integers(-40, 0))
    switch = st.sampled_from([1.0, -1.0, float(np.nextafter(dtype(1), dtype(0))),
                              -float(np.nextafter(dtype(1), dtype(0)))])  # fmt: skip
    value = st.one_of(st.floats(low, high), st.floats(-3, 3), tiny, switch)
    values = data.draw(st.lists(value, min_size=1, max_size=40))
    x = np.resize(np.array(values, dtype=dtype), 1500)  # whole vectors and a remainder
    e, em1 = loops.exp_and_expm1(x.copy())
    for got, rounded in zip(em1[: len(values)], x[: len(values)]):
        with mpmath.workprec(120), np.errstate(over="ignore"):
            exact = mpmath.expm1(mpmath.mpf(float(rounded)))
            want = dtype(float(exact))
        if want == 0 or np.isinf(want):
            assert got == want
        else:
            assert abs(mpmath.mpf(float(got)) - exact) <= 1.5 * float(np.spacing(abs(want)))
    np.testing.assert_array_equal(e, loops.exp_in_place(x.copy()))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exp_loop_keeps_nan_and_infinities(dtype):
    from mcnet.algebra import loops

    got = loops.exp_in_place(np.array([np.nan, np.inf, -np.inf, 0.0, -0.0], dtype=dtype))
    assert np.isnan(got[0]) and list(got[1:]) == [np.inf, 0.0, 1.0, 1.0]
    _, em1 = loops.exp_and_expm1(np.array([np.nan, np.inf, -np.inf, 0.0, -0.0], dtype=dtype))
    assert np.isnan(em1[0]) and list(em1[1:]) == [np.inf, -1.0, 0.0, 0.0]
    assert np.signbit(em1[4])
