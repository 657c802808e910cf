"""Networks written the PyTorch way: arithmetic and mc functions in a composite's forward.

The reference for the swish + skip block is its forward and backward written out by hand
in NumPy; H v is checked against Richardson differences of that hand-written gradient, and
the gradient against the complex-step directional derivative of the value (forward passes
only, none of the backward code).  Every recorded operation is checked by the transpose
identity <J^T u, v> = <u, J v>, J v by one forward at x + h i_new v (the recorded forward,
none of the backward code).
"""

from __future__ import annotations

import re
from pathlib import Path

import fd
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import mcnet as mc
from mcnet import nn
from mcnet.errors import UnaccumulatedGradientWarning

seeds = st.integers(0, 2**31 - 1)


class SwishSkip(nn.Module):
    """The block a PyTorch user writes: h = fc1(x); h = h * sigmoid(h); x + fc2(h)."""

    def __init__(self, width, hidden):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x):
        h = self.fc1(x)
        h = h * mc.sigmoid(h)
        return x + self.fc2(h)


def _swish_problem(seed, n=5, width=3, hidden=4):
    nn.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = SwishSkip(width, hidden)
    objective = mc.Objective(net, nn.MSELoss())
    batch = (rng.standard_normal((n, width)), rng.standard_normal((n, width)))
    return objective, nn.parameters_to_vector(net), batch, rng


def _swish_numpy(w, batch, width=3, hidden=4):
    """Loss and gradient of the block under the mean squared error, by hand."""
    sizes = [hidden * width, hidden, width * hidden, width]
    w1, b1, w2, b2 = np.split(w, np.cumsum(sizes)[:-1])
    w1, w2 = w1.reshape(hidden, width), w2.reshape(width, hidden)
    x, t = batch
    z = x @ w1.T + b1
    s = 1 / (1 + np.exp(-z))
    a = z * s
    out = x + a @ w2.T + b2
    loss = np.mean((out - t) ** 2)
    d_out = 2 * (out - t) / out.size
    d_z = (d_out @ w2) * (s + z * s * (1 - s))
    grad = np.concatenate([(d_z.T @ x).ravel(), d_z.sum(0), (d_out.T @ a).ravel(), d_out.sum(0)])
    return loss, grad


@given(seed=seeds)
def test_swish_skip_block_matches_its_numpy_forward_and_backward(seed):
    objective, w, batch, rng = _swish_problem(seed)
    want_loss, want_grad = _swish_numpy(w, batch)
    loss, grad = objective.value_and_grad(w, batch)
    assert loss == pytest.approx(want_loss, rel=1e-14)
    fd.assert_close(grad, want_grad, 1e-13, "gradient")
    v = rng.standard_normal(w.size)
    # the gradient against the complex-step derivative of the value (forward only)
    assert grad @ v == pytest.approx(
        objective.directional(w, [v], batch), rel=1e-12, abs=1e-14 * np.abs(grad) @ np.abs(v)
    )


@given(seed=seeds)
def test_swish_skip_block_hvp_matches_differences_of_the_numpy_gradient(seed):
    objective, w, batch, rng = _swish_problem(seed)
    v = rng.standard_normal(w.size)
    u = v / np.linalg.norm(v)
    reference = np.linalg.norm(v) * fd.richardson(lambda t: _swish_numpy(w + t * u, batch)[1], 1e-2)
    hv = objective.hvp(w, v, batch)
    fd.assert_close(hv, reference, 1e-9, "H v")
    # v^T H v from one bicomplex forward, which never runs a backward
    assert v @ hv == pytest.approx(
        objective.curvature(w, v, batch), rel=1e-12, abs=1e-14 * np.abs(v) @ np.abs(hv)
    )
    g, hv2 = objective.grad_and_hvp(w, v, batch)
    np.testing.assert_allclose(hv2, hv, rtol=0, atol=0)
    hessian = objective.hessian(w, batch)
    np.testing.assert_allclose(hessian @ v, hv, rtol=1e-12, atol=1e-13 * np.abs(hv).max())


def test_swish_skip_network_trains_with_fit():
    rng = np.random.default_rng(0)
    nn.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 3), SwishSkip(3, 6), nn.Linear(3, 2))
    x = rng.standard_normal((64, 4))
    y = (x[:, 0] * x[:, 1] > 0).astype(np.int64)
    history = mc.fit(
        net, nn.CrossEntropyLoss(), (x, y), mc.solvers.NewtonKrylov(), epochs=3, batch_size=32
    )
    assert history.train_loss[-1] < 0.8 * history.train_loss[0]
    # the trained parameters are in the module, and its graph holds the recorded product
    names = [type(s.module).__name__ for s in net.graph().steps]
    assert names == ["Linear", "Linear", "Elementwise", "Multiply", "Linear", "Add", "Linear"]


# --- every recorded operation: backward is the transpose of the forward derivative ---------

STEP = 2.0**-30
MASK = np.array([[True, False, True, True], [False, True, False, False], [True, True, False, True]])
ROW = np.array([0.5, -1.0, 2.0, 0.25])

UNARY = {
    "add constant": lambda x: x + 1.5,
    "constant minus": lambda x: 2.0 - x,
    "broadcast shift": lambda x: x[0] - np.ones((3, 4)) + x[:, :1],
    "negate": lambda x: -x,
    "times array": lambda x: x * ROW,
    "array times": lambda x: ROW * x,
    "tensor times": lambda x: mc.tensor(ROW) * x,
    "minus tensor": lambda x: x - mc.tensor(ROW),
    "divide by constant": lambda x: x / 3.0,
    "constant over": lambda x: 2.0 / (x * x + 1.0),
    "square": lambda x: x**2,
    "cube": lambda x: x**3,
    "power of 2": lambda x: 2.0**x,
    "swish": lambda x: x * mc.sigmoid(x),
    "reshape": lambda x: x.reshape(-1) * mc.tanh(x.reshape(4, 3)).reshape(-1),
    "view and flatten": lambda x: mc.exp(x.view(2, 6)).flatten() * x.flatten(),
    "transpose": lambda x: x.T * mc.sin(x.transpose(1, 0)),
    "mc.transpose": lambda x: mc.transpose(x) * 2.0,
    "transpose 3-D": lambda x: x.reshape(3, 2, 2).transpose(1, 2, 0) * mc.sin(x.reshape(2, 2, 3)),
    "sum": lambda x: x.sum(axis=0) * x.sum(axis=1, keepdims=True),
    "mean": lambda x: x.mean() * x + mc.mean(x, axis=1, keepdims=True),
    "mc.sum": lambda x: mc.sum(x * x, 1),
    "index": lambda x: x[1] * x[:, 2:].sum(),
    "repeated index": lambda x: x[[0, 0, 2]] * x[np.arange(3), [1, 1, 3]].reshape(3, 1),
    "exp log sqrt": lambda x: mc.exp(x) + mc.log(x * x + 1.0) * mc.sqrt(x * x + 2.0),
    "tanh softplus erf": lambda x: mc.tanh(x) * mc.softplus(x) + mc.erf(x),
    "sin cos arctan": lambda x: mc.sin(x) * mc.cos(x) + mc.arctan(x),
    "sinh cosh tan log1p": lambda x: mc.sinh(x) + mc.cosh(x) + mc.tan(x / 4) + mc.log1p(x * x),
    "expm1 and the inverse functions": lambda x: (
        mc.expm1(x) + mc.arcsinh(x) + mc.arctanh(x / 8) + mc.arcsin(x / 8) * mc.arccos(x / 8)
    ),
    "power": lambda x: mc.power(x * x + 1.0, 2.5),
    "relu": lambda x: mc.relu(x) * x,
    "abs": lambda x: mc.abs(x) * x,
    "elu": lambda x: mc.elu(x, 0.5),
    "clip": lambda x: mc.clip(x, -0.5, 0.5) + x,
    "maximum with constant": lambda x: mc.maximum(x, 0.2) * x,
    "minimum with constant": lambda x: mc.minimum(0.2, x),
    "where": lambda x: mc.where(MASK, x, 0.5 * x),
    "logsumexp": lambda x: mc.logsumexp(x, axis=-1) * 2.0,
    "log_softmax": lambda x: mc.log_softmax(x, axis=1) * x,
    "softmax": lambda x: mc.softmax(x, axis=0),
    "elementwise module": lambda x: nn.Elementwise(lambda t: mc.where(t > 0, t, 0.1 * t))(x),
}

BINARY = {
    "product": lambda a, b: a * b,
    "broadcast product": lambda a, b: a * b[0],
    "quotient": lambda a, b: a / (b * b + 1.0),
    "difference": lambda a, b: a - b[2:3],
    "sum": lambda a, b: mc.tanh(a) + b,
    "maximum": lambda a, b: mc.maximum(a, b) * a,
    "minimum": lambda a, b: mc.minimum(a, b),
    "where": lambda a, b: mc.where(MASK, a, b),
    "concatenate": lambda a, b: mc.concatenate([a, b * b], axis=0),
}


class Unary(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


class Binary(Unary):
    def forward(self, a, b):
        return self.fn(a, b)


def _point(rng, shape, order):
    return mc.from_parts(rng.standard_normal((2**order,) + shape))


def _transpose_check(module, xs, rng):
    """<J^T u, e_i> = <u, J e_i> entry by entry, J e_i by one forward at x + h i_new e_i."""
    order = max(x.order for x in xs)
    y = module(*xs)
    u = _point(rng, y.shape, order)
    grads = module.backward(u)
    grads = grads if isinstance(grads, tuple) else (grads,)
    assert len(grads) == len(xs)
    for j, (g, x) in enumerate(zip(grads, xs)):
        got = mc.embed(g, order).parts
        want = np.empty_like(got)
        for i in np.ndindex(*x.shape):
            perturbed = []
            for m, xm in enumerate(xs):
                parts = np.zeros((2 ** (order + 1),) + xm.shape)
                parts[: 2**xm.order] = xm.parts
                if m == j:
                    parts[(2**order, *i)] = STEP
                perturbed.append(mc.from_parts(parts))
            jv = mc.from_parts(module(*perturbed).parts[2**order :] / STEP)
            want[(slice(None), *i)] = (u * jv).sum().parts
        np.testing.assert_allclose(
            got, want, rtol=1e-12, atol=1e-12 * np.abs(want).max(), err_msg=f"input {j}"
        )


@pytest.mark.parametrize("order", [0, 1])  # 1: the complex point of the H v pass
@pytest.mark.parametrize("name", sorted(UNARY))
def test_recorded_unary_operations_backpropagate(name, order):
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    _transpose_check(Unary(UNARY[name]), [_point(rng, (3, 4), order)], rng)


@pytest.mark.parametrize("order", [0, 1])
@pytest.mark.parametrize("name", sorted(BINARY))
def test_recorded_binary_operations_backpropagate(name, order):
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    _transpose_check(
        Binary(BINARY[name]), [_point(rng, (3, 4), order), _point(rng, (3, 4), order)], rng
    )


def test_recorded_forward_equals_the_direct_computation():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4))
    for name, fn in UNARY.items():
        if name == "view and flatten":  # PyTorch's view and flatten(start): traced values only
            continue
        traced = Unary(fn)(mc.tensor(x))
        assert traced.order == 0, name
        np.testing.assert_allclose(
            traced.real, fn(mc.tensor(x)).real, rtol=1e-15, atol=1e-15, err_msg=name
        )
    assert [type(s.module).__name__ for s in Unary(UNARY["swish"]).graph().steps] == [
        "Elementwise",
        "Multiply",
    ]


# --- nn.Elementwise -----------------------------------------------------------------------------


def _swish_derivative(z):
    s = 1 / (1 + np.exp(-z))
    return s + z * s * (1 - s)


@given(seed=seeds, order=st.sampled_from([0, 1]))
def test_elementwise_derivative_is_the_holomorphic_derivative(seed, order):
    """Backward of Elementwise(swish) at a real or complex point: f'(z) u, f' written by
    hand in complex NumPy."""
    rng = np.random.default_rng(seed)
    x = _point(rng, (5,), order)
    u = _point(rng, (5,), order)
    layer = nn.Elementwise(lambda t: t * mc.sigmoid(t))
    y = layer(x)
    z = x.real + (1j * x.coef((1,)) if order else 0)
    np.testing.assert_allclose(y.real, (z * (1 / (1 + np.exp(-z)))).real, rtol=1e-14)
    got = layer.backward(u)
    want = _swish_derivative(z) * (u.real + (1j * u.coef((1,)) if order else 0))
    np.testing.assert_allclose(got.real, want.real, rtol=1e-13)
    np.testing.assert_allclose(got.coef((1,)), want.imag, rtol=1e-13, atol=1e-300)


def test_elementwise_branches_on_the_real_part_and_checks_shapes():
    layer = nn.Elementwise(lambda t: mc.where(t > 0, t, 0.1 * t))
    layer(mc.tensor([-2.0, 0.0, 3.0]))
    np.testing.assert_allclose(layer.backward(mc.tensor([1.0, 1.0, 1.0])).real, [0.1, 0.1, 1])
    assert "lambda" in repr(layer)
    with pytest.raises(ValueError, match=r"keep its input's shape \(3,\), got shape \(\)"):
        nn.Elementwise(lambda t: t.sum())(mc.tensor([1.0, 2.0, 3.0]))
    with pytest.raises(TypeError, match="Elementwise expected a function"):
        nn.Elementwise(3)


def test_elementwise_hvp_at_every_order_matches_a_hand_written_activation():
    """Elementwise(sigmoid) inside a network gives the gradient, H v and v^T H v of the
    same network with nn.Sigmoid (whose backward is written by hand)."""
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((6, 3)), rng.integers(0, 2, 6)
    results = []
    for act in (nn.Sigmoid(), nn.Elementwise(mc.sigmoid)):
        nn.manual_seed(2)
        net = nn.Sequential(nn.Linear(3, 4), act, nn.Linear(4, 2))
        objective = mc.Objective(net, nn.CrossEntropyLoss())
        w = nn.parameters_to_vector(net)
        v = np.random.default_rng(3).standard_normal(w.size)
        results.append(
            (
                objective.value_and_grad(w, (x, y))[1],
                objective.hvp(w, v, (x, y)),
                objective.directional(w, [v, v, v], (x, y)),
            )
        )
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)


# --- forward-only modules and clear errors ------------------------------------------------------


class Scaled(nn.Module):
    """A leaf that reads its own parameter and has no backward: forward-only."""

    def __init__(self, width):
        super().__init__()
        self.scale = nn.Parameter(np.linspace(0.5, 1.5, width))

    def forward(self, x):
        return x * mc.tanh(self.scale.value)


class ScaledWithBackward(Scaled):
    def backward(self, grad_out):
        x, scale = self.saved
        self.scale.accumulate((grad_out * x).sum(axis=0) * (1.0 - mc.tanh(scale) ** 2))
        return grad_out * mc.tanh(scale)

    def forward(self, x):
        self.saved = (x, self.scale.value)
        return super().forward(x)


def test_a_forward_only_leaf_gives_values_and_refuses_gradients_by_name():
    rng = np.random.default_rng(0)
    batch = (rng.standard_normal((5, 3)), rng.integers(0, 2, 5))
    objectives = []
    for leaf in (Scaled(3), ScaledWithBackward(3)):
        nn.manual_seed(0)
        net = nn.Sequential(leaf, nn.Linear(3, 2))
        objectives.append(mc.Objective(net, nn.CrossEntropyLoss()))
    forward_only, reference = objectives
    w = nn.parameters_to_vector(forward_only.module)
    v = rng.standard_normal(w.size)
    assert forward_only.value(w, batch) == reference.value(w, batch)
    assert forward_only.curvature(w, v, batch) == pytest.approx(
        v @ reference.hvp(w, v, batch), rel=1e-12
    )
    assert forward_only.directional(w, [v], batch) == pytest.approx(
        reference.value_and_grad(w, batch)[1] @ v, rel=1e-12
    )
    for method, args in [("value_and_grad", ()), ("hvp", (v,)), ("grad_and_hvp", (v,))]:
        with pytest.raises(
            NotImplementedError,
            match=r"^Scaled has no backward.*reads the "
            r"value of a parameter.*Write Scaled.backward\(grad_out\)",
        ):
            getattr(forward_only, method)(w, *args, batch)


class UsesShape(nn.Module):
    """PyTorch's x.view(x.size(0), -1), in mcnet's spelling."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 4)
        self.bn = nn.BatchNorm1d(4)

    def forward(self, x):
        h = self.bn(self.fc(x)).reshape(x.shape[0], 2, -1)
        return h.reshape(len(h), h.shape[1] * h.shape[2])


class UsesNumPy(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 4)

    def forward(self, x):
        return mc.tensor(np.tanh(self.fc(x).numpy()))


class Outer(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(mc.tanh(self.inner(x)))


def test_a_forward_that_reads_shapes_is_traced_for_each_input_shape():
    rng = np.random.default_rng(0)
    nn.manual_seed(0)
    net = Outer(UsesShape())
    objective = mc.Objective(net, nn.CrossEntropyLoss())
    w = nn.parameters_to_vector(net)
    for n in (4, 6):
        x, y = rng.standard_normal((n, 3)), rng.integers(0, 2, n)
        v = rng.standard_normal(w.size)
        g = objective.value_and_grad(w, (x, y))[1]
        assert g @ v == pytest.approx(objective.directional(w, [v], (x, y)), rel=1e-12)
        assert v @ objective.hvp(w, v, (x, y)) == pytest.approx(
            objective.curvature(w, v, (x, y)), rel=1e-12
        )
    assert sorted(net._graphs_by_shape) == [((4, 3),), ((6, 3),)]
    assert [type(s.module).__name__ for s in net.graph().steps] == [
        "Linear",
        "BatchNorm1d",
        "Reshape",
        "Reshape",
        "Elementwise",
        "Linear",
    ]
    # a direct call in train mode is the run that traces: the statistics move once
    tracked = net.inner.bn.buffer("num_batches_tracked")
    net(rng.standard_normal((5, 3)))
    assert net.inner.bn.buffer("num_batches_tracked") == tracked + 1


def test_an_untraceable_composite_is_forward_only_and_says_why():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((4, 3)), rng.integers(0, 2, 4)
    net = Outer(UsesNumPy())
    objective = mc.Objective(net, nn.CrossEntropyLoss())
    w = nn.parameters_to_vector(net)
    h = np.tanh(np.tanh(x @ net.inner.fc.weight.value.numpy().T + net.inner.fc.bias.value.numpy()))
    logits = h @ net.head.weight.value.numpy().T + net.head.bias.value.numpy()
    log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    assert objective.value(w, (x, y)) == pytest.approx(-log_p[np.arange(4), y].mean(), rel=1e-14)
    # the outer graph is traced; only the inner module runs its forward directly
    assert [type(s.module).__name__ for s in net.graph().steps] == [
        "UsesNumPy",
        "Elementwise",
        "Linear",
    ]
    with pytest.raises(
        NotImplementedError,
        match=r"UsesNumPy has no backward.*in "
        r"UsesNumPy.forward, it reads .numpy of a traced value",
    ):
        objective.value_and_grad(w, (x, y))


class PartlyNumPy(nn.Module):
    """Records two steps, then needs NumPy: forward-only."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 4)

    def forward(self, x):
        h = self.fc(x) * 2.0
        return mc.tensor(np.tanh(h.numpy()))


class ReadsShapesAroundAForwardOnlyPart(Outer):
    def forward(self, x):
        n = x.shape[0]  # first: only the trace on the inputs meets the inner module
        return self.head(self.inner(x).reshape(n, -1))


def test_a_forward_only_part_of_a_forward_traced_on_its_inputs():
    """The steps the inner module recorded before it failed are taken back with the contexts
    its run kept, so the outer module's first call (the run that traces it) backpropagates
    through the head and stops, by name, at the forward-only part."""
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((4, 3)), rng.integers(0, 2, 4)
    net = ReadsShapesAroundAForwardOnlyPart(PartlyNumPy())
    objective = mc.Objective(net, nn.CrossEntropyLoss())
    w = nn.parameters_to_vector(net)
    with pytest.raises(NotImplementedError, match="PartlyNumPy has no backward"):
        objective.value_and_grad(w, (x, y))
    assert [type(s.module).__name__ for s in net.graph().steps] == [
        "PartlyNumPy",
        "Reshape",
        "Linear",
    ]
    assert len(net.graph()._saved) == 3


@pytest.mark.parametrize("forward, reason", [
    (lambda x: x.data, r"reads \.data of a traced value"),
    (lambda x: mc.Tensor(np.tanh(x)), "needs the numbers of a traced value"),
    (lambda x: mc.where(x > 0, x, 0.0), "compares traced values.*nn.Elementwise"),
    (lambda x: mc.max(x, axis=1), "calls mc.max on a traced value"),
    (lambda x: x @ np.ones((3, 3)), "multiplies a traced value with @; use nn.Linear"),
])  # fmt: skip
def test_what_the_trace_cannot_record_is_named(forward, reason):
    module = Unary(forward)
    assert module.is_leaf() and module.graph() is None
    with pytest.raises(NotImplementedError, match=r"Unary has no backward.*" + reason):
        module.backward(mc.tensor(np.ones(3)))


def test_numpy_ufuncs_point_to_mcnet_and_arrays_still_mix_in():
    t = mc.tensor([1.0, 2.0])
    with pytest.raises(TypeError, match=r"NumPy's exp .*use mc\.exp\(\.\.\.\)"):
        np.exp(t)
    with pytest.raises(TypeError, match=r"use mc\.abs"):
        np.abs(t)
    with pytest.raises(TypeError, match=r"mcnet's functions"):
        np.floor(t)
    np.testing.assert_array_equal((np.array([1.0, 1.0]) + t).real, [2.0, 3.0])
    np.testing.assert_array_equal((np.array([3.0, 3.0]) - t).real, [2.0, 1.0])
    np.testing.assert_array_equal((np.float64(2.0) * t).real, [2.0, 4.0])
    np.testing.assert_array_equal(np.array([1.5, 1.5]) < t, [False, True])


def test_a_plain_function_loss_gives_gradients_and_hvp():
    rng = np.random.default_rng(0)
    nn.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3))
    x, labels = rng.standard_normal((5, 3)), rng.integers(0, 3, 5)
    w = nn.parameters_to_vector(net)
    v = rng.standard_normal(w.size)

    def cross_entropy(logits, y):
        return -mc.log_softmax(logits, axis=1)[np.arange(len(y)), y].mean()

    for loss, reference, targets in [
        (cross_entropy, nn.CrossEntropyLoss(), labels),
        (lambda out, t: ((out - t) ** 2).mean(), nn.MSELoss(), x),
    ]:
        mine, theirs = mc.Objective(net, loss), mc.Objective(net, reference)
        batch = (x, targets)
        assert mine.value(w, batch) == pytest.approx(theirs.value(w, batch), rel=1e-14)
        np.testing.assert_allclose(
            mine.value_and_grad(w, batch)[1],
            theirs.value_and_grad(w, batch)[1],
            rtol=1e-13,
            atol=1e-16,
        )
        np.testing.assert_allclose(
            mine.hvp(w, v, batch), theirs.hvp(w, v, batch), rtol=1e-12, atol=1e-15
        )
        assert mine.curvature(w, v, batch) == pytest.approx(
            theirs.curvature(w, v, batch), rel=1e-12
        )
    with pytest.raises(
        TypeError,
        match=r"loss must be a loss module .* or a function "
        r"\(outputs, targets\) -> scalar .*got int",
    ):
        mc.Objective(net, 3)


def test_a_loss_the_trace_cannot_record_is_forward_only():
    net = nn.Linear(2, 1)
    w = nn.parameters_to_vector(net)
    batch = (np.ones((3, 2)), np.zeros((3, 1)))

    def numpy_loss(out, t):
        return mc.tensor(np.mean((out.real - t) ** 2))

    objective = mc.Objective(net, numpy_loss)
    out = net(np.ones((3, 2))).real
    assert objective.value(w, batch) == pytest.approx(np.mean(out**2))
    with pytest.raises(NotImplementedError, match="the loss numpy_loss is forward-only"):
        objective.value_and_grad(w, batch)


class ForgetsBias(nn.Linear):
    def backward(self, grad_out):
        x = self.saved
        self.weight.accumulate(grad_out.T @ x)
        return grad_out @ self.weight.value


def test_a_backward_that_forgets_a_parameter_gradient_is_named():
    net = nn.Sequential(nn.Linear(3, 2), ForgetsBias(2, 2))
    objective = mc.Objective(net, nn.MSELoss())
    batch = (np.ones((4, 3)), np.zeros((4, 2)))
    w = nn.parameters_to_vector(net)
    for call in (
        lambda: objective.value_and_grad(w, batch)[1],
        lambda: objective.hvp(w, np.ones(w.size), batch),
    ):
        with pytest.warns(
            UnaccumulatedGradientWarning,
            match=r"ForgetsBias.backward gave no "
            r"gradient to its parameter\(s\) bias, taken as zero: add "
            r"self.bias.accumulate",
        ):
            result = call()
        assert np.all(result[-2:] == 0)


def test_gauss_newton_product_through_recorded_operations():
    """G v = J^T H_L J v for the swish-skip block under the mean squared error (H_L = 2/size
    times the identity), J column by column from one complex-step forward per parameter:
    the product's backward runs on the real parts of what the recorded steps kept."""
    objective, w, batch, rng = _swish_problem(3)
    net, (x, _) = objective.module, batch
    h = 1e-30
    outputs = net(mc.tensor(x))
    jacobian = np.empty((outputs.size, w.size))
    for j in range(w.size):
        nn.vector_to_parameters(mc.perturb(w, [np.eye(w.size)[j]], h), net)
        jacobian[:, j] = net(mc.tensor(x)).coef((1,)).ravel() / h
    nn.vector_to_parameters(w, net)
    v = rng.standard_normal(w.size)
    expected = jacobian.T @ (jacobian @ v) * (2 / outputs.size)
    got = objective.gauss_newton_product(w, v, batch)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14 * np.abs(expected).max())


def test_the_networks_guide_runs():
    """Every Python block of docs/networks.md, in order, in one namespace."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "networks.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 4
    namespace: dict = {"__name__": "networks_guide"}
    for block in blocks:
        exec(compile(block, "docs/networks.md", "exec"), namespace)
