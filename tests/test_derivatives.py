"""mc.perturb / mc.directional / mc.derivative: closed forms for vector functions, step
robustness, float32, direction scaling, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import mcnet as mc

# --- f(x) = sum sin(A x): every derivative written out by hand ------------------------------

M, N = 5, 4
MATRIX = np.random.default_rng(7).normal(size=(M, N)) / 2


def sum_sin(x):
    return mc.sin(x @ MATRIX.T).sum()


vectors = hnp.arrays(np.float64, N, elements=st.floats(-2.0, 2.0))
unit_vectors = hnp.arrays(np.float64, N, elements=st.floats(-1.0, 1.0))


def close(got, want, scale, rtol=1e-12):
    assert np.all(np.abs(np.asarray(got) - want) <= rtol * scale), (got, want)


@given(x=vectors, u=unit_vectors, v=unit_vectors, w=unit_vectors)
def test_sum_sin_derivatives_match_closed_forms(x, u, v, w):
    ax, au, av, aw = MATRIX @ x, MATRIX @ u, MATRIX @ v, MATRIX @ w
    scale = np.abs(MATRIX).sum()  # bounds every term below: |A u|_i <= sum_j |A_ij|
    gradient = MATRIX.T @ np.cos(ax)
    for j in range(N):
        e = np.eye(N)[j]
        close(mc.directional(sum_sin, x, [e]), gradient[j], scale)
    close(mc.directional(sum_sin, x, [v]), gradient @ v, scale)
    close(mc.directional(sum_sin, x, [u, v]), np.sum(-np.sin(ax) * au * av), scale * 4)
    close(mc.directional(sum_sin, x, [v] * 3), np.sum(-np.cos(ax) * av**3), scale * 8)
    close(mc.directional(sum_sin, x, [v] * 4), np.sum(np.sin(ax) * av**4), scale * 16)
    close(mc.directional(sum_sin, x, [u, v, w]), np.sum(-np.cos(ax) * au * av * aw), scale * 8)


@given(x=vectors, u=unit_vectors, v=unit_vectors)
def test_mixed_derivatives_are_symmetric_and_multilinear(x, u, v):
    uv = mc.directional(sum_sin, x, [u, v])
    close(mc.directional(sum_sin, x, [v, u]), uv, 10.0)
    close(mc.directional(sum_sin, x, [3.0 * u, v]), 3.0 * uv, 30.0)
    close(mc.directional(sum_sin, x, [u + v, v]), uv + mc.directional(sum_sin, x, [v, v]), 20.0)


def test_hessian_by_directions_matches_closed_form():
    x = np.array([0.3, -0.7, 1.1, 0.2])
    eye = np.eye(N)
    hessian = np.array(
        [[mc.directional(sum_sin, x, [eye[i], eye[j]]) for j in range(N)] for i in range(N)]
    )
    want = -MATRIX.T @ np.diag(np.sin(MATRIX @ x)) @ MATRIX
    np.testing.assert_allclose(hessian, want, rtol=0, atol=1e-13)


def test_array_valued_function_keeps_its_output_shape():
    x = np.linspace(-1.0, 1.0, 6).reshape(2, 3)
    v = np.ones((2, 3))

    def f(t):
        return mc.exp(t) * mc.sin(t)  # elementwise, shape (2, 3)

    got = mc.directional(f, x, [v, v])
    assert got.shape == (2, 3)
    np.testing.assert_allclose(got, 2 * np.exp(x) * np.cos(x), rtol=1e-13)
    # a function to a different shape: row sums
    got = mc.directional(lambda t: (t * t).sum(axis=1), x, [v])
    assert got.shape == (2,)
    np.testing.assert_allclose(got, 2 * x.sum(axis=1), rtol=1e-13, atol=1e-15)
    # a scalar function gives a float
    assert isinstance(mc.directional(lambda t: (t * t).sum(), x, [v]), float)


def test_derivative_of_elementwise_function_at_scalar_and_array():
    assert isinstance(mc.derivative(mc.sin, 0.5, 2), float)
    np.testing.assert_allclose(mc.derivative(mc.sin, 0.5, 2), -np.sin(0.5), rtol=1e-15)
    x = np.array([[0.1, 0.2], [0.3, 0.4]])
    third = mc.derivative(mc.sin, x, 3)
    assert third.shape == (2, 2)
    np.testing.assert_allclose(third, -np.cos(x), rtol=1e-15)
    # an elementwise composition: d^3/dx^3 exp(x) sin(x) = 2 e^x (cos x - sin x)
    np.testing.assert_allclose(
        mc.derivative(lambda t: mc.exp(t) * mc.sin(t), x, 3),
        2 * np.exp(x) * (np.cos(x) - np.sin(x)),
        rtol=1e-14,
    )


def test_perturb_layout():
    x = np.array([1.0, 2.0])
    u, v = np.array([1.0, -1.0]), np.array([0.5, 3.0])
    t = mc.perturb(x, [u, v], 0.25)
    assert t.order == 2
    np.testing.assert_array_equal(t.parts, [x, 0.25 * u, 0.25 * v, [0.0, 0.0]])
    np.testing.assert_array_equal(mc.perturb(x, [], 0.25).parts, [x])


def test_perturb_into_a_buffer_overwrites_it_whole():
    x = np.array([1.0, 2.0])
    u, v = np.array([1.0, -1.0]), np.array([0.5, 3.0])
    buffer = np.full((2, 2), np.nan + 1j * np.nan)  # stale contents must not survive
    t = mc.perturb(x, [u, v], 0.25, out=buffer)
    assert np.shares_memory(t.data, buffer)
    np.testing.assert_array_equal(t.parts, [x, 0.25 * u, 0.25 * v, [0.0, 0.0]])
    one = mc.perturb(x, [u], 0.5, out=np.full((1, 2), np.nan, dtype=complex))
    np.testing.assert_array_equal(one.parts, [x, 0.5 * u])
    with pytest.raises(ValueError, match=r"shape \(2, 2\) and dtype complex128, got ndarray"):
        mc.perturb(x, [u, v], 0.25, out=np.zeros((1, 2), dtype=complex))
    with pytest.raises(ValueError, match="complex128"):
        mc.perturb(x, [u, v], 0.25, out=np.zeros((2, 2), dtype=np.complex64))
    with pytest.raises(ValueError, match="general layout"):
        mc.perturb(x, [u, u], 0.25, out=np.zeros((2, 2), dtype=complex))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(
    shape=st.tuples(st.integers(1, 9), st.integers(1, 9)),
    transposed=st.booleans(),
    special=st.sampled_from([None, np.nan, np.inf, -0.0, 1e-41]),
    seed=st.integers(0, 2**32 - 1),
)
def test_order_one_perturb_is_numpys_complex_point(dtype, shape, transposed, special, seed):
    """x + i h v of order 1 (one Numba pass where the arrays are contiguous, two NumPy
    writes where they are not) against NumPy's parts x and ``v * h``, bit for bit, with
    non-finite, signed-zero and subnormal entries."""
    rng = np.random.default_rng(seed)
    x, v = rng.standard_normal((2, *shape)).astype(dtype)
    if special is not None:
        x[0, 0], v[-1, -1] = special, special
    if transposed:
        x, v = x.T, v.T
    h = 2.0**-24
    want = np.empty(x.shape, dtype=np.complex128)  # x + 1j * inf would put NaN in the real part
    want.real, want.imag = x, v * dtype(h)
    got = mc.perturb(x, [v], h).data[0]
    assert got.dtype == np.result_type(dtype, np.complex64)
    np.testing.assert_array_equal(got.real, want.real)
    np.testing.assert_array_equal(got.imag, want.imag)
    assert np.array_equal(np.signbit(got.real), np.signbit(want.real))


# --- step robustness (the seed's Fig. 1) ---------------------------------------------------


def squire_trapp(t):
    return mc.exp(t) / mc.sqrt(mc.sin(t) ** 3 + mc.cos(t) ** 3)


def squire_trapp_first(x):
    """f' = f (1 - g'/(2g)), g = sin^3 + cos^3: written out by hand."""
    s, c = np.sin(x), np.cos(x)
    g = s**3 + c**3
    return np.exp(x) / np.sqrt(g) * (1 - (3 * s * s * c - 3 * c * c * s) / (2 * g))


def test_complex_step_first_derivative_is_exact_for_every_small_step():
    x = 1.5
    exact = squire_trapp_first(x)
    for exponent in range(8, 201, 4):
        h = 10.0**-exponent
        got = mc.derivatives.multicomplex_step(squire_trapp, x, [1.0], h=h)
        assert abs(got - exact) <= 4e-16 * abs(exact), (h, got, exact)
    # large steps: the O(h^2) truncation error is visible and shrinks as h^2
    errors = [
        abs(mc.derivatives.multicomplex_step(squire_trapp, x, [1.0], h=h) - exact)
        for h in (1e-2, 1e-3)
    ]
    assert errors[0] > 1e-6 and 50 < errors[0] / errors[1] < 200


def test_derivative_is_exact_for_every_user_step():
    """The Taylor mode has no truncation error: h only scales, from 1e-300 to 1e-2."""
    x = 1.5
    exact = squire_trapp_first(x)
    for exponent in (2, 3, 8, 40, 100, 160, 200, 250, 300):
        got = mc.derivative(squire_trapp, x, 1, h=10.0**-exponent)
        assert abs(got - exact) <= 8e-16 * abs(exact), (exponent, got, exact)


def test_bicomplex_step_second_derivative_is_exact_down_to_1e_100():
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 50
    x = 1.5
    exact = float(
        mpmath.diff(
            lambda t: mpmath.exp(t) / mpmath.sqrt(mpmath.sin(t) ** 3 + mpmath.cos(t) ** 3), x, 2
        )
    )
    for exponent in [5, 6, 7] + list(range(8, 101, 4)):
        h = 10.0**-exponent
        got = mc.derivative(squire_trapp, x, 2, h=h)
        # relative error: O(h^2) truncation (no cancellation), then roundoff only
        assert abs(got - exact) <= max(4e-16, 10 * h * h) * abs(exact), (h, got, exact)


def test_default_steps_are_powers_of_two():
    for dtype in (np.float32, np.float64):
        for order in (1, 2, 3, 4, 8):
            h = mc.default_step(dtype, order)
            assert np.log2(h) == int(np.log2(h))
            # h**k stays a normal number
            assert h**order >= np.finfo(dtype).tiny


# --- float32 and direction scales ---------------------------------------------------------


@pytest.mark.parametrize("order", [1, 2])
def test_float32_default_step(order):
    x64 = np.array([0.3, -1.2, 2.5, 0.05])
    x32 = x64.astype(np.float32)
    formulas = {
        mc.tanh: [1 / np.cosh(x64) ** 2, -2 * np.tanh(x64) / np.cosh(x64) ** 2][order - 1],
        mc.sin: [np.cos(x64), -np.sin(x64)][order - 1],
        mc.exp: np.exp(x64),
        mc.sigmoid: [
            np.exp(-x64) / (1 + np.exp(-x64)) ** 2,
            np.exp(-x64) * (np.exp(-x64) - 1) / (1 + np.exp(-x64)) ** 3,
        ][order - 1],
    }
    for fn, want in formulas.items():
        got = mc.derivative(fn, x32, order)
        assert got.dtype == np.float32
        assert np.all(got != 0)
        scale = np.abs(want) + 1e-2 * np.abs(want).max()
        assert np.all(np.abs(got - want) <= 1e-5 * scale), (fn, got, want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("size", [1e-30, 1e30])
def test_directions_of_extreme_scale(dtype, size):
    x = np.array([0.3, -0.5, 0.9], dtype=dtype)
    v = np.array([1.0, -0.5, 0.25]) * size
    u = np.array([0.5, 1.0, -1.0])
    av = np.asarray(v, dtype=dtype).astype(np.float64)
    x64 = x.astype(np.float64)
    rtol = 1e-5 if dtype == np.float32 else 1e-13
    got = mc.directional(lambda t: mc.sin(t).sum(), x, [np.asarray(v, dtype=dtype)])
    np.testing.assert_allclose(got, np.sum(np.cos(x64) * av), rtol=rtol)
    got = mc.directional(lambda t: mc.sin(t).sum(), x, [np.asarray(v, dtype=dtype), u])
    np.testing.assert_allclose(got, np.sum(-np.sin(x64) * av * u), rtol=rtol)
    with np.errstate(over="ignore"):
        got = mc.directional(lambda t: mc.sin(t).sum(), x, [np.asarray(v, dtype=dtype)] * 2)
    want = np.sum(-np.sin(x64) * av**2)  # 1e+-60: outside float32's range
    if dtype == np.float64:
        np.testing.assert_allclose(got, want, rtol=rtol)
    else:
        assert got == (-np.inf if size > 1 else 0.0)


def test_zero_direction_gives_zero():
    x = np.array([0.3, 0.4])
    assert mc.directional(lambda t: mc.exp(t).sum(), x, [np.zeros(2)]) == 0.0


# --- bad input ------------------------------------------------------------------------------


def test_shape_mismatch_names_both_shapes():
    a, b = mc.tensor(np.ones(2)), mc.tensor(np.ones(3))
    with pytest.raises(ValueError, match=r"\(2,\).*\(3,\)"):
        a + b
    with pytest.raises(ValueError, match=r"\(2,\).*\(3,\)"):
        mc.from_parts(np.ones((4, 2))) * b
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(2, 3\)"):
        mc.tensor(np.ones((2, 3))) @ mc.tensor(np.ones((2, 3)))


def test_direction_of_wrong_shape():
    x = np.zeros(3)
    with pytest.raises(ValueError, match=r"shape \(2,\).*\(3,\)"):
        mc.perturb(x, [np.ones(2)], 1e-3)
    with pytest.raises(ValueError, match=r"direction 1 has shape \(3, 1\)"):
        mc.directional(lambda t: t.sum(), x, [np.ones(3), np.ones((3, 1))])


def test_order_too_large_for_memory_says_how_many_bytes():
    with pytest.raises(MemoryError, match="bytes"):
        mc.perturb(np.zeros(10**6), [np.ones(10**6)] * 30, 1e-3)


def test_perturb_needs_a_real_point():
    with pytest.raises(ValueError, match="order-1"):
        mc.perturb(mc.from_parts(np.ones((2, 3))), [np.ones(3)], 1e-3)


def test_bad_orders_and_dtypes():
    with pytest.raises(ValueError, match="order"):
        mc.derivative(mc.sin, 0.5, order=-1)
    with pytest.raises(TypeError, match="float32 or float64"):
        mc.default_step(np.int32, 1)
    with pytest.raises(ValueError, match="order must be >= 1"):
        mc.default_step(np.float64, 0)


NAN_FUNCTIONS = [
    mc.exp,
    mc.log,
    mc.sqrt,
    mc.sin,
    mc.tanh,
    mc.sigmoid,
    mc.softplus,
    mc.erf,
    mc.arctan,
    mc.relu,
    mc.elu,
    mc.abs,
    lambda t: mc.maximum(t, 0.0),
    lambda t: mc.maximum(0.0, t),
    lambda t: mc.minimum(t, 0.0),
    lambda t: mc.minimum(0.0, t),
    lambda t: mc.clip(t, -0.5, 0.5),
    lambda t: t * t,
    lambda t: 1 / t,
    lambda t: t**2.5,
]


@pytest.mark.parametrize("fn", NAN_FUNCTIONS)
@pytest.mark.parametrize("order", [0, 1, 2])
def test_nan_propagates_to_the_affected_elements_only(fn, order):
    x = np.array([0.5, np.nan, 2.0])
    with np.errstate(invalid="ignore"):
        y = fn(mc.perturb(x, [np.ones(3)] * order, 2.0**-20))
    parts = y.parts
    assert np.isnan(parts[0, 1]), parts  # the value is NaN (a branch may keep finite steps)
    assert np.all(np.isfinite(parts[:, [0, 2]]))


def test_nan_propagates_through_reductions_and_derivatives():
    x = np.array([[0.5, np.nan, 2.0], [0.1, 0.2, 0.3]])
    with np.errstate(invalid="ignore"):
        for fn in (lambda t: mc.logsumexp(t, axis=1), lambda t: mc.max(t, axis=1)):
            value = fn(mc.tensor(x)).real
            assert np.isnan(value[0]) and np.isfinite(value[1])
        d = mc.derivative(mc.tanh, x, 2)
    assert np.isnan(d[0, 1]) and np.isfinite(np.delete(d.ravel(), 1)).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_subnormal_direction(dtype):
    """A direction of subnormal size: rescaling it must not overflow the scale factor."""
    x = np.array([0.3, -0.5], dtype=dtype)
    v = np.array([1.0, 0.5], dtype=dtype) * np.finfo(dtype).smallest_subnormal * 8
    want = np.cos(x.astype(float)) @ v.astype(float)
    got = mc.directional(lambda t: mc.sin(t).sum(), x, [v])
    assert got == pytest.approx(want, rel=1e-5 if dtype == np.float32 else 1e-13)


# --- bad input: a clear error or the mathematically right value ---------------------------


def test_order_must_be_an_integer():
    for order in (2.5, 2.0, "2", True):
        with pytest.raises(TypeError, match="order must be an integer"):
            mc.derivative(mc.sin, 0.5, order=order)
    assert mc.derivative(mc.sin, 0.5, order=np.int64(2)) == pytest.approx(-np.sin(0.5), rel=1e-15)


@pytest.mark.parametrize("h", [0, 0.0, -1e-3, np.inf, np.nan])
def test_step_must_be_a_positive_finite_number(h):
    with pytest.raises(ValueError, match="h must be a positive finite number"):
        mc.derivative(mc.sin, 0.5, order=1, h=h)
    with pytest.raises(ValueError, match="h must be a positive finite number"):
        mc.directional(lambda t: mc.sin(t).sum(), np.ones(2), [np.ones(2)] * 2, h=h)
    with pytest.raises(TypeError, match="h must be a positive finite number"):
        mc.derivative(mc.sin, 0.5, h="1e-3")


def test_derivatives_at_singular_points_are_infinite_or_nan():
    """log at 0: 1/x, -1/x^2, 2/x^3 -> +inf, -inf, +inf (not arctan(h/0)/h = 4e120); 1/x at 0:
    -1/x^2 -> -inf; log at -1 is undefined for reals: NaN, not pi/h."""
    with np.errstate(all="ignore"):
        assert mc.derivative(mc.log, 0.0) == np.inf
        assert mc.derivative(mc.log, 0.0, order=2) == -np.inf
        assert mc.derivative(mc.log, 0.0, order=3) == np.inf
        assert mc.derivative(lambda t: 1 / t, 0.0) == -np.inf
        assert np.isnan(mc.derivative(mc.log, -1.0))
        got = mc.derivative(mc.log, np.array([0.0, 2.0, -1.0]))
    assert got[0] == np.inf and got[1] == 0.5 and np.isnan(got[2])


@pytest.mark.parametrize("size", [1, 5000])  # the per-array recursion and the fused kernels
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_overflowing_derivatives_are_infinite_at_every_order(size, dtype):
    """exp(800) overflows float64 (exp(100) float32): every derivative is +inf, as order 1."""
    big = 800.0 if dtype == np.float64 else 100.0
    x = np.full(size, big, dtype=dtype)
    x[0] = 1.0  # a finite neighbour keeps its exact value
    with np.errstate(all="ignore"):
        for order in (1, 2, 3, 4):
            got = mc.derivative(mc.exp, x, order)
            assert np.all(got[1:] == np.inf), (order, got[:3])
            assert got[0] == pytest.approx(np.e, rel=1e-6 if dtype == np.float32 else 1e-15)
