"""Leaf modules and losses: hand-written backward against multicomplex-step derivatives.

For a module y = F(x) at a real or complex (order-1) point x, J v is read off one
forward pass at x + h i_new v (the coefficient of the new unit, over h), which never calls
backward.  Backward must then satisfy <J^T u, v> = <u, J v> for random u, v -- with the
bilinear (unconjugated) pairing, since the backward is the holomorphic continuation of the
real one.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import mcnet as mc
from mcnet import nn

STEP = 2.0**-30


def _point(rng, shape, order, dtype):
    """A random real (order 0) or complex (order 1) tensor."""
    parts = rng.standard_normal((2**order,) + shape).astype(dtype)
    return mc.from_parts(parts)


def _jvp(fn, xs, vs):
    """J v of fn at the points xs (order n <= 1) along real directions vs, by one forward.

    Each input gets the unit i_{n+1} with coefficient h v; the output's coefficients that
    carry i_{n+1} are h (J v), an order-n tensor.
    """
    order = max(x.order for x in xs)
    perturbed = []
    for x, v in zip(xs, vs):
        parts = np.zeros((2 ** (order + 1),) + x.shape, dtype=x.dtype)
        parts[: 2**x.order] = x.parts
        parts[2**order] = STEP * v
        perturbed.append(mc.from_parts(parts))
    y = fn(*perturbed)
    return mc.from_parts(y.parts[2**order :] / STEP)


def _pair(a, b):
    """sum(a * b), bilinear (no conjugation), as API-layout parts."""
    return (mc.as_tensor(a) * b).sum().parts


def _check_module(module, xs, rng, rtol):
    """Backward's J^T u against J^T u by one probing forward per input entry, element by
    element (real and i_1 parts at a complex point): <J^T u, e_i> = <u, J e_i>."""
    y = module(*xs)
    u = _point(rng, y.shape, max(x.order for x in xs), xs[0].dtype)
    grads = module.backward(u)
    grads = grads if isinstance(grads, tuple) else (grads,)
    assert len(grads) == len(xs)
    order = max(x.order for x in xs)
    for j, (g, x) in enumerate(zip(grads, xs)):
        assert g.shape == x.shape
        got = mc.functions.embed(g, order).parts
        want = np.empty_like(got, dtype=np.float64)
        for i in np.ndindex(*x.shape):
            e = np.zeros(x.shape, dtype=x.dtype)
            e[i] = 1
            directions = [
                e if m == j else np.zeros(xi.shape, dtype=xi.dtype) for m, xi in enumerate(xs)
            ]
            jv = _jvp(module.forward, xs, directions)
            want[(slice(None),) + i] = _pair(u, jv)
        scale = np.abs(want).max()
        np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale, err_msg=f"input {j}")


shapes = st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple)
dtypes = st.sampled_from([np.float64, np.float32])
orders = st.sampled_from([0, 1])
seeds = st.integers(0, 2**31 - 1)


def _rtol(dtype):
    return 1e-12 if dtype == np.float64 else 1e-5


ELEMENTWISE = {
    "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU, "softplus": nn.Softplus,
    "sin": nn.Sin, "identity": nn.Identity, "elu": lambda: nn.ELU(0.7),
}  # fmt: skip


@pytest.mark.parametrize("order", [0, 1])  # 1: the complex point of the H v pass
@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
@given(shape=shapes, dtype=dtypes, seed=seeds)
def test_elementwise_backward_is_the_transpose_of_the_forward_derivative(
    name, order, shape, dtype, seed
):
    make = ELEMENTWISE[name]
    rng = np.random.default_rng(seed)
    _check_module(make(), [_point(rng, shape, order, dtype)], rng, _rtol(dtype))


@given(
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple),
    data=st.data(),
    order=orders,
    seed=seeds,
)
def test_flatten_backward_and_shape(shape, data, order, seed):
    ndim = len(shape)
    start = data.draw(st.integers(-ndim, ndim - 1))
    end = data.draw(st.integers(start % ndim, ndim - 1))
    rng = np.random.default_rng(seed)
    x = _point(rng, shape, order, np.float64)
    flat = nn.Flatten(start, end)
    y = flat(x)
    s, e = start % ndim, end
    assert y.shape == shape[:s] + (int(np.prod(shape[s : e + 1])),) + shape[e + 1 :]
    _check_module(flat, [x], rng, 1e-12)


def test_flatten_defaults_match_pytorch_and_reject_scalars():
    x = mc.tensor(np.arange(24.0).reshape(2, 3, 4))
    assert nn.Flatten()(x).shape == (2, 12)
    with pytest.raises(ValueError, match="got shape \\(\\)"):
        nn.Flatten()(mc.tensor(1.0))


@given(shape=shapes, broadcast=st.booleans(), dtype=dtypes, order=orders, seed=seeds)
def test_add_backward_including_broadcasting(shape, broadcast, dtype, order, seed):
    rng = np.random.default_rng(seed)
    a = _point(rng, shape, order, dtype)
    b_shape = (1,) * (len(shape) - 1) + shape[-1:] if broadcast else shape
    b = _point(rng, b_shape, 0, dtype)
    _check_module(nn.Add(), [a, b], rng, _rtol(dtype))


@given(
    sizes=st.lists(st.integers(1, 3), min_size=1, max_size=3),
    dim=st.sampled_from([0, 1, -1]),
    orders_=st.lists(orders, min_size=3, max_size=3),
    seed=seeds,
)
def test_concat_backward_splits_the_gradient(sizes, dim, orders_, seed):
    rng = np.random.default_rng(seed)
    base = [2, 3, 2]
    xs = []
    for n, order in zip(sizes, orders_):
        shape = list(base)
        shape[dim] = n
        xs.append(_point(rng, tuple(shape), order, np.float64))
    y = nn.Concat(dim)(*xs)
    assert y.shape[dim % 3] == sum(sizes)
    np.testing.assert_array_equal(y.real, np.concatenate([x.real for x in xs], axis=dim))
    _check_module(nn.Concat(dim), xs, rng, 1e-12)


def test_concat_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="agree except on dim 1"):
        nn.Concat(1)(mc.tensor(np.zeros((2, 3))), mc.tensor(np.zeros((3, 3))))


class Residual(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.lin = nn.Linear(width, width)
        self.act = nn.Tanh()
        self.add = nn.Add()

    def forward(self, x):
        return self.add(x, self.act(self.lin(x)))


class TwoBranches(nn.Module):
    """A residual block, then two branches joined by Concat and a head."""

    def __init__(self):
        super().__init__()
        self.res = Residual(3)
        self.left = nn.Linear(3, 2)
        self.right = nn.Sequential(nn.Linear(3, 4), nn.ELU())
        self.cat = nn.Concat(1)
        self.head = nn.Linear(6, 2)

    def forward(self, x):
        h = self.res(x)
        return self.head(self.cat(self.left(h), self.right(h)))


@given(order=orders, seed=seeds)
def test_graphs_whose_branches_merge_trace_and_backpropagate(order, seed):
    nn.manual_seed(seed)
    rng = np.random.default_rng(seed)
    for net in (Residual(3), TwoBranches()):
        _check_module(net, [_point(rng, (4, 3), order, np.float64)], rng, 1e-10)
    steps = TwoBranches().graph().steps
    assert [type(s.module).__name__ for s in steps].count("Add") == 1
    assert [type(s.module).__name__ for s in steps][-2:] == ["Concat", "Linear"]


def test_residual_output_is_input_plus_branch():
    nn.manual_seed(0)
    net = Residual(3)
    x = np.random.default_rng(0).standard_normal((5, 3))
    w, b = net.lin.weight.value.numpy(), net.lin.bias.value.numpy()
    np.testing.assert_allclose(net(x).real, x + np.tanh(x @ w.T + b), rtol=1e-14)


def test_activations_match_their_real_formulas():
    x = np.linspace(-4, 4, 17)
    t = mc.tensor(x)
    np.testing.assert_allclose(nn.Sigmoid()(t).real, 1 / (1 + np.exp(-x)), rtol=1e-14)
    np.testing.assert_allclose(nn.Tanh()(t).real, np.tanh(x), rtol=1e-14)
    np.testing.assert_array_equal(nn.ReLU()(t).real, np.maximum(x, 0))
    np.testing.assert_allclose(
        nn.ELU(0.5)(t).real, np.where(x > 0, x, 0.5 * np.expm1(x)), rtol=1e-14, atol=1e-16
    )
    np.testing.assert_allclose(nn.Softplus()(t).real, np.log1p(np.exp(x)), rtol=1e-14)
    np.testing.assert_allclose(nn.Sin()(t).real, np.sin(x), rtol=1e-14)
    # ReLU's derivative at 0 is 0 (PyTorch's rule)
    relu = nn.ReLU()
    relu(mc.tensor(np.array([0.0, 1.0])))
    np.testing.assert_array_equal(relu.backward(mc.tensor(np.ones(2))).real, [0.0, 1.0])


# --- losses --------------------------------------------------------------------------------


def _ce_reference(x, y):
    shifted = x - x.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -log_p[np.arange(len(y)), y].mean()


def _hinge_reference(x, y):
    n, c = x.shape
    total = 0.0
    for i in range(n):
        for j in range(c):
            if j != y[i]:
                total += max(0.0, 1.0 - x[i, y[i]] + x[i, j]) ** 2
    return total / c / n


def _bce_reference(x, t):
    s = 1 / (1 + np.exp(-x))
    return np.mean(-t * np.log(s) - (1 - t) * np.log(1 - s))


def _classification(rng, n, c):
    return rng.integers(0, c, n)


LOSSES = {
    "ce": (nn.CrossEntropyLoss, _ce_reference, "labels"),
    "hinge": (nn.SquaredHingeLoss, _hinge_reference, "labels"),
    "mse": (nn.MSELoss, lambda x, t: np.mean((x - t) ** 2), "real"),
    "bce": (nn.BCEWithLogitsLoss, _bce_reference, "probabilities"),
}


def _target(kind, rng, shape):
    if kind == "labels":
        return rng.integers(0, shape[1], shape[0])
    if kind == "probabilities":
        return rng.uniform(0, 1, shape)
    return rng.standard_normal(shape)


@given(
    name=st.sampled_from(sorted(LOSSES)),
    n=st.integers(1, 5),
    c=st.integers(2, 4),
    dtype=dtypes,
    order=orders,
    seed=seeds,
)
def test_loss_backward_is_the_gradient_of_its_forward(name, n, c, dtype, order, seed):
    make, reference, kind = LOSSES[name]
    rng = np.random.default_rng(seed)
    x = _point(rng, (n, c), order, dtype)
    x = mc.from_parts(x.parts * 2)  # logits of size ~2 make margins active and inactive
    target = _target(kind, rng, (n, c))
    loss = make()
    value = loss(x, target)
    assert value.shape == ()
    if order == 0:
        # the loss is a difference of terms of the logits' size: a small loss is relative
        # to those
        np.testing.assert_allclose(
            value.real,
            reference(x.real.astype(np.float64), target),
            rtol=_rtol(dtype),
            atol=_rtol(dtype) * np.abs(x.real).max(),
        )
    grad = loss.backward()
    # the gradient entry by entry against one probing forward each
    got = mc.functions.embed(grad, order).parts
    want = np.empty_like(got, dtype=np.float64)
    for i in np.ndindex(n, c):
        e = np.zeros((n, c), dtype=dtype)
        e[i] = 1
        want[(slice(None),) + i] = _jvp(lambda t: make()(t, target), [x], [e]).parts
    # cross-entropy's softmax - one-hot (and BCE's sigmoid - y) cancel where the logits are
    # confident: roundoff of terms of size 1/n
    np.testing.assert_allclose(
        got, want, rtol=_rtol(dtype), atol=_rtol(dtype) * (np.abs(want).max() + 1.0 / n)
    )
    # an incoming scalar gradient scales the result
    np.testing.assert_allclose(
        loss.backward(mc.tensor(3.0, dtype=dtype)).parts, 3 * grad.parts, rtol=_rtol(dtype)
    )


def test_squared_hinge_matches_the_definition_at_known_margins():
    x = np.array([[2.0, 1.5, -3.0], [0.0, 0.0, 0.0]])
    y = np.array([0, 2])
    # row 0: j=1 margin 0.5, j=2 inactive; row 1: margins 1, 1
    expected = (0.5**2 + 1.0 + 1.0) / 3 / 2
    assert nn.SquaredHingeLoss()(x, y).item() == pytest.approx(expected, rel=1e-15)


@pytest.mark.parametrize("make", [nn.CrossEntropyLoss, nn.SquaredHingeLoss])
def test_label_errors_say_what_was_expected(make):
    x = np.zeros((3, 4))
    with pytest.raises(ValueError, match=r"labels in \[0, 3\].*got values in \[0, 4\]"):
        make()(x, np.array([0, 1, 4]))
    with pytest.raises(ValueError, match=r"got values in \[-1, 1\]"):
        make()(x, np.array([0, 1, -1]))
    with pytest.raises(ValueError, match="integer class labels, got dtype float64"):
        make()(x, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match=r"shape \(3,\).*got shape \(2,\)"):
        make()(x, np.array([0, 1]))
    with pytest.raises(ValueError, match=r"shape \(3,\).*got shape \(3, 1\)"):
        make()(x, np.array([[0], [1], [2]]))
    with pytest.raises(ValueError, match=r"logits of shape \(N, C\), got shape \(4,\)"):
        make()(np.zeros(4), np.array([0]))


@pytest.mark.parametrize("make", [nn.MSELoss, nn.BCEWithLogitsLoss])
def test_real_target_shape_errors(make):
    with pytest.raises(ValueError, match=r"input's shape \(3, 2\), got shape \(2, 2\)"):
        make()(np.zeros((3, 2)), np.zeros((2, 2)))


def test_float32_losses_keep_float32():
    x = mc.tensor(np.ones((2, 3), dtype=np.float32))
    assert nn.MSELoss()(x, np.zeros((2, 3))).dtype == np.float32
    assert nn.CrossEntropyLoss()(x, np.array([0, 2])).dtype == np.float32


# --- parameter vectors -----------------------------------------------------------------------


def test_parameter_vector_round_trip_in_named_parameters_order():
    nn.manual_seed(1)
    net = nn.Sequential(nn.Linear(3, 2), nn.Tanh(), nn.Linear(2, 1))
    expected = np.concatenate([p.value.numpy().ravel() for _, p in net.named_parameters()])
    vec = nn.parameters_to_vector(net)
    np.testing.assert_array_equal(vec, expected)
    assert vec.shape == (11,)
    new = np.arange(11.0)
    nn.vector_to_parameters(new, net)
    np.testing.assert_array_equal(net[0].weight.value.numpy(), np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(net[2].bias.value.numpy(), [10.0])
    new[0] = 99.0  # the parameters hold copies
    assert net[0].weight.value.numpy()[0, 0] == 0.0
    with pytest.raises(ValueError, match=r"shape \(11,\).*got shape \(10,\)"):
        nn.vector_to_parameters(np.zeros(10), net)
    with pytest.raises(ValueError, match=r"shape \(11,\).*got shape \(11, 1\)"):
        nn.vector_to_parameters(np.zeros((11, 1)), net)


def test_parameters_see_what_is_registered_after_a_first_call():
    """The list `parameters` keeps between calls follows a parameter or a module added
    later anywhere below, and a parameter replaced by another."""
    net = nn.Sequential(nn.Linear(3, 2), nn.Tanh())
    assert [p.shape for p in net.parameters()] == [(2, 3), (2,)]
    net[1].scale = nn.Parameter(np.ones(2))  # on a child that had none
    assert [p.shape for p in net.parameters()] == [(2, 3), (2,), (2,)]
    net[0].extra = nn.Linear(2, 4)  # a module below a child
    assert [p.shape for p in net.parameters()] == [(2, 3), (2,), (4, 2), (4,), (2,)]
    replacement = nn.Parameter(np.zeros((2, 3)))
    net[0].weight = replacement
    assert net.parameters()[0] is replacement
    listed = net.parameters()
    listed.clear()  # the caller's copy: the module's list is untouched
    assert len(net.parameters()) == 5


def test_vector_to_parameters_takes_multicomplex_vectors_and_keeps_dtype():
    net = nn.Linear(2, 2).to(dtype=np.float32)
    w = np.arange(6.0)
    point = mc.perturb(w, [np.ones(6), 2 * np.ones(6)], 0.5)
    nn.vector_to_parameters(point, net)
    assert net.weight.value.order == 2 and net.weight.value.dtype == np.float32
    np.testing.assert_array_equal(net.bias.value.coef((2,)), [1.0, 1.0])
    np.testing.assert_array_equal(nn.parameters_to_vector(net), w.astype(np.float32))
    assert nn.parameters_to_vector(net).dtype == np.float32


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.complex128])
@given(
    real=hnp.arrays(np.float64, st.integers(1, 3000),
                    elements=st.floats(allow_nan=True, allow_infinity=True, width=32)),
    seed=st.integers(0, 2**32 - 1),
)  # fmt: skip
def test_relu_forward_and_backward_are_where_on_the_real_part(dtype, real, seed):
    """ReLU's one-pass CPU loops (real, and complex as the bits of real pairs) against
    NumPy's where, bit for bit: the x <= 0 branch (and NaN) gives +0, whole complex numbers
    are kept or dropped, and the backward passes g where the forward kept x."""
    rng = np.random.default_rng(seed)
    x = real.astype(dtype)
    if np.iscomplexobj(x):
        x = x + 1j * rng.standard_normal(x.shape).astype(x.real.dtype)
    g = rng.standard_normal(x.shape).astype(dtype)
    layer = nn.ReLU()
    y = layer.forward(mc.Tensor(x[None]))
    keep = x.real > 0
    assert np.array_equal(y.data[0], np.where(keep, x, 0).astype(dtype), equal_nan=True)
    assert np.array_equal(np.signbit(y.data[0].real), np.signbit(np.where(keep, x.real, 0)))
    back = layer.backward(mc.Tensor(g[None]))
    assert np.array_equal(back.data[0], np.where(keep, g, 0).astype(dtype))
