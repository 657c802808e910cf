"""The derivative contract: ``mc.derivative`` and ``mc.directional`` are within 1e-11
relative in float64 (float32: 1e-4 up to order 4, 1e-3 above) wherever the true value is a
normal number of the dtype, ±inf or 0 where it overflows or underflows, and never a wrong
finite number, for points drawn log-uniformly over the whole domain (1e-300 to 1e300), orders
1 to 8, both dtypes and user steps from 1e-300 to 1e-3.

References: tests/mpderivatives.py (closed forms in mpmath, none a Taylor recurrence of
mcnet's).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from mpderivatives import DOMAINS, reference

import mcnet as mc
from mcnet import nn

FUNCTIONS = {
    "exp": mc.exp,
    "expm1": mc.expm1,
    "log": mc.log,
    "log1p": mc.log1p,
    "sqrt": mc.sqrt,
    "power_2.5": lambda t: mc.power(t, 2.5),
    "sin": mc.sin,
    "cos": mc.cos,
    "sinh": mc.sinh,
    "cosh": mc.cosh,
    "tan": mc.tan,
    "tanh": mc.tanh,
    "sigmoid": mc.sigmoid,
    "softplus": mc.softplus,
    "arctan": mc.arctan,
    "erf": mc.erf,
    "arcsin": mc.arcsin,
    "arccos": mc.arccos,
    "arcsinh": mc.arcsinh,
    "arctanh": mc.arctanh,
}

# --- points over the whole domain ----------------------------------------------------------


def magnitudes(dtype):
    """|x| log-uniform over the dtype's normal range (1e-300..1e300 in float64)."""
    lo, hi = (-300, 300) if dtype == np.float64 else (-37, 38)
    return st.floats(lo, hi).map(lambda u: 10.0**u)


def points(domain: str, dtype):
    signs = st.sampled_from([1.0, -1.0])
    if domain == "positive":
        one = magnitudes(dtype)
    elif domain == "unit":  # tiny, or 1 - tiny
        small = st.floats(-300 if dtype == np.float64 else -37, -0.01).map(lambda u: 10.0**u)
        one = st.one_of(small, small.map(lambda e: 1.0 - e)).filter(lambda v: v < 1.0)
        one = st.tuples(one, signs).map(lambda p: p[0] * p[1])
    elif domain == "above_-1":
        near = st.floats(-15 if dtype == np.float64 else -7, 0).map(lambda u: -1.0 + 10.0**u)
        one = st.one_of(magnitudes(dtype), near, magnitudes(dtype).map(lambda m: -min(m, 0.5)))
    else:
        one = st.tuples(magnitudes(dtype), signs).map(lambda p: p[0] * p[1])
    return (
        st.lists(one, min_size=4, max_size=4)
        .map(lambda xs: np.array(xs, dtype=dtype))
        .filter(lambda a: np.all(np.isfinite(a)) and (domain != "unit" or np.all(np.abs(a) < 1)))
    )


def check_contract(got, x, name: str, k: int, dtype) -> None:
    """got (from mcnet) against the reference at the float points x."""
    info = np.finfo(dtype)
    tol = 1e-11 if dtype == np.float64 else (1e-4 if k <= 4 else 1e-3)
    for g, xi in zip(np.ravel(got), np.ravel(x)):
        want = reference(name, float(xi), k)
        g = float(g)
        where = (
            f"{name}^({k}) at x = {float(xi)!r} ({np.dtype(dtype).name}): got {g!r}, want {want!r}"
        )
        if abs(want) > info.max:  # overflows the dtype
            assert math.isinf(g) and math.copysign(1, g) == math.copysign(1, want), where
        elif abs(want) < info.tiny:
            assert abs(g) <= info.tiny, where  # 0, or a subnormal near the truth
        else:
            assert abs(g - want) <= tol * abs(want), where


# --- the contract over the whole domain ------------------------------------------------------


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
@given(data=st.data())
def test_derivatives_over_the_whole_domain_match_mpmath(name, data):
    dtype = data.draw(st.sampled_from([np.float64, np.float32]), label="dtype")
    k = data.draw(st.integers(1, 8), label="order")
    x = data.draw(points(DOMAINS.get(name, "all"), dtype), label="x")
    got = mc.derivative(FUNCTIONS[name], x, k)
    assert got.dtype == dtype
    check_contract(got, x, name, k, dtype)


@pytest.mark.parametrize("name", ["log", "sqrt", "sin", "exp", "tanh", "arcsinh", "power_2.5"])
@given(data=st.data())
def test_user_steps_from_1e_300_to_1e_3_are_right(name, data):
    """A user-given h only scales the Taylor mode: every step gives the contract."""
    dtype = data.draw(st.sampled_from([np.float64, np.float32]), label="dtype")
    k = data.draw(st.integers(1, 8), label="order")
    h = 10.0 ** data.draw(st.floats(-300, -3), label="log10 h")
    x = data.draw(points(DOMAINS.get(name, "all"), dtype), label="x")
    check_contract(mc.derivative(FUNCTIONS[name], x, k, h=h), x, name, k, dtype)


@pytest.mark.parametrize("name", ["log", "sin", "arctan", "erf"])
@given(data=st.data())
def test_directional_along_one_direction_meets_the_contract(name, data):
    """d^k f[v, ..., v] of an elementwise f is f^(k) v^k elementwise (v of any scale)."""
    k = data.draw(st.integers(1, 6), label="order")
    x = data.draw(points(DOMAINS.get(name, "all"), np.float64), label="x")
    v = np.array([1.0, -0.5, 2.0, 0.25]) * 10.0 ** data.draw(st.floats(-100, 100))
    got = mc.directional(FUNCTIONS[name], x, [v] * k)
    with np.errstate(over="ignore", under="ignore"):
        scale = v**k
    want = np.array([reference(name, float(xi), k) for xi in x]) * scale
    normal = np.isfinite(want) & (np.abs(want) >= np.finfo(np.float64).tiny)
    np.testing.assert_allclose(got[normal], want[normal], rtol=1e-11)


@pytest.mark.parametrize(
    "name", ["exp", "expm1", "log1p", "arcsin", "arccos", "arctanh", "arcsinh", "sinh", "erf"]
)
@pytest.mark.parametrize("k", [1, 2, 3])
def test_every_layout_agrees_with_the_reference(name, k):
    """The new functions (and old ones) in the general layout (distinct directions), the
    multicomplex one-direction layout and the nilpotent one: f^(k)(x) u_1 ... u_k."""
    x = (
        np.array([0.3, -0.7, 0.05, 0.9])
        if DOMAINS.get(name) == "unit"
        else np.array([0.3, -0.7, 1.5, 2.5])
        if DOMAINS.get(name) != "above_-1"
        else np.array([0.3, -0.7, 1.5, 2.5])
    )
    want = np.array([reference(name, float(xi), k) for xi in x])
    directions = [np.array([1.0, -0.5, 2.0, 0.25]) * (j + 1) for j in range(k)]
    product = np.prod(directions, axis=0)
    f = FUNCTIONS[name]
    np.testing.assert_allclose(mc.directional(f, x, directions), want * product, rtol=1e-11)
    one = mc.derivatives.multicomplex_step(f, x, [directions[0]] * k)
    np.testing.assert_allclose(one, want * directions[0] ** k, rtol=1e-9)
    np.testing.assert_allclose(mc.derivative(f, x, k), want, rtol=1e-11)


# --- cases the issue named ------------------------------------------------------------------


def test_the_issues_examples():
    assert mc.derivative(mc.log, 1e-20, order=6) == pytest.approx(-1.2e122, rel=1e-12)
    assert mc.derivative(mc.sqrt, 1e-14, order=8) == pytest.approx(
        reference("sqrt", 1e-14, 8), rel=1e-12
    )
    assert mc.derivative(mc.sqrt, 1e-300, 1) == pytest.approx(5e149, rel=1e-12)
    assert mc.derivative(mc.exp, -500.0, 1) == pytest.approx(math.exp(-500), rel=1e-12)
    x = np.float32(1e-3)
    for k in (3, 4, 6):
        want = reference("log", float(x), k)
        assert mc.derivative(mc.log, x, k) == pytest.approx(want, rel=1e-4)
    assert mc.derivative(mc.sinh, -800.0, 3) == np.inf  # cosh
    assert mc.derivative(mc.cosh, -800.0, 3) == -np.inf  # sinh
    assert mc.derivative(mc.sinh, -800.0, 2) == -np.inf
    assert mc.derivative(mc.erf, np.array([500.0, -700.0, 1e300]), 3).tolist() == [0, 0, 0]
    assert mc.derivative(lambda t: mc.power(t, 2.5), 1e300, 3) == pytest.approx(1.875e-150)
    assert mc.derivative(mc.sin, 1e-300, 2) == pytest.approx(-1e-300, rel=1e-12)
    assert mc.derivative(mc.exp, -700.0, 1) == pytest.approx(math.exp(-700), rel=1e-12)


def test_sqrt_at_zero_is_infinite_with_the_one_sided_sign():
    assert [mc.derivative(mc.sqrt, 0.0, k) for k in (1, 2, 3, 4)] == [
        np.inf,
        -np.inf,
        np.inf,
        -np.inf,
    ]


def test_float32_near_1e_30():
    x = np.float32(1e-30)
    assert mc.derivative(mc.tanh, x, 3) == pytest.approx(-2.0, rel=1e-6)
    assert mc.derivative(mc.sigmoid, x, 2) == pytest.approx(-x / 8, rel=1e-4)
    assert mc.derivative(mc.softplus, x, 3) == pytest.approx(-x / 8, rel=1e-4)


def test_non_elementwise_functions_are_refused():
    """Cross-talk shows where it reaches the order asked for (t - mean(t) is linear: its
    second derivatives are 0 whichever way they are read)."""
    x = np.array([0.5, 1.0, 2.0])
    for f, orders in (
        (lambda t: (t * t).sum(), (1, 2)),
        (lambda t: t * t.sum(), (1, 2)),
        (lambda t: t - t.mean(), (1,)),
        (lambda t: t * t[::-1], (1, 2)),
    ):
        for k in orders:
            with pytest.raises(ValueError, match=r"mc\.grad.*mc\.directional"):
                mc.derivative(f, x, k)


def test_refusal_names_points_order_and_reason():
    """f(x) = x written as 0 * sqrt(x - 0.5) + x: at 0.5 sqrt's derivatives are infinite and
    0 * inf is NaN at every step, while f(0.5) is a number: refused, not NaN or a guess."""

    def broken(t):
        return 0.0 * mc.sqrt(t - 0.5) + t

    with pytest.raises(mc.DerivativeError, match=r"order-2.*x = 0\.5.*0 \* inf"):
        mc.derivative(broken, 0.5, 2)
    assert mc.derivative(broken, 0.75, 2) == 0.0
    assert issubclass(mc.DerivativeError, ArithmeticError)
    assert np.isnan(mc.derivative(mc.log, -1.0, 2))  # outside the domain: NaN, as f(x)


def test_zero_and_extreme_directions():
    x = np.array([0.3, 0.4])
    assert mc.directional(lambda t: mc.exp(t).sum(), x, [np.zeros(2)] * 3) == 0.0
    assert mc.directional(lambda t: mc.exp(t).sum(), x, [np.zeros(2), np.ones(2)]) == 0.0
    tiny = np.full(2, 5e-324)
    assert mc.directional(lambda t: mc.sin(t).sum(), x, [tiny]) == pytest.approx(
        np.cos(x).sum() * 5e-324, rel=0.5, abs=1e-323
    )
    huge = np.full(2, 1e300)
    assert mc.directional(lambda t: mc.sin(t).sum(), x, [huge]) == pytest.approx(
        np.cos(x).sum() * 1e300, rel=1e-12
    )


def test_high_order_mixed_derivative_warns_of_its_cost():
    x = np.array([0.3])
    directions = [np.array([1.0 + j / 16]) for j in range(9)]
    with pytest.warns(RuntimeWarning, match="bytes"):
        got = mc.directional(mc.exp, x, directions)
    np.testing.assert_allclose(got, np.exp(0.3) * np.prod(directions), rtol=1e-11)
    with warnings.catch_warnings():  # one direction: (k + 1)^2 products, no warning
        warnings.simplefilter("error")
        assert mc.derivative(mc.exp, 0.3, 16) == pytest.approx(np.exp(0.3), rel=1e-12)


# --- the objective's guards -------------------------------------------------------------------


def _objective():
    module = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2))
    rng = np.random.default_rng(0)
    batch = (rng.normal(size=(5, 4)), rng.normal(size=(5, 2)))
    return mc.Objective(module, nn.MSELoss()), nn.parameters_to_vector(module), batch


def test_objective_zero_subnormal_and_huge_directions():
    objective, w, batch = _objective()
    assert objective.curvature(w, np.zeros_like(w), batch) == 0.0
    assert np.all(objective.hvp(w, np.zeros_like(w), batch) == 0)
    reference_hv = objective.hvp(w, np.ones_like(w), batch)
    for size in (5e-324, 1e-310, 1e300):
        hv = objective.hvp(w, np.full_like(w, size), batch)
        assert np.all(np.isfinite(hv))
        if size > 1e-300:
            np.testing.assert_allclose(hv, reference_hv * size, rtol=1e-10)
    curvature = objective.curvature(w, np.ones_like(w), batch)
    assert objective.curvature(w, np.full_like(w, 1e100), batch) == pytest.approx(
        curvature * 1e200, rel=1e-10
    )


# --- every activation module's own third derivative ------------------------------------------

ACTIVATIONS = {
    "sigmoid": (nn.Sigmoid, "sigmoid"),
    "tanh": (nn.Tanh, "tanh"),
    "softplus": (nn.Softplus, "softplus"),
    "sin": (nn.Sin, "sin"),
}


@pytest.mark.parametrize("name", sorted(ACTIVATIONS) + ["elu", "relu", "identity"])
def test_activation_modules_third_derivative(name):
    """Through the module's own forward at order 3, in the nilpotent layout (derivative),
    the multicomplex one-direction layout and the general layout (distinct directions)."""
    x = np.array([-2.5, -0.3, 0.4, 1.7])
    if name in ACTIVATIONS:
        cls, ref = ACTIVATIONS[name]
        module = cls()
        want = np.array([reference(ref, float(xi), 3) for xi in x])
    else:
        module = {"elu": nn.ELU(0.7), "relu": nn.ReLU(), "identity": nn.Identity()}[name]
        want = 0.7 * np.exp(x) * (x < 0) if name == "elu" else np.zeros(4)
    u, v, w = np.array([1.0, -2.0, 0.5, 1.5]), np.array([0.5, 1.0, 1.0, -1.0]), np.full(4, 2.0)
    np.testing.assert_allclose(mc.derivative(module, x, 3), want, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(
        mc.derivatives.multicomplex_step(module, x, [u] * 3), want * u**3, rtol=1e-12, atol=1e-300
    )
    np.testing.assert_allclose(
        mc.directional(module, x, [u, v, w]), want * u * v * w, rtol=1e-12, atol=1e-300
    )
