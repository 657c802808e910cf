"""The four parts of Newton-Krylov, each alone, against closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from oracles import AnalyticOracle, quadratic

from mcnet.solvers.newton_krylov import (
    Armijo,
    ConjugateGradient,
    CurvatureOperator,
    GlobalGradient,
    LevenbergMarquardt,
    NewtonKrylov,
    NewtonKrylovFast,
    NewtonKrylovHessian,
    TaylorRatio,
)


def indefinite(seed: int, n: int = 6):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    a = q @ np.diag(rng.uniform(-1.0, 3.0, n)) @ q.T
    return a, rng.standard_normal(n), rng.standard_normal(n)


# --- the curvature operator -----------------------------------------------------------------
@given(
    st.integers(0, 2**32 - 1),
    st.sampled_from(["bicomplex", "hvp", "gauss-newton"]),
    st.sampled_from([0.0, 0.5]),
)
def test_curvature_operator_products_are_the_damped_matrix(seed, kind, damping):
    a, b, v = indefinite(seed)
    oracle = AnalyticOracle({"batch": quadratic(a, b)})
    operator = CurvatureOperator(kind, damping)
    np.testing.assert_allclose(
        operator.product(oracle, b, v, "batch", damping),
        a @ v + damping * v,
        rtol=1e-12,
        atol=1e-12,
    )
    assert operator.quadratic_form(oracle, b, v, "batch") == pytest.approx(
        v @ a @ v, rel=1e-12, abs=1e-12
    )
    kappa, hp = operator.along(oracle, b, v, "batch", damping)
    assert kappa == pytest.approx(v @ a @ v + damping * v @ v, rel=1e-12, abs=1e-12)
    if kind == "bicomplex":  # the curvature from its own pass, the product left to make
        assert hp is None and oracle.counts["curvature"] == 2
    else:
        np.testing.assert_allclose(hp, a @ v + damping * v, rtol=1e-12, atol=1e-12)


def test_curvature_operator_subsample_fusion_and_damping_rule():
    inputs, targets = np.arange(10.0), np.arange(10)
    sub = CurvatureOperator(fraction=0.25).batch((inputs, targets))
    assert len(sub[0]) == 2 and len(sub[1]) == 2  # round(2.5) examples, the first ones
    assert CurvatureOperator(fraction=0.01).batch((inputs, targets))[0].shape == (1,)
    assert CurvatureOperator().fuses_with_gradient()
    assert not CurvatureOperator("gauss-newton").fuses_with_gradient()
    assert not CurvatureOperator(dtype="float32").fuses_with_gradient()
    # Levenberg-Marquardt (Martens 2010): x 3/2 below rho = 1/4 (NaN too), x 2/3 above 3/4
    lm = CurvatureOperator("gauss-newton", damping=1.0)
    assert [lm.adapt(1.0, rho) for rho in (0.1, math.nan, 0.5, 0.9)] == [1.5, 1.5, 1.0, 2 / 3]
    assert CurvatureOperator().adapt(1.0, 0.1) == 1.0  # undamped: nothing to adapt
    floored = CurvatureOperator("gauss-newton", damping=1.0, min_damping=0.8)
    assert [floored.adapt(1.0, rho) for rho in (0.1, 0.9)] == [1.5, 0.8]  # not below 0.8
    assert floored.adapt(2.0, 0.9) == 4 / 3
    with pytest.raises(ValueError, match="min_damping"):
        CurvatureOperator(min_damping=-1.0)
    with pytest.raises(ValueError, match="curvature_fraction"):
        CurvatureOperator(fraction=1.5)
    with pytest.raises(ValueError, match="curvature"):
        CurvatureOperator("fisher")


# --- the Krylov solver ----------------------------------------------------------------------
def test_cg_stops_at_negative_curvature_with_a_newton_length_steepest_descent():
    a = np.diag([2.0, -1.0])
    b = np.array([0.1, 1.0])
    oracle = AnalyticOracle({"batch": quadratic(a, b)})
    g = -b  # the gradient at w = 0
    for warm in (np.zeros(2), np.array([0.3, 0.0])):
        for scaling, length in (("scaled", (g @ g) / abs(g @ a @ g)), ("unit", 1.0)):
            cg = ConjugateGradient(steepest_descent=scaling)
            result = cg.solve(oracle, np.zeros(2), "batch", CurvatureOperator(), g, warm, a @ warm)
            assert result.iterations == 0 and result.reasons == [
                "non-positive curvature",
                "steepest descent",
            ]
            np.testing.assert_allclose(result.direction, -g * length, rtol=1e-14)
            if scaling == "unit" and warm.any():  # measured only where the step needs it
                assert result.curvature is None
            else:
                assert result.curvature == pytest.approx(length**2 * (g @ a @ g), rel=1e-12)


def test_cg_as_printed_returns_its_warm_start_at_negative_curvature():
    a, b = np.diag([2.0, -1.0]), np.array([0.1, 1.0])
    oracle = AnalyticOracle({"batch": quadratic(a, b)})
    warm = np.array([0.3, 0.0])
    printed = ConjugateGradient(steepest_descent="paper")
    result = printed.solve(oracle, np.zeros(2), "batch", CurvatureOperator(), -b, warm, a @ warm)
    assert result.iterations == 0 and result.reasons == ["non-positive curvature"]
    np.testing.assert_array_equal(result.direction, warm)
    cold = printed.solve(
        oracle, np.zeros(2), "batch", CurvatureOperator(), -b, np.zeros(2), np.zeros(2)
    )
    np.testing.assert_array_equal(cold.direction, b)  # -g_j, unscaled


def test_cg_keeps_its_iterate_when_negative_curvature_comes_later():
    a = np.diag([1.0, 2.0, -1.0])
    b = np.array([1.0, 1.0, 0.01])
    oracle = AnalyticOracle({"batch": quadratic(a, b)})
    result = ConjugateGradient().solve(
        oracle, np.zeros(3), "batch", CurvatureOperator(), -b, np.zeros(3), np.zeros(3)
    )
    assert result.iterations >= 1 and result.reasons == ["non-positive curvature"]
    assert result.direction @ -b < 0  # a descent direction: CG's iterate so far
    direction = result.direction
    assert result.curvature == pytest.approx(direction @ a @ direction, rel=1e-10)


@given(st.integers(0, 2**32 - 1))
def test_cg_forcing_stop_ends_at_the_forcing_term(seed):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((8, 8)))
    a = q @ np.diag(np.geomspace(1.0, 1e3, 8)) @ q.T
    b = rng.standard_normal(8) * 1e-2
    oracle = AnalyticOracle({"batch": quadratic(a, b)})
    result = ConjugateGradient(max_iterations=20, stop="forcing").solve(
        oracle, np.zeros(8), "batch", CurvatureOperator(), -b, np.zeros(8), np.zeros(8)
    )
    g_norm = np.linalg.norm(b)
    residual = np.linalg.norm(a @ result.direction - b)
    assert result.reasons == ["converged"]
    assert residual <= min(0.5, math.sqrt(g_norm)) * g_norm * (1 + 1e-9)


# --- the step rules -------------------------------------------------------------------------
def cubic(slope: float, curvature: float, third: float):
    """f(w + gamma dw) - f(w) = gamma slope + gamma^2 curvature / 2 + gamma^3 third."""
    return lambda gamma: gamma * slope + 0.5 * gamma**2 * curvature + gamma**3 * third


@given(st.floats(0.01, 10.0), st.floats(0.0, 5.0), st.floats(-5.0, 5.0))
def test_taylor_ratio_lands_in_its_band_or_says_why(slope, curvature, third):
    trial = cubic(-slope, curvature, third)
    rule = TaylorRatio(eta=0.1)
    gamma, adjustments = rule(trial, 0.0, -slope, curvature, np.float64)
    decrease = trial(gamma)
    model = -gamma * slope + 0.5 * gamma**2 * curvature
    if adjustments == 0:  # the full step: its ratio below the band, or in it
        assert gamma == 1.0 and decrease < 0 and abs((decrease - model) / decrease) <= 0.1
    elif gamma != rule.fallback_step:
        assert decrease < 0
        ratio = abs((decrease - model) / decrease)
        in_band = 0.05 <= ratio <= 0.1
        assert in_band or adjustments == rule.max_adjustments


def test_taylor_ratio_fallbacks():
    rising = cubic(1.0, 0.0, 0.0)  # a "descent" direction along which f rises
    assert TaylorRatio(max_adjustments=3)(rising, 0.0, -1.0, 0.0, np.float64) == (1e-6, 3)
    # f = gamma^4-like: decreases at every trial, never in the band [5e-4, 1e-3]
    quartic = lambda gamma: (1 - gamma / 3) ** 4 - 1  # noqa: E731
    best, paper = (
        TaylorRatio(eta=1e-3, max_adjustments=2),
        TaylorRatio(eta=1e-3, max_adjustments=2, fallback="paper"),
    )
    gamma, _ = best(quartic, 0.0, -4 / 3, 12 / 9, np.float64)
    assert gamma == 1.0  # of the trials 1, 1/2, 1/4 the one that lowered f most
    assert paper(quartic, 0.0, -4 / 3, 12 / 9, np.float64)[0] == 1e-6


def test_armijo_and_levenberg_marquardt_rules():
    trial = cubic(-1.0, 4.0, 0.0)  # minimum at gamma = 1/4
    gamma, backtracks = Armijo(c=0.01, tau=0.5)(trial, 0.0, -1.0, 4.0, np.float64)
    assert trial(gamma) <= 0.01 * gamma * -1.0
    assert gamma == 0.25 and backtracks == 2  # 1 and 1/2 fail sufficient decrease
    assert LevenbergMarquardt()(trial, 0.0, -1.0, 4.0, np.float64) == (1.0, 0)
    assert LevenbergMarquardt()(lambda g: math.inf, 0.0, -1.0, 4.0, np.float64)[0] == 1e-6


# --- the global-gradient estimator ------------------------------------------------------------
class CountingOracle(AnalyticOracle):
    def __init__(self):
        a, b = np.eye(3), np.array([1.0, 2.0, 3.0])
        super().__init__({None: quadratic(a, b)})
        self.size = 100
        self.data = (np.zeros((100, 3)), np.zeros(100))
        self.sampled: list[int] = []

    def value_and_grad(self, w, batch=None):
        if batch is not None:
            self.sampled.append(len(batch[0]))
            return 0.0, np.full(3, float(len(batch[0])))
        return super().value_and_grad(w, None)


def test_global_gradient_full_refreshed_sampled_and_running():
    w = np.zeros(3)
    full = GlobalGradient()
    oracle = CountingOracle()
    state = full.init(oracle, w)
    np.testing.assert_array_equal(state["gradient.global"], [-1.0, -2.0, -3.0])
    state = full.after_step(oracle, w + 1, state["gradient.global"], state, 1)
    np.testing.assert_array_equal(state["gradient.global"], [0.0, -1.0, -2.0])  # at w + 1
    assert oracle.counts["global_gradient"] == 2

    refreshed, oracle = GlobalGradient(refresh_every=3), CountingOracle()
    state = refreshed.init(oracle, w)
    for i in range(1, 7):
        state = refreshed.after_step(oracle, w + i, state["gradient.global"], state, i)
    assert oracle.counts["global_gradient"] == 3  # at the start, after steps 3 and 6

    sampled, oracle = GlobalGradient(sample=16), CountingOracle()
    state = sampled.init(oracle, w)
    assert oracle.sampled == [16] and oracle.counts["global_gradient"] == 0

    running, oracle = GlobalGradient("running"), CountingOracle()
    g = running.init(oracle, w)["gradient.global"]
    batch = (np.zeros((25, 3)), np.zeros(25))
    g_batch = np.array([4.0, 4.0, 4.0])
    np.testing.assert_allclose(
        running.with_batch(g, g_batch, batch, oracle), 0.75 * g + 0.25 * g_batch, rtol=1e-15
    )
    assert GlobalGradient().with_batch(g, g_batch, batch, oracle) is g


def test_a_measured_global_gradient_is_measured_again_after_the_point_moved():
    """After an epoch rolled back (`moved`), a full g is of the point left: `current`
    measures it at the point training goes on from, once; a running average goes on."""
    full, oracle = GlobalGradient(), CountingOracle()
    state = full.init(oracle, np.zeros(3))
    assert full.current(oracle, np.ones(3), state, 5) == {}  # not moved: nothing measured
    state = {**state, **full.moved()}
    entries = full.current(oracle, np.ones(3), state, 5)
    np.testing.assert_array_equal(entries["gradient.global"], [0.0, -1.0, -2.0])  # at 1
    assert not entries["gradient.stale"] and oracle.counts["global_gradient"] == 2
    assert GlobalGradient("running").moved() == {"gradient.stale": False}


# --- the compositions -----------------------------------------------------------------------
def test_named_variants_are_compositions_of_the_parts():
    assert NewtonKrylov().parts == {
        "curvature": CurvatureOperator("gauss-newton", 1e-2),
        "krylov": ConjugateGradient(max_iterations=20),
        "step_rule": TaylorRatio(eta=0.5),
        "global_gradient": GlobalGradient("full"),
    }
    assert NewtonKrylovHessian().parts == {
        "curvature": CurvatureOperator("bicomplex"),
        "krylov": ConjugateGradient(max_iterations=20),
        "step_rule": TaylorRatio(eta=0.05),
        "global_gradient": GlobalGradient("full"),
    }
    fast = NewtonKrylovFast().parts
    assert fast["curvature"] == CurvatureOperator("gauss-newton", 1e-2, "float32")
    assert fast["krylov"].max_iterations == 15
    assert NewtonKrylovFast().scale_invariant_max_krylov == 5
    assert fast["step_rule"] == TaylorRatio(eta=0.5)
    assert fast["global_gradient"] == GlobalGradient("running", sample=128)
    assert NewtonKrylov(step="armijo").parts["step_rule"] == Armijo()
    printed = NewtonKrylovHessian(
        cg_alpha="paper",
        flat_curvature="paper",
        fallback="paper",
        post_screening="paper",
        steepest_descent="unit",
    ).parts
    assert printed["krylov"].alpha == "paper" and printed["step_rule"].fallback == "paper"
    # the loop's own limit on scale-invariant channels: off in Algorithm 1 as printed
    assert NewtonKrylov().scale_invariant_limit == 0.25
    assert NewtonKrylovFast().scale_invariant_limit == 0.15
    assert NewtonKrylovHessian().scale_invariant_limit is None
    assert NewtonKrylov().scale_invariant_curvature and NewtonKrylovFast().scale_invariant_curvature
    assert not NewtonKrylovHessian().scale_invariant_curvature
