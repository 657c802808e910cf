"""One-direction numbers (k + 1 coefficients, ``algebra.symmetric``) against the general
multicomplex layout (2**k coefficients) and against closed-form derivatives."""

import numpy as np
import pytest
from helpers import reference_mul
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import mcnet as mc
from mcnet.algebra import symmetric
from mcnet.nn import CrossEntropyLoss, manual_seed, models, parameters_to_vector
from mcnet.nn.vector import vector_to_parameters
from mcnet.tensor import FUSE_MIN_SIZE, Tensor

ORDERS = st.integers(2, 5)


@st.composite
def one_direction_numbers(draw, order, shape=(3,), spread=0.4):
    """s_0 in [1, 2] and the other coefficients O(1) but small enough that every idempotent
    component keeps a positive real part (so log, sqrt, arctan take principal values)."""
    s = draw(hnp.arrays(np.float64, (order + 1, *shape), elements=st.floats(-1, 1)))
    s[0] = 1.5 + 0.5 * s[0]
    s[1:] *= spread / 2**order
    return Tensor(s)


def _general_parts(s: np.ndarray) -> np.ndarray:
    """The API parts layout written out directly: coefficient m is s[popcount(m)]."""
    k = len(s) - 1
    return np.stack([s[bin(m).count("1")] for m in range(2**k)])


@given(order=ORDERS, data=st.data())
def test_layout_parts_coef_and_real(order, data):
    t = data.draw(one_direction_numbers(order))
    assert t.one_direction and t.order == order
    np.testing.assert_array_equal(t.parts, _general_parts(t.data))
    assert np.array_equal(t.coef(tuple(range(1, order + 1))), t.data[order])
    assert np.array_equal(t.coef((2,)), t.data[1]) and np.array_equal(t.real, t.data[0])
    np.testing.assert_array_equal(t.general().parts, t.parts)


@given(order=ORDERS, data=st.data())
def test_product_matches_the_unit_multiplication_table(order, data):
    a = data.draw(one_direction_numbers(order, spread=4.0))
    b = data.draw(one_direction_numbers(order, spread=4.0))
    got = (a * b).parts
    np.testing.assert_allclose(got, reference_mul(a.parts, b.parts), rtol=1e-13, atol=1e-13)
    w = np.random.default_rng(order).normal(size=(3, 2))
    np.testing.assert_allclose(
        (a @ w).parts, np.stack([p @ w for p in a.parts]), rtol=1e-13, atol=1e-13
    )


FUNCTIONS = {
    "exp": mc.exp, "log": mc.log, "sqrt": mc.sqrt, "sin": mc.sin, "cos": mc.cos,
    "tanh": mc.tanh, "arctan": mc.arctan, "sigmoid": mc.sigmoid, "softplus": mc.softplus,
    "erf": mc.erf, "inverse": lambda z: 1 / z, "cube": lambda z: z**3, "relu": mc.relu,
    "power": lambda z: z**0.75,
}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(FUNCTIONS))
@given(order=ORDERS, data=st.data())
def test_functions_agree_with_the_general_layout(name, order, data):
    t = data.draw(one_direction_numbers(order))
    f = FUNCTIONS[name]
    got = f(t)
    assert got.one_direction
    want = f(t.general()).parts
    np.testing.assert_allclose(got.parts, want, rtol=1e-12, atol=1e-12 * np.abs(want).max())


@pytest.mark.parametrize("k", [2, 3, 4, 5, 6])
def test_directional_along_one_direction_matches_closed_forms(k):
    """f(x) = sum sin(Ax): d^k f[v, ..., v] = sum sin^(k)((Ax)_i) (Av)_i^k."""
    rng = np.random.default_rng(k)
    a, x, v = rng.normal(size=(3, 4)), rng.normal(size=4), rng.normal(size=4)
    f = lambda w: mc.sin(w @ a.T).sum()  # noqa: E731
    ax, av = a @ x, a @ v
    sin_derivative = [np.sin, np.cos, lambda z: -np.sin(z), lambda z: -np.cos(z)][k % 4]
    want = float(np.sum(sin_derivative(ax) * av**k))
    assert mc.perturb(x, [v] * k, 1e-3).one_direction
    assert mc.directional(f, x, [v] * k) == pytest.approx(want, rel=1e-12, abs=1e-13)


def test_perturb_layout_choice_and_errors():
    x, v, u = np.zeros(3), np.ones(3), np.arange(3.0)
    assert mc.perturb(x, [v, v.copy()], 0.5).one_direction  # equal arrays count as one
    assert not mc.perturb(x, [v, u], 0.5).one_direction
    assert not mc.perturb(x, [v], 0.5).one_direction  # order 1: the complex layout
    assert not mc.perturb(x, [v, v], 0.5, one_direction=False).one_direction
    with pytest.raises(ValueError, match="same"):
        mc.perturb(x, [v, u], 0.5, one_direction=True)
    general = mc.perturb(x, [v, v, v], 0.5, one_direction=False)
    np.testing.assert_array_equal(mc.perturb(x, [v, v, v], 0.5).parts, general.parts)


def test_mixing_with_real_and_general_tensors():
    rng = np.random.default_rng(0)
    t = mc.perturb(rng.normal(size=5), [rng.normal(size=5)] * 3, 0.25)
    g = mc.perturb(rng.normal(size=5), [rng.normal(size=5) for _ in range(3)], 0.25)
    assert (t + 1.0).one_direction and (t * np.arange(5.0)).one_direction
    mixed = t * g
    assert not mixed.one_direction
    np.testing.assert_allclose(mixed.parts, reference_mul(t.parts, g.parts), rtol=1e-13, atol=1e-15)
    joined = mc.concatenate([t, mc.tensor(np.ones(2))])
    assert joined.one_direction and joined.shape == (7,)
    np.testing.assert_array_equal(joined.parts[:, 5:], np.eye(8)[:, :1] * np.ones(2))
    with pytest.raises(ValueError, match="order-3 value into an order-0"):
        mc.tensor(np.zeros(5))[:] = t
    target = t.copy()
    target[1:3] = g[1:3]  # a general value turns the target general, nothing is lost
    np.testing.assert_array_equal(target.parts[:, 1:3], g.parts[:, 1:3])
    np.testing.assert_array_equal(target.parts[:, 3:], t.parts[:, 3:])


@pytest.mark.slow
@pytest.mark.parametrize("order", [2, 3, 4])
@pytest.mark.parametrize("perturbation", [0.1, 1e-40])  # the exact path and the series path
def test_fused_kernels_on_one_direction_numbers(order, perturbation):
    rng = np.random.default_rng(order)
    s = rng.uniform(-1, 1, size=(order + 1, FUSE_MIN_SIZE + 5))
    s[0] += 2.0
    s[1:] *= perturbation ** np.arange(1, order + 1)[:, None]
    t = Tensor(s)
    for name in ("exp", "tanh", "sigmoid", "sin", "cos"):
        fused = getattr(mc, name)(t).data
        recursed = getattr(symmetric, name)(list(s))
        np.testing.assert_allclose(fused, np.stack(recursed), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose((t * t).data, np.stack(symmetric.mul(list(s), list(s))), rtol=1e-13)


def test_network_curvature_and_third_derivative_match_the_general_layout():
    manual_seed(3)
    net = models.lenet5()
    loss = CrossEntropyLoss()
    rng = np.random.default_rng(3)
    images, labels = rng.uniform(0, 1, size=(4, 1, 28, 28)), rng.integers(0, 10, size=4)
    w = parameters_to_vector(net)
    v = rng.standard_normal(w.size)

    def top_coefficient(one_direction: bool, k: int) -> float:
        h = mc.default_step(np.float64, k)
        vector_to_parameters(mc.perturb(w, [v] * k, h, one_direction=one_direction), net)
        value = loss(net(mc.tensor(images)), labels)
        return float(value.coef(tuple(range(1, k + 1)))) / h**k

    for k in (2, 3):
        fast, general = top_coefficient(True, k), top_coefficient(False, k)
        assert fast == pytest.approx(general, rel=1e-11)
    objective = mc.Objective(net, loss)
    assert objective.curvature(w, v, (images, labels)) == pytest.approx(
        v @ objective.hvp(w, v, (images, labels)), rel=1e-10
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(symmetric._FUNCTIONS))
@given(order=st.integers(2, 6), data=st.data())
def test_taylor_series_agree_with_the_exact_path_for_tiny_perturbations(name, order, data):
    """The jet recurrences and the multicomplex recursion are independent; where the
    perturbation is tiny they must agree to roundoff, coefficient by coefficient."""
    # arcsin, arccos and arctanh are real on (-1, 1) only
    hi = 0.9 if name in ("arcsin", "arccos", "arctanh") else 3.0
    x0 = data.draw(hnp.arrays(np.float64, 4, elements=st.floats(0.2, hi)))
    v = data.draw(hnp.arrays(np.float64, 4, elements=st.floats(-1, 1)))
    h = mc.default_step(np.float64, order)
    s = mc.perturb(x0, [v] * order, h).comps
    assert symmetric.is_tiny(name, s)
    series, exact = symmetric.series(name)(s), symmetric.exact(name)(s)
    for c, (got, want) in enumerate(zip(series, exact)):
        # h**c is the natural size of class c, also where a derivative vanishes
        # (the fourth derivative of arctan at 1)
        scale = np.abs(want).max() + h**c
        assert np.abs(got - want).max() <= 1e-12 * scale, (c, got, want)


def test_large_perturbations_take_the_exact_path():
    s = [np.array([0.5]), np.array([1e-3]), np.array([0.0])]
    assert not symmetric.is_tiny("exp", s)
    assert symmetric.is_tiny("exp", [s[0], s[1] * 1e-10, s[2]])
    assert not symmetric.is_tiny("log", [s[0] * 1e-30, s[1] * 1e-10, s[2]])  # scale |s_0|


def _sigmoid_order2(s: np.ndarray) -> np.ndarray:
    """sigmoid along one direction at order 2 for tiny s_1, s_2, written out in long double
    (x87's 64-bit mantissa here): [f, f' s_1, f' s_2 + f'' s_1^2] (the value's s_1^2 terms
    are below roundoff), with f' = e^-x / (1 + e^-x)^2 and f'' = -f' tanh(x / 2)."""
    x, s1, s2 = s.astype(np.longdouble)
    e = np.exp(-x)
    f = 1 / (1 + e)
    d1 = e / (1 + e) ** 2
    d2 = -d1 * np.tanh(x / 2)
    return np.stack([f, d1 * s1, d1 * s2 + d2 * s1**2]), np.abs(d1 * s2) + np.abs(d2 * s1**2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(n=st.integers(1, 300), outlier=st.sampled_from(["none", "large", "nan"]),
       seed=st.integers(0, 2**32 - 1))  # fmt: skip
def test_order2_sigmoid_at_a_curvature_pass_scale(dtype, n, outlier, seed):
    """A curvature pass's sigmoid (``loops.sigmoid``: a Taylor series when every |s_1|, |s_2|
    is tiny) against the closed form, in both precisions.  One element anywhere outside the
    series' range (a large s_1, or NaN) sends the whole array down the exact path: the large
    one then matches the general layout (the series would be off by s_1^2 relative), the NaN
    stays NaN."""
    rng = np.random.default_rng(seed)
    h = mc.default_step(dtype, 2)
    s = np.stack([rng.uniform(-8, 8, n), h * rng.standard_normal(n),
                  h * h * rng.standard_normal(n)]).astype(dtype)  # fmt: skip
    at = rng.integers(n)
    if outlier == "large":
        s[1, at] = 0.5
    elif outlier == "nan":
        s[1, at] = np.nan
    with np.errstate(invalid="ignore"):  # the NaN's exact path
        got = mc.sigmoid(Tensor(s))
    assert got.one_direction and got.data.dtype == dtype
    if outlier == "none":
        want, scale = _sigmoid_order2(s)
        rtol = 4 * np.finfo(dtype).eps
        for c, tol in enumerate([np.abs(want[0]), np.abs(want[1]), scale]):
            err = np.abs(got.data[c] - want[c])
            assert np.all(err <= rtol * tol), (c, err.max())
    elif outlier == "large":
        exact = mc.sigmoid(Tensor(s.astype(np.float64)).general()).parts[:, at]
        np.testing.assert_allclose(got.parts[:, at], exact, rtol=1e-5, atol=1e-7)
    else:
        assert np.isnan(got.data[1:, at]).all()


@pytest.mark.parametrize("size", [10, 1 << 17])
def test_zero_components_finds_exact_zeros_of_any_size_and_only_them(size):
    """A large weight's zero s_2 is found (its products would cost a third of a forward's
    GEMMs); a large array that is zero at both ends but not in the middle is not zero."""
    rng = np.random.default_rng(0)
    value, zero = rng.standard_normal(size), np.zeros(size)
    hollow = np.zeros(size)
    hollow[size // 2] = 1e-300
    assert symmetric.zero_components([value, hollow, zero]) == {2}
    assert symmetric.zero_components([value, value, -zero]) == {2}


def test_curvature_of_a_network_with_a_large_weight_matches_v_dot_h_v():
    """A 300x300 weight (more elements than are always checked) has its zero s_2 skipped;
    vᵀHv by the one-direction forward against v · H v from the complex pass."""
    manual_seed(5)
    net = models.mlp([20, 300, 300, 3], "tanh")
    rng = np.random.default_rng(6)
    batch = (rng.standard_normal((8, 20)), rng.integers(0, 3, 8))
    objective = mc.nn.Objective(net, CrossEntropyLoss())
    w = parameters_to_vector(net)
    v = rng.standard_normal(w.shape)
    expected = float(v @ objective.hvp(w, v, batch))
    assert objective.curvature(w, v, batch) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("real_side", ["left", "right"])
def test_a_real_operand_makes_no_product_with_a_zero_coefficient(real_side, monkeypatch):
    """Data (real) times a weight whose s_2 is zero, and a weight times real im2col columns:
    every GEMM involves a nonzero coefficient (the zero s_2 costs nothing), and the product's
    coefficients are the real products coefficient by coefficient, s_2 exactly zero."""
    from mcnet.algebra import gemm

    rng = np.random.default_rng(3)
    real = rng.standard_normal((6, 5) if real_side == "left" else (5, 7))
    coeffs = rng.standard_normal((3, 5, 7) if real_side == "left" else (3, 6, 5))
    coeffs[2] = 0.0
    gemm_sizes = []
    original = gemm._real_view_matmul

    def counting(left, right, right_complex_only):
        gemm_sizes.append(left.size * right.size)
        return original(left, right, right_complex_only)

    monkeypatch.setattr(gemm, "_real_view_matmul", counting)
    weight = Tensor(coeffs)
    data = Tensor(real[None])
    got = mc.matmul(data, weight) if real_side == "left" else mc.matmul(weight, data)
    want = [real @ c if real_side == "left" else c @ real for c in coeffs]
    assert got.one_direction and len(got.data) == 3
    np.testing.assert_allclose(got.data[0], want[0], rtol=1e-14)
    np.testing.assert_allclose(got.data[1], want[1], rtol=1e-14)
    assert not got.data[2].any()
    # the GEMMs read two coefficients' worth of the weight, not three
    weight_size = coeffs[0].size
    assert sum(gemm_sizes) <= 2 * real.size * weight_size
