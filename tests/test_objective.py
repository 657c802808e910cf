"""`Objective`: gradient, H v, v^T H v, directional derivatives and Hessian of a network loss.

References are independent of the method under test: closed-form gradients and Hessians
written out by hand (logistic regression, linear least squares), central differences of
the gradient, the dense Hessian, and symmetry identities.
"""

from __future__ import annotations

import fd
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import mcnet as mc
from mcnet import nn
from mcnet.nn.objective import Objective

seeds = st.integers(0, 2**31 - 1)


class Residual(nn.Module):
    def __init__(self, width, act):
        super().__init__()
        self.lin = nn.Linear(width, width)
        self.act = act
        self.add = nn.Add()

    def forward(self, x):
        return self.add(x, self.act(self.lin(x)))


def _network(kind, d, c):
    if kind == "residual":
        return nn.Sequential(Residual(d, nn.Tanh()), nn.Linear(d, c))
    if kind == "mlp":
        return nn.Sequential(nn.Linear(d, 4), nn.Sigmoid(), nn.Linear(4, c))
    return nn.Sequential(nn.Linear(d, 3), nn.Softplus(), Residual(3, nn.Sin()), nn.Linear(3, c))


def _problem(seed, kind="residual", loss=None, n=6, d=3, c=3, dtype=np.float64):
    nn.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = _network(kind, d, c).to(dtype=dtype)
    x = rng.standard_normal((n, d)).astype(dtype)
    y = rng.integers(0, c, n)
    objective = Objective(net, loss or nn.CrossEntropyLoss())
    return objective, nn.parameters_to_vector(net), (x, y), rng


kinds = st.sampled_from(["residual", "mlp", "smooth"])


def _numpy_loss(kind, objective, w, batch):
    """The networks of ``_network`` and the cross-entropy written out in NumPy, with the
    parameters read from the flat vector in state-dict order."""
    shapes = [(k, v.shape) for k, v in objective.module.state_dict().items()]
    params, offset = {}, 0
    for key, shape in shapes:
        size = int(np.prod(shape))
        params[key] = w[offset : offset + size].reshape(shape)
        offset += size

    def linear(prefix, x):
        return x @ params[f"{prefix}.weight"].T + params[f"{prefix}.bias"]

    x, y = batch
    if kind == "residual":
        h = x + np.tanh(linear("0.lin", x))
        logits = linear("1", h)
    elif kind == "mlp":
        logits = linear("2", 1 / (1 + np.exp(-linear("0", x))))
    else:
        h = np.log1p(np.exp(linear("0", x)))
        h = h + np.sin(linear("2.lin", h))
        logits = linear("3", h)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -log_p[np.arange(len(y)), y].mean()


@given(kind=kinds, seed=seeds)
def test_hvp_matches_richardson_differences_of_the_gradient(kind, seed):
    objective, w, batch, rng = _problem(seed, kind)
    v = rng.standard_normal(w.size)
    fd.assert_close(objective.hvp(w, v, batch), fd.hvp(objective, w, v, batch), 1e-9, "H v")


@pytest.mark.slow
@given(kind=kinds, seed=seeds)
def test_raw_hvp_columns_are_symmetric_and_the_hessian_matches_differences(kind, seed):
    """H e_j by one complex backward each: nothing in that computation makes the columns
    symmetric, so their symmetry checks the backward passes; ``hessian()`` (which
    symmetrises them) is checked against Richardson differences of the exact gradient."""
    objective, w, batch, rng = _problem(seed, kind)
    columns = np.stack([objective.hvp(w, e, batch) for e in np.eye(w.size)], axis=1)
    asymmetry = np.abs(columns - columns.T).max()
    assert asymmetry <= 1e-12 * np.abs(columns).max(), asymmetry
    reference = fd.hessian(objective, w, batch, eps=1e-3, levels=2)
    fd.assert_close(objective.hessian(w, batch), reference, 1e-9, "hessian()")


@given(kind=kinds, seed=seeds)
def test_value_and_gradient_match_numpy_and_differences_of_the_value(kind, seed):
    objective, w, batch, rng = _problem(seed, kind)
    f, g = objective.value_and_grad(w, batch)
    want = _numpy_loss(kind, objective, w, batch)
    assert f == pytest.approx(want, rel=1e-13, abs=1e-15)
    assert objective.value(w, batch) == pytest.approx(want, rel=1e-13, abs=1e-15)
    v = rng.standard_normal(w.size)
    v /= np.linalg.norm(v)
    slope = fd.richardson(lambda t: _numpy_loss(kind, objective, w + t * v, batch), 1e-2)
    assert g @ v == pytest.approx(slope, rel=1e-9, abs=1e-11)
    g2, _ = objective.grad_and_hvp(w, v, batch)
    # the same sums in real and in complex arithmetic: equal up to a few roundings of |g|
    np.testing.assert_allclose(g2, g, rtol=1e-14, atol=8 * np.finfo(float).eps * np.abs(g).max())


@given(kind=kinds, seed=seeds)
def test_symmetry_curvature_and_mixed_directional(kind, seed):
    """u^T (H v) from complex backward passes against one bicomplex forward (no backward)."""
    objective, w, batch, rng = _problem(seed, kind)
    u, v = rng.standard_normal((2, w.size))
    hv, hu = objective.hvp(w, v, batch), objective.hvp(w, u, batch)
    scale = np.abs(u) @ np.abs(hv)  # the size of the terms of u . Hv
    assert u @ hv == pytest.approx(v @ hu, rel=0, abs=1e-13 * scale)
    assert objective.curvature(w, v, batch) == pytest.approx(v @ hv, rel=1e-12, abs=1e-14)
    assert objective.directional(w, [u, v], batch) == pytest.approx(
        u @ hv, rel=0, abs=1e-13 * scale
    )
    assert objective.directional(w, [v], batch) == pytest.approx(
        objective.value_and_grad(w, batch)[1] @ v, rel=1e-12, abs=1e-14
    )


@pytest.mark.slow
@given(kind=kinds, seed=seeds)
def test_third_and_fourth_directional_derivatives_match_differences_of_lower_orders(kind, seed):
    objective, w, batch, rng = _problem(seed, kind)
    v = rng.standard_normal(w.size)
    v /= np.linalg.norm(v)
    third = objective.directional(w, [v, v, v], batch)
    assert third == pytest.approx(fd.third(objective, w, v, batch), rel=1e-9, abs=1e-11)
    fourth = objective.directional(w, [v, v, v, v], batch)
    third_slope = fd.richardson(lambda t: objective.directional(w + t * v, [v, v, v], batch), 1e-2)
    assert fourth == pytest.approx(third_slope, rel=1e-8, abs=1e-10)
    # a mixed third derivative: the slope of the exact u^T H v along v
    u = rng.standard_normal(w.size)
    u /= np.linalg.norm(u)
    mixed_slope = fd.richardson(lambda t: objective.directional(w + t * v, [u, v], batch), 1e-2)
    assert objective.directional(w, [u, v, v], batch) == pytest.approx(
        mixed_slope, rel=1e-9, abs=1e-11
    )


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


@given(n=st.integers(1, 8), d=st.integers(1, 4), seed=seeds)
def test_logistic_regression_closed_forms(n, d, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    y = rng.integers(0, 2, n).astype(np.float64)
    net = nn.Linear(d, 1)
    objective = Objective(net, nn.BCEWithLogitsLoss())
    w = rng.standard_normal(d + 1)  # weight (1, d) then bias (1,)
    features = np.hstack([x, np.ones((n, 1))])
    s = _sigmoid(features @ w)
    f, g = objective.value_and_grad(w, (x, y[:, None]))
    assert f == pytest.approx(np.mean(-y * np.log(s) - (1 - y) * np.log(1 - s)), rel=1e-13)
    np.testing.assert_allclose(g, features.T @ (s - y) / n, rtol=1e-12, atol=1e-15)
    hessian = features.T @ np.diag(s * (1 - s)) @ features / n
    v = rng.standard_normal(d + 1)
    np.testing.assert_allclose(
        objective.hvp(w, v, (x, y[:, None])), hessian @ v, rtol=1e-12, atol=1e-15
    )
    np.testing.assert_allclose(
        objective.hessian(w, (x, y[:, None])), hessian, rtol=1e-12, atol=1e-15
    )


@given(n=st.integers(1, 8), d=st.integers(1, 3), seed=seeds)
def test_two_class_softmax_regression_closed_forms(n, d, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    y = rng.integers(0, 2, n)
    objective = Objective(nn.Linear(d, 2), nn.CrossEntropyLoss())
    weight, bias = rng.standard_normal((2, d)), rng.standard_normal(2)
    w = np.concatenate([weight.ravel(), bias])
    logits = x @ weight.T + bias
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    residual = p - np.eye(2)[y]
    _, g = objective.value_and_grad(w, (x, y))
    np.testing.assert_allclose(
        g, np.concatenate([(residual.T @ x).ravel(), residual.sum(0)]) / n, rtol=1e-12, atol=1e-15
    )
    # H[(a,i),(b,j)] = mean_n p_a (delta_ab - p_b) x_i x_j, features x extended by the bias 1
    cov = np.einsum("na,ab->nab", p, np.eye(2)) - np.einsum("na,nb->nab", p, p)
    hw = np.einsum("nab,ni,nj->aibj", cov, x, x).reshape(2 * d, 2 * d) / n
    hwb = np.einsum("nab,ni->aib", cov, x).reshape(2 * d, 2) / n
    hb = cov.sum(0) / n
    hessian = np.block([[hw, hwb], [hwb.T, hb]])
    np.testing.assert_allclose(objective.hessian(w, (x, y)), hessian, rtol=1e-11, atol=1e-14)


@given(n=st.integers(1, 6), d=st.integers(1, 3), k=st.integers(1, 3), seed=seeds)
def test_linear_least_squares_closed_forms(n, d, k, seed):
    rng = np.random.default_rng(seed)
    x, target = rng.standard_normal((n, d)), rng.standard_normal((n, k))
    objective = Objective(nn.Linear(d, k), nn.MSELoss())
    weight, bias = rng.standard_normal((k, d)), rng.standard_normal(k)
    w = np.concatenate([weight.ravel(), bias])
    r = x @ weight.T + bias - target
    f, g = objective.value_and_grad(w, (x, target))
    assert f == pytest.approx(np.mean(r**2), rel=1e-13)
    np.testing.assert_allclose(
        g, np.concatenate([(r.T @ x).ravel(), r.sum(0)]) * 2 / (n * k), rtol=1e-12, atol=1e-15
    )
    # f is quadratic: H = 2/(nk) [I_k (x) X^T X, I_k (x) X^T 1; ., n I_k]
    eye = np.eye(k)
    hessian = (
        np.block(
            [
                [np.kron(eye, x.T @ x), np.kron(eye, x.sum(0)[:, None])],
                [np.kron(eye, x.sum(0)[None, :]), n * eye],
            ]
        )
        * 2
        / (n * k)
    )
    np.testing.assert_allclose(objective.hessian(w, (x, target)), hessian, rtol=1e-12, atol=1e-14)
    v = rng.standard_normal(w.size)
    assert objective.curvature(w, v, (x, target)) == pytest.approx(v @ hessian @ v, rel=1e-12)
    assert objective.directional(w, [v, v, v], (x, target)) == pytest.approx(0.0, abs=1e-12)


@given(kind=kinds, seed=seeds)
def test_float32_derivatives_agree_with_float64(kind, seed):
    objective, w, batch, rng = _problem(seed, kind, dtype=np.float32)
    assert w.dtype == np.float32
    v = rng.standard_normal(w.size)
    hv32 = objective.hvp(w, v, batch)
    curvature32 = objective.curvature(w, v, batch)
    assert hv32.dtype == np.float32
    objective.module.to(dtype=np.float64)
    w64 = w.astype(np.float64)
    hv64 = objective.hvp(w64, v, (batch[0].astype(np.float64), batch[1]))
    np.testing.assert_allclose(hv32, hv64, rtol=1e-3, atol=1e-4 * np.max(np.abs(hv64)))
    assert curvature32 == pytest.approx(v @ hv64, rel=1e-3, abs=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_default_step_keeps_products_of_perturbations_normal(dtype):
    """Subnormal products are slow; h**(2k) must stay a normal number, h**2 below roundoff."""
    tiny = np.finfo(dtype).tiny
    for order in (1, 2, 3):
        h = mc.default_step(dtype, order)
        assert dtype(h) ** (2 * order) >= tiny
        assert h**2 < np.finfo(dtype).eps / 100
    # H v's complex pass: products of two imaginary parts of activations as small as 2**-60
    # stay normal (float32's old 2**-48 step sent them subnormal, 15% of a LeNet-5 H v)
    h = mc.default_step(dtype, 1)
    assert dtype(h) ** 2 * dtype(2.0**-60) >= tiny


def test_float32_hvp_survives_tiny_directions_and_curvature():
    """A direction of size 1e-30 and a nearly flat loss still give Hv, not zeros."""
    objective, w, batch, rng = _problem(3, "mlp", dtype=np.float32)
    v = rng.standard_normal(w.size)
    hv = objective.hvp(w, v, batch)
    np.testing.assert_allclose(
        objective.hvp(w, v * 1e-30, batch), hv * np.float32(1e-30), rtol=1e-5
    )
    assert np.all(np.isfinite(hv)) and np.count_nonzero(hv) == hv.size


@given(seed=seeds)
def test_squared_hinge_and_relu_network(seed):
    """Piecewise polynomial of degree 4 in w: away from kinks, Richardson differences of the
    gradient over two levels are exact up to roundoff."""
    _, _, batch, rng = _problem(seed)
    objective = Objective(
        nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 3)), nn.SquaredHingeLoss()
    )
    w = nn.parameters_to_vector(objective.module)
    v = rng.standard_normal(w.size)
    assume(fd.same_branches(objective, w, v, batch, 1e-4))
    hv = objective.hvp(w, v, batch)
    fd.assert_close(hv, fd.hvp(objective, w, v, batch, eps=1e-4, levels=2), 1e-9, "H v")
    assert objective.curvature(w, v, batch) == pytest.approx(v @ hv, rel=1e-12, abs=1e-14)


# --- state and errors ---------------------------------------------------------------------


def _snapshot(module):
    return [(p.value, p.grad) for p in module.parameters()]


def test_parameters_are_restored_after_every_call_and_after_errors():
    objective, w, batch, rng = _problem(0)
    net = objective.module
    for p in net.parameters():  # stale gradients must neither leak in nor be lost
        p.grad = mc.tensor(np.ones(p.shape))
    _, clean = Objective(net, nn.CrossEntropyLoss()).value_and_grad(w, batch)
    before = _snapshot(net)
    v = rng.standard_normal(w.size)
    w2 = w + 1.0
    objective.value(w2, batch)
    objective.value_and_grad(w2, batch)
    objective.grad_and_hvp(w2, v, batch)
    objective.curvature(w2, v, batch)
    objective.directional(w2, [v, v, v], batch)
    with pytest.raises(ValueError):
        objective.value_and_grad(w2, (batch[0][:, :2], batch[1]))
    with pytest.raises(ValueError):
        objective.hvp(w2, v, (batch[0], batch[1] + 5))
    after = _snapshot(net)
    assert all(a[0] is b[0] and a[1] is b[1] for a, b in zip(before, after))
    np.testing.assert_array_equal(nn.parameters_to_vector(net), w)
    for p in net.parameters():
        p.grad = None
    np.testing.assert_array_equal(objective.value_and_grad(w, batch)[1], clean)


def test_bad_inputs_name_what_was_expected():
    objective, w, batch, rng = _problem(0)
    n = w.size
    with pytest.raises(ValueError, match=rf"shape \({n},\).*got shape \({n - 1},\)"):
        objective.value(w[:-1], batch)
    with pytest.raises(ValueError, match=rf"shape \({n},\).*got shape \({n + 1},\)"):
        objective.hvp(w, np.zeros(n + 1), batch)
    with pytest.raises(ValueError, match=r"last dimension 3, got shape \(6, 2\)"):
        objective.value(w, (batch[0][:, :2], batch[1]))
    with pytest.raises(ValueError, match=r"labels in \[0, 2\]"):
        objective.value_and_grad(w, (batch[0], batch[1] + 3))
    with pytest.raises(ValueError, match=r"labels of shape \(6,\).*got shape \(5,\)"):
        objective.value(w, (batch[0], batch[1][:5]))
    with pytest.raises(ValueError, match="expected a batch"):
        objective.value(w, batch[0])
    with pytest.raises(ValueError, match="direction 1"):
        objective.directional(w, [w, w[:2]], batch)


@pytest.mark.parametrize("method", ["value", "value_and_grad", "hvp", "curvature"])
def test_an_empty_batch_is_refused_by_name(method):
    """An empty batch has no mean loss; the error says so (it was "cannot reshape array of
    size 0" from LeNet-5's first convolution)."""
    net = nn.models.lenet5()
    objective = Objective(net, nn.CrossEntropyLoss())
    w = nn.parameters_to_vector(net)
    empty = (np.zeros((0, 1, 28, 28)), np.zeros(0, dtype=np.int64))
    args = (w, w, empty) if method in ("hvp", "curvature") else (w, empty)
    with pytest.raises(ValueError, match=r"the batch is empty: inputs of shape \(0, 1, 28, 28\)"):
        getattr(objective, method)(*args)


def test_data_stays_real_and_the_hvp_pass_is_complex():
    objective, w, batch, rng = _problem(0, "mlp")
    seen = []
    first = objective.module[0]
    forward = first.forward

    def spy(x):
        seen.append(x.order)
        y = forward(x)
        seen.append(y.order)
        return y

    first.forward = spy
    objective.hvp(w, rng.standard_normal(w.size), batch)
    objective.curvature(w, rng.standard_normal(w.size), batch)
    assert seen == [0, 1, 0, 2]


def test_unused_parameters_get_zero_gradient():
    class Partial(nn.Module):
        def __init__(self):
            super().__init__()
            self.used = nn.Linear(2, 2)
            self.unused = nn.Linear(2, 2)

        def forward(self, x):
            return self.used(x)

    objective = Objective(Partial(), nn.MSELoss())
    w = nn.parameters_to_vector(objective.module)
    x = np.ones((3, 2))
    _, g = objective.value_and_grad(w, (x, np.zeros((3, 2))))
    assert np.all(g[6:] == 0) and np.any(g[:6] != 0)
    assert mc.as_tensor(g).order == 0


@given(seed=st.integers(0, 2**32 - 1))
def test_a_layer_used_twice_gets_both_gradients(seed):
    """One Linear applied twice (tied weights): the first gradient goes into the flat
    vector's slot, the second adds to it.  Against the gradient written out by hand: for
    y = W tanh(W x + b) + b and the mean of y^2 over the batch's elements."""
    rng = np.random.default_rng(seed)

    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = nn.Linear(3, 3)

        def forward(self, x):
            return self.layer(mc.tanh(self.layer(x)))

    objective = Objective(Twice(), nn.MSELoss())
    w = rng.standard_normal(12)
    x = rng.standard_normal((5, 3))
    weight, bias = w[:9].reshape(3, 3), w[9:]
    hidden = np.tanh(x @ weight.T + bias)
    y = hidden @ weight.T + bias
    g_y = 2 * y / y.size
    g_pre = (g_y @ weight) * (1 - hidden**2)
    g_weight = g_y.T @ hidden + g_pre.T @ x
    g_bias = g_y.sum(0) + g_pre.sum(0)
    _, g = objective.value_and_grad(w, (x, np.zeros((5, 3))))
    np.testing.assert_allclose(g, np.concatenate([g_weight.ravel(), g_bias]), rtol=1e-12,
                               atol=1e-15)  # fmt: skip


def _mlp_output_jacobians(x, w1, b1, w2, b2):
    """Outputs y_n = W2 tanh(W1 x_n + b1) + b2 and their Jacobians J_n (c, P) in the
    parameters, in mcnet's order (W1 row-major, b1, W2 row-major, b2), written out by hand."""
    n, (h, d), c = len(x), w1.shape, w2.shape[0]
    a = np.tanh(x @ w1.T + b1)  # (n, h)
    y = a @ w2.T + b2
    back = w2[None] * (1 - a * a)[:, None, :]  # dy/dz1: (n, c, h)
    jacobians = np.concatenate(
        [
            np.einsum("nch,nd->nchd", back, x).reshape(n, c, h * d),  # d y / d W1
            back,  # d y / d b1
            np.einsum("ci,nj->ncij", np.eye(c), a).reshape(n, c, c * h),  # d y / d W2
            np.broadcast_to(np.eye(c), (n, c, c)),  # d y / d b2
        ],
        axis=2,
    )
    return y, jacobians


@given(
    n=st.integers(1, 6),
    d=st.integers(1, 4),
    h=st.integers(1, 4),
    c=st.integers(2, 4),
    seed=seeds,
    loss_kind=st.sampled_from(["cross-entropy", "mse"]),
)
def test_gauss_newton_product_matches_the_hand_written_jacobians(n, d, h, c, seed, loss_kind):
    """G v = (1/N) sum_n J_n^T H_n J_n v for a tanh MLP: H_n = diag(p_n) - p_n p_n^T for the
    mean cross-entropy, 2/c I for the mean squared error over all N c outputs; both written
    out by hand (no mcnet derivative is used for the reference)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    w1, b1 = rng.standard_normal((h, d)), rng.standard_normal(h)
    w2, b2 = rng.standard_normal((c, h)), rng.standard_normal(c)
    w = np.concatenate([w1.ravel(), b1, w2.ravel(), b2])
    v = rng.standard_normal(w.size)
    y, jacobians = _mlp_output_jacobians(x, w1, b1, w2, b2)
    if loss_kind == "cross-entropy":
        targets, loss = rng.integers(0, c, n), nn.CrossEntropyLoss()
        p = np.exp(y - y.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        output_hessians = np.einsum("na,ab->nab", p, np.eye(c)) - np.einsum("na,nb->nab", p, p)
    else:
        targets, loss = rng.standard_normal((n, c)), nn.MSELoss()
        output_hessians = np.broadcast_to(2.0 / c * np.eye(c), (n, c, c))
    expected = np.einsum("nap,nab,nbq,q->p", jacobians, output_hessians, jacobians, v) / n
    net = nn.Sequential(nn.Linear(d, h), nn.Tanh(), nn.Linear(h, c))
    got = Objective(net, loss).gauss_newton_product(w, v, (x, targets))
    np.testing.assert_allclose(got, expected, rtol=1e-11, atol=1e-13 * np.abs(expected).max())


@pytest.mark.parametrize("pool", [nn.AvgPool2d, nn.MaxPool2d])
def test_gauss_newton_product_through_conv_batchnorm_and_pooling(pool):
    """G v = J^T H_L J v on a small convolutional network with batch norm (every sample's
    output depends on the whole batch), J column by column from one complex-step forward per
    parameter (forward passes only: none of the backward code the product runs) and H_L of
    the mean cross-entropy written out by hand. Guards the product's backward, which reads
    the real parts of what the complex forward kept in every kind of layer."""
    rng = np.random.default_rng(3)
    n, c = 5, 3
    nn.manual_seed(4)
    net = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1),
        nn.BatchNorm2d(3),
        nn.Sigmoid(),
        pool(2),
        nn.Flatten(),
        nn.Linear(12, c),
    )
    x = rng.standard_normal((n, 2, 4, 4))
    targets = rng.integers(0, c, n)
    w = nn.parameters_to_vector(net)
    v = rng.standard_normal(w.size)
    h = 1e-30
    outputs = net(mc.tensor(x)).real
    jacobian = np.empty((n * c, w.size))  # rows: (sample, class)
    for j in range(w.size):
        nn.vector_to_parameters(mc.perturb(w, [np.eye(w.size)[j]], h), net)
        jacobian[:, j] = net(mc.tensor(x)).coef((1,)).ravel() / h
    nn.vector_to_parameters(w, net)
    p = np.exp(outputs - outputs.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    output_hessian = np.zeros((n * c, n * c))
    for i in range(n):
        block = slice(i * c, (i + 1) * c)
        output_hessian[block, block] = (np.diag(p[i]) - np.outer(p[i], p[i])) / n
    expected = jacobian.T @ output_hessian @ jacobian @ v
    got = Objective(net, nn.CrossEntropyLoss()).gauss_newton_product(w, v, (x, targets))
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12 * np.abs(expected).max())


def test_gauss_newton_product_is_real_when_a_layer_keeps_complex_values_out_of_reach():
    """A layer that keeps its input in a dict (where the product's switch to real parts
    does not look) runs its backward on complex values: the product must still be real and
    equal the plain layer's."""

    class DictLinear(nn.Linear):
        def forward(self, x):
            y = super().forward(x)
            self.saved = {"x": self.saved}
            return y

        def backward(self, grad_out):
            self.saved = self.saved["x"]
            return super().backward(grad_out)

    rng = np.random.default_rng(0)
    x, targets = rng.standard_normal((6, 3)), rng.integers(0, 2, 6)
    products = []
    for layer in (nn.Linear, DictLinear):
        nn.manual_seed(0)
        net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), layer(4, 2))
        w = nn.parameters_to_vector(net)
        v = np.random.default_rng(1).standard_normal(w.size)
        objective = Objective(net, nn.CrossEntropyLoss())
        products.append(objective.gauss_newton_product(w, v, (x, targets)))
    assert products[1].dtype == np.float64
    np.testing.assert_allclose(products[1], products[0], rtol=1e-13, atol=1e-15)


def test_the_switch_to_real_parts_reaches_a_saved_dataclass():
    """Conv2d keeps its state in a dataclass: the Gauss-Newton product's switch to real parts
    reaches the input it saved there (else its backward would run complex GEMMs)."""
    from mcnet.nn.objective import _real_parts

    conv = nn.Conv2d(2, 3, 3, stride=2)  # stride 2: im2col, which saves the input
    x = mc.from_parts(np.random.default_rng(0).standard_normal((2, 1, 2, 5, 5)))
    conv(x)
    conv.map_saved(_real_parts)
    assert conv.saved.data.order == 0
    np.testing.assert_array_equal(conv.saved.data.numpy(), x.real)


# --- blocks of directions -----------------------------------------------------------------------


@given(kind=kinds, seed=seeds)
def test_a_block_of_directions_gives_one_product_per_row(kind, seed):
    objective, w, batch, rng = _problem(seed, kind)
    block = rng.standard_normal((3, w.size))
    products = objective.hvp(w, block, batch)
    assert products.shape == (3, w.size)
    for row, product in zip(block, products):
        np.testing.assert_array_equal(product, objective.hvp(w, row, batch))
    fd.assert_close(products[1], fd.hvp(objective, w, block[1], batch), 1e-9, "H v, row 1")
    g, products2 = objective.grad_and_hvp(w, block, batch)
    np.testing.assert_array_equal(products2, products)
    _, g_real = objective.value_and_grad(w, batch)
    np.testing.assert_allclose(g, g_real, rtol=1e-14, atol=8e-16 * np.abs(g_real).max())
    curvatures = objective.curvature(w, block, batch)
    assert curvatures.shape == (3,)
    np.testing.assert_allclose(
        curvatures,
        np.einsum("kn,kn->k", block, products),
        rtol=1e-12,
        atol=1e-14 * np.abs(block).max() * np.abs(products).max(),
    )
    # one direction keeps its shapes
    assert objective.hvp(w, block[0], batch).shape == (w.size,)
    assert isinstance(objective.curvature(w, block[0], batch), float)


def test_block_edge_cases_and_errors():
    objective, w, batch, rng = _problem(0)
    n = w.size
    assert objective.hvp(w, np.zeros((0, n)), batch).shape == (0, n)
    assert objective.curvature(w, np.zeros((0, n)), batch).shape == (0,)
    with pytest.raises(ValueError, match=rf"row 0 of V of the parameter vector's shape \({n},\)"):
        objective.hvp(w, np.zeros((2, n + 1)), batch)
    with pytest.raises(ValueError, match=rf"expected v .*got shape \(1, 2, {n}\)"):
        objective.hvp(w, np.zeros((1, 2, n)), batch)
    hessian = objective.hessian(w, batch)
    np.testing.assert_allclose(hessian, hessian.T, rtol=0, atol=0)


# --- BatchNorm's running statistics: one rule -----------------------------------------------------


def test_no_objective_method_moves_batchnorm_statistics_and_the_update_call_does():
    rng = np.random.default_rng(0)
    nn.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Tanh(), nn.Linear(4, 2))
    objective = Objective(net, nn.CrossEntropyLoss())
    w = nn.parameters_to_vector(net)
    x, y = rng.standard_normal((6, 3)), rng.integers(0, 2, 6)
    batch = (x, y)
    v = rng.standard_normal(w.size)
    block = rng.standard_normal((2, w.size))
    before = net.state_dict()
    for call in (
        lambda: objective.value(w, batch),
        lambda: objective.value_and_grad(w, batch),
        lambda: objective.hvp(w, v, batch),
        lambda: objective.grad_and_hvp(w, v, batch),
        lambda: objective.hvp(w, block, batch),
        lambda: objective.curvature(w, v, batch),
        lambda: objective.directional(w, [v, v, v], batch),
        lambda: objective.gauss_newton_product(w, v, batch),
        lambda: objective.hessian(w, batch),
    ):
        call()
        for key, value in net.state_dict().items():
            np.testing.assert_array_equal(value, before[key], err_msg=key)
    objective.update_running_statistics(w + 0.5, batch)
    weight, bias = (w + 0.5)[:12].reshape(4, 3), (w + 0.5)[12:16]
    z = x @ weight.T + bias
    np.testing.assert_allclose(net[1].buffer("running_mean"), 0.1 * z.mean(0), rtol=1e-14)
    np.testing.assert_allclose(
        net[1].buffer("running_var"), 0.9 + 0.1 * z.var(0, ddof=1), rtol=1e-14
    )
    assert net[1].buffer("num_batches_tracked") == 1
    np.testing.assert_array_equal(nn.parameters_to_vector(net), w)
    net.eval()  # nothing to update in eval mode
    objective.update_running_statistics(w, batch)
    assert net[1].buffer("num_batches_tracked") == 1


def test_fit_updates_batchnorm_statistics_once_per_step():
    rng = np.random.default_rng(0)
    nn.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Tanh(), nn.Linear(4, 2))
    x, y = rng.standard_normal((24, 3)), rng.integers(0, 2, 24)
    mc.fit(net, nn.CrossEntropyLoss(), (x, y), mc.solvers.NewtonKrylov(), epochs=2, batch_size=8)
    assert net[1].buffer("num_batches_tracked") == 2 * 3


def _batch_statistics_by_hand(net, x, batch_size):
    """The first BatchNorm1d's inputs z = x W^T + b, and the count-weighted means of their
    per-batch mean and unbiased variance over np.array_split's batches."""
    w = nn.parameters_to_vector(net)
    z = x @ w[:12].reshape(4, 3).T + w[12:16]
    parts = np.array_split(np.arange(len(x)), max(1, len(x) // batch_size))
    mean = sum(len(p) * z[p].mean(0) for p in parts) / len(x)
    var = sum(len(p) * z[p].var(0, ddof=1) for p in parts) / len(x)
    return mean, var


def test_recompute_running_statistics_is_the_mean_of_the_batch_statistics():
    rng = np.random.default_rng(1)
    nn.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Tanh(), nn.Dropout(0.5), nn.Linear(4, 2)
    )
    x = rng.standard_normal((300, 3)) * 2.0 + 1.0
    assert nn.recompute_running_statistics(net, x, batch_size=128)
    mean, var = _batch_statistics_by_hand(net, x, 128)
    np.testing.assert_allclose(net[1].buffer("running_mean"), mean, rtol=1e-13)
    np.testing.assert_allclose(net[1].buffer("running_var"), var, rtol=1e-13)
    # left as they were: the momentum, the step count, every layer's mode
    assert net[1].momentum == 0.1 and net[1].buffer("num_batches_tracked") == 0
    assert all(m.training for m in net.modules())
    net.eval()
    assert not nn.recompute_running_statistics(net, x)  # eval mode: nothing to set
    assert not nn.recompute_running_statistics(nn.Linear(3, 2), x)


def test_fit_recomputes_batchnorm_statistics_before_evaluating_and_trains_the_same():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((40, 3)), rng.integers(0, 2, 40)
    runs = {}
    # no epoch rollback: it reads the eval-mode training loss, which the rule changes
    solver = mc.solvers.NewtonKrylov(epoch_rollback=None)
    for rule in ("recompute", "running"):
        nn.manual_seed(0)
        net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Tanh(), nn.Linear(4, 2))
        history = mc.fit(
            net, nn.CrossEntropyLoss(), (x, y), solver, epochs=2, batch_size=8,
            batchnorm_statistics=rule,
        )  # fmt: skip
        runs[rule] = net, history
    recomputed, running = runs["recompute"][0], runs["running"][0]
    w = nn.parameters_to_vector(recomputed)
    np.testing.assert_array_equal(w, nn.parameters_to_vector(running))  # same training
    mean, var = _batch_statistics_by_hand(recomputed, x, 8)
    np.testing.assert_allclose(recomputed[1].buffer("running_mean"), mean, rtol=1e-13)
    np.testing.assert_allclose(recomputed[1].buffer("running_var"), var, rtol=1e-13)
    assert not np.allclose(running[1].buffer("running_mean"), mean, rtol=1e-3)
    assert recomputed[1].buffer("num_batches_tracked") == 2 * 5  # still once per step
    # the reported training loss is eval mode's at the recomputed statistics
    z = np.tanh(
        (x @ w[:12].reshape(4, 3).T + w[12:16] - mean) / np.sqrt(var + 1e-5) * w[16:20] + w[20:24]
    )
    logits = z @ w[24:32].reshape(2, 4).T + w[32:34]
    log_softmax = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    expected = -log_softmax[np.arange(40), y].mean()
    assert runs["recompute"][1].train_loss[-1] == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="batchnorm_statistics"):
        mc.fit(
            recomputed,
            nn.CrossEntropyLoss(),
            (x, y),
            mc.solvers.Adam(),
            1,
            batchnorm_statistics="ema",
        )


def _unaligned(a: np.ndarray, offset: int) -> np.ndarray:
    """A read-only copy of ``a`` at a byte offset in its buffer, as an array rebuilt from a
    network message (a Dask worker's arguments) can be."""
    buffer = np.zeros(a.nbytes + 16, dtype=np.uint8)
    copy = buffer[offset : offset + a.nbytes].view(a.dtype).reshape(a.shape)
    copy[...] = a
    copy.flags.writeable = False
    return copy


@pytest.mark.parametrize("offset", [1, 3, 4, 12])
def test_unaligned_arrays_give_the_same_bits_as_aligned_ones(offset):
    """w, v and the inputs at a byte offset that is no multiple of their item size: the
    same loss, gradient and H v to the last bit (NumPy hands unaligned operands to its own
    GEMM loop, which sums in another order than BLAS)."""
    nn.manual_seed(0)
    net = nn.models.mlp([64, 32, 10], "tanh")
    objective = Objective(net, nn.CrossEntropyLoss())
    rng = np.random.default_rng(offset)
    x, y = rng.standard_normal((128, 64)), rng.integers(0, 10, 128)
    w = nn.parameters_to_vector(net)
    v = rng.standard_normal(w.shape)
    assert not _unaligned(w, offset).flags.aligned
    aligned = objective.value_and_grad(w, (x, y)), objective.hvp(w, v, (x, y))
    moved = [_unaligned(a, offset) for a in (w, v, x)]
    unaligned = (
        objective.value_and_grad(moved[0], (moved[2], y)),
        objective.hvp(moved[0], moved[1], (moved[2], y)),
    )
    assert aligned[0][0] == unaligned[0][0]
    np.testing.assert_array_equal(aligned[0][1], unaligned[0][1])
    np.testing.assert_array_equal(aligned[1], unaligned[1])
