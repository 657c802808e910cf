"""mc.grad, mc.jvp, mc.hvp, mc.jacobian, mc.hessian, mc.jet against derivatives written out
by hand: sum(sin(A x)), x**3 elementwise, log-sum-exp, and the Taylor series of exp and
1/(1 - x)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given

import mcnet as mc
from mcnet.testing import strategies as mst

M, N = 5, 4
MATRIX = np.random.default_rng(7).normal(size=(M, N)) / 2


def sum_sin(x):
    return mc.sin(x @ MATRIX.T).sum()


def close(got, want, rtol=1e-12):
    """Entrywise within rtol of the largest entry of ``want`` (the terms' scale)."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, (got.shape, want.shape)
    scale = max(float(np.max(np.abs(want))), 1.0) if want.size else 1.0
    assert np.all(np.abs(got - want) <= rtol * scale), (got, want)


@given(x=mst.points((-2.0, 2.0), shape=N), directions=mst.directions(N, 1))
def test_sum_sin_transforms_match_closed_forms(x, directions):
    (v,) = directions
    ax = MATRIX @ x
    gradient = MATRIX.T @ np.cos(ax)
    hessian = -MATRIX.T @ np.diag(np.sin(ax)) @ MATRIX
    close(mc.grad(sum_sin)(x), gradient)
    value, tangent = mc.jvp(sum_sin, x, v)
    close(value, np.sum(np.sin(ax)))
    close(tangent, gradient @ v)
    close(mc.hvp(sum_sin, x, v), hessian @ v)
    close(mc.hessian(sum_sin, x), hessian)
    close(mc.jacobian(lambda t: mc.sin(t @ MATRIX.T), x), np.cos(ax)[:, None] * MATRIX)


def test_elementwise_cube_on_a_matrix_keeps_every_shape():
    x = np.linspace(-1.0, 1.0, 6).reshape(2, 3)
    v = np.arange(6.0).reshape(2, 3) - 2.5

    def cube(t):
        return t * t * t

    jacobian = mc.jacobian(cube, x)
    assert jacobian.shape == (2, 3, 2, 3)
    close(jacobian, np.diag(3 * x.ravel() ** 2).reshape(2, 3, 2, 3))
    value, tangent = mc.jvp(cube, x, v)
    close(value, x**3)
    close(tangent, 3 * x**2 * v)
    total = lambda t: cube(t).sum()  # noqa: E731
    close(mc.grad(total)(x), 3 * x**2)
    hessian = mc.hessian(total, x)
    assert hessian.shape == (2, 3, 2, 3)
    close(hessian, np.diag(6 * x.ravel()).reshape(2, 3, 2, 3))
    close(mc.hvp(total, x, v), 6 * x * v)
    jet = mc.jet(cube, x, v, 4)
    assert jet.shape == (5, 2, 3)
    close(jet, np.stack([x**3, 3 * x**2 * v, 6 * x * v**2, 6 * v**3, 0 * x]))


@given(x=mst.points((-3.0, 3.0), shape=N), directions=mst.directions(N, 1))
def test_logsumexp_gradient_is_softmax_and_hessian_its_covariance(x, directions):
    (v,) = directions
    p = np.exp(x - x.max())
    p /= p.sum()
    covariance = np.diag(p) - np.outer(p, p)

    def lse(t):
        return mc.logsumexp(t, axis=0)

    close(mc.grad(lse)(x), p)
    close(mc.hessian(lse, x), covariance)
    close(mc.hvp(lse, x, v), covariance @ v)
    third = np.sum(p * v**3) - 3 * np.sum(p * v**2) * (p @ v) + 2 * (p @ v) ** 3
    close(mc.jet(lse, x, v, 3)[1:], [p @ v, v @ covariance @ v, third])


@given(x=mst.points((-2.0, 2.0)), v=mst.points((-1.5, 1.5)))
def test_jet_of_exp_is_its_taylor_series(x, v):
    jet = mc.jet(mc.exp, x, v, 8)
    want = np.exp(x) * v ** np.arange(9.0)
    # relative where the true value is a normal number (below that, the dtype has no digits)
    np.testing.assert_allclose(jet, want, rtol=1e-13, atol=np.finfo(np.float64).tiny)


@given(x=mst.points((-0.9, 0.9)), v=mst.points((-1.0, 1.0)))
def test_jet_of_geometric_series_and_its_top_row_is_directional(x, v):
    def f(t):
        return 1.0 / (1.0 - t)

    jet = mc.jet(f, x, v, 6)
    want = [math.factorial(k) * v**k / (1 - x) ** (k + 1) for k in range(7)]
    np.testing.assert_allclose(jet, want, rtol=1e-12, atol=np.finfo(np.float64).tiny)
    assert jet[6] == mc.directional(f, x, [v] * 6)


def test_jet_rows_far_apart_in_scale_are_each_exact():
    # x**3 at 1e-50: rows from 1e-150 to 6, and an exact zero
    jet = mc.jet(lambda t: t * t * t, 1e-50, 1.0, 4)
    np.testing.assert_allclose(jet, [1e-150, 3e-100, 6e-50, 6.0, 0.0], rtol=1e-13)


def test_jet_of_an_array_function_and_of_order_zero():
    x = np.linspace(-1.0, 1.0, 6).reshape(2, 3)
    v = 2 * np.ones_like(x)
    jet = mc.jet(lambda t: mc.sin(t).sum(axis=0), x, v, 4)
    assert jet.shape == (5, 3)
    close(
        jet,
        [
            (np.sin(x) * (2.0**k) * s).sum(axis=0)
            if k % 2 == 0
            else (np.cos(x) * (2.0**k) * s).sum(axis=0)
            for k, s in enumerate([1, 1, -1, -1, 1])
        ],
    )
    assert mc.jet(mc.exp, x, v, 0).shape == (1, 2, 3)
    zero = mc.jet(mc.exp, 0.5, 0.0, 3)
    np.testing.assert_array_equal(zero, [np.exp(0.5), 0.0, 0.0, 0.0])


def test_points_may_be_floats_and_order_zero_tensors_and_scalars_come_back_as_scalars():
    g = mc.grad(lambda t: t * t * t)(2.0)
    assert np.shape(g) == () and g == 12.0
    assert mc.hessian(lambda t: t * t * t, mc.tensor(2.0)) == 12.0
    assert mc.jacobian(mc.sin, 0.5).shape == ()
    assert mc.jet(mc.exp, 0.0, 1.0, 2).shape == (3,)
    x = mc.tensor(np.array([0.1, 0.2, 0.3]))
    close(mc.grad(lambda t: (t * t).sum())(x), [0.2, 0.4, 0.6])


def test_grad_passes_further_arguments_to_f_undifferentiated():
    x, data = np.array([1.0, 2.0]), np.array([3.0, -1.0])
    close(mc.grad(lambda w, d: ((w * d) ** 2).sum())(x, data), 2 * x * data**2)


def test_float32_points_give_float32_results():
    x = np.array([0.1, 0.5, 0.9], dtype=np.float32)
    g = mc.grad(lambda t: mc.exp(t).sum())(x)
    assert g.dtype == np.float32
    np.testing.assert_allclose(g, np.exp(x.astype(np.float64)), rtol=1e-6)
    jet = mc.jet(mc.exp, x, np.ones_like(x), 4)
    np.testing.assert_allclose(
        jet, np.broadcast_to(np.exp(x.astype(np.float64)), (5, 3)), rtol=1e-5
    )


@pytest.mark.parametrize("transform", ["grad", "hvp", "hessian"])
def test_a_function_with_array_values_is_refused_by_the_scalar_transforms(transform):
    x = np.ones(3)
    with pytest.raises(ValueError, match=r"scalar-valued f.*shape \(3,\).*mc\.jacobian"):
        if transform == "grad":
            mc.grad(mc.sin)(x)
        elif transform == "hvp":
            mc.hvp(mc.sin, x, x)
        else:
            mc.hessian(mc.sin, x)


@pytest.mark.parametrize("transform", ["jvp", "hvp", "jet"])
def test_a_direction_of_another_shape_is_refused(transform):
    x, v = np.ones(3), np.ones(4)
    with pytest.raises(ValueError, match=r"v has shape \(4,\); expected x's shape \(3,\)"):
        if transform == "jvp":
            mc.jvp(mc.sin, x, v)
        elif transform == "hvp":
            mc.hvp(lambda t: t.sum(), x, v)
        else:
            mc.jet(mc.sin, x, v, 2)


def test_bad_points_and_orders():
    point = mc.perturb(np.ones(2), [np.ones(2)], 1e-3)
    with pytest.raises(ValueError, match="real point"):
        mc.grad(lambda t: t.sum())(point)
    with pytest.raises(ValueError, match="order must be >= 0"):
        mc.jet(mc.exp, 0.0, 1.0, -1)
    with pytest.raises(TypeError, match="order must be an integer"):
        mc.jet(mc.exp, 0.0, 1.0, 2.0)
    with pytest.raises(ValueError, match="finite direction"):
        mc.jet(mc.exp, 0.0, np.nan, 2)
