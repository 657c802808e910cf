"""The model zoo: PyTorch state dict names and shapes (written out by hand), forward shapes,
and gradients by backward against multicomplex-step directional derivatives of the forward
(and central differences for LeNet-5)."""

from __future__ import annotations

import fd
import numpy as np
import pytest

import mcnet as mc
from mcnet.nn import (
    CrossEntropyLoss,
    MSELoss,
    Objective,
    SquaredHingeLoss,
    models,
    parameters_to_vector,
)
from mcnet.nn.batchnorm import BatchNorm2d
from mcnet.nn.container import Sequential
from mcnet.nn.conv import Conv2d
from mcnet.nn.dropout import Dropout
from mcnet.nn.flatten import Flatten
from mcnet.nn.linear import Linear
from mcnet.nn.pooling import MaxPool2d

LENET5_STATE = {
    "0.weight": (6, 1, 5, 5), "0.bias": (6,),
    "3.weight": (16, 6, 5, 5), "3.bias": (16,),
    "7.weight": (120, 400), "7.bias": (120,),
    "9.weight": (84, 120), "9.bias": (84,),
    "11.weight": (10, 84), "11.bias": (10,),
}  # fmt: skip

AUTOENCODER_LINEARS = {
    "0": (1000, 784), "2": (500, 1000), "4": (250, 500), "6": (30, 250),
    "7": (250, 30), "9": (500, 250), "11": (1000, 500), "13": (784, 1000),
}  # fmt: skip


def vgg11_state() -> dict[str, tuple]:
    """kuangliu/pytorch-cifar VGG('VGG11'): (conv, BN, activation) per number, one max-pool per
    "M": convs at 0, 4, 8, 11, 15, 18, 22, 25, each BN right after."""
    convs = [(0, 3, 64), (4, 64, 128), (8, 128, 256), (11, 256, 256), (15, 256, 512),
             (18, 512, 512), (22, 512, 512), (25, 512, 512)]  # fmt: skip
    state: dict[str, tuple] = {}
    for index, c_in, c_out in convs:
        state[f"features.{index}.weight"] = (c_out, c_in, 3, 3)
        state[f"features.{index}.bias"] = (c_out,)
        for name in ("weight", "bias", "running_mean", "running_var"):
            state[f"features.{index + 1}.{name}"] = (c_out,)
        state[f"features.{index + 1}.num_batches_tracked"] = ()
    state["classifier.weight"] = (10, 512)
    state["classifier.bias"] = (10,)
    return state


def shapes(module) -> dict[str, tuple]:
    return {k: v.shape for k, v in module.state_dict().items()}


# --- independent NumPy forwards (nothing from mcnet but the parameter values) --------------


def np_conv2d(x, weight, bias, padding=0):
    """Cross-correlation, stride 1: every kh x kw patch gathered, then one einsum."""
    n, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    ho, wo = h + 2 * padding - kh + 1, w + 2 * padding - kw + 1
    patches = np.empty((n, c, kh, kw, ho, wo))
    for i in range(kh):
        for j in range(kw):
            patches[:, :, i, j] = xp[:, :, i : i + ho, j : j + wo]
    return np.einsum("nckluv,ockl->nouv", patches, weight) + bias[None, :, None, None]


def np_pool(x, size, reduce):
    n, c, h, w = x.shape
    ho, wo = h // size, w // size
    windows = x[:, :, : ho * size, : wo * size].reshape(n, c, ho, size, wo, size)
    return reduce(windows, axis=(3, 5))


def np_sigmoid(z):
    return 1 / (1 + np.exp(-z))


def np_elu(z):
    return np.where(z > 0, z, np.expm1(np.minimum(z, 0)))


def np_batchnorm_train(x, weight, bias, eps=1e-5):
    axes = (0, 2, 3)
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight[None, :, None, None] + bias[None, :, None, None]


def np_lenet5(state, x, act=np_sigmoid):
    h = np_pool(act(np_conv2d(x, state["0.weight"], state["0.bias"], padding=2)), 2, np.mean)
    h = np_pool(act(np_conv2d(h, state["3.weight"], state["3.bias"])), 2, np.mean)
    h = h.reshape(len(x), -1)
    h = act(h @ state["7.weight"].T + state["7.bias"])
    h = act(h @ state["9.weight"].T + state["9.bias"])
    return h @ state["11.weight"].T + state["11.bias"]


def np_vgg(state, x, config):
    h, index = x, 0
    for item in config:
        if item == "M":
            h = np_pool(h, 2, np.max)
            index += 1
            continue
        conv, bn = f"features.{index}", f"features.{index + 1}"
        h = np_conv2d(h, state[f"{conv}.weight"], state[f"{conv}.bias"], padding=1)
        h = np_elu(np_batchnorm_train(h, state[f"{bn}.weight"], state[f"{bn}.bias"]))
        index += 3
    h = h.reshape(len(x), -1)
    return h @ state["classifier.weight"].T + state["classifier.bias"]


def np_linear_stack(state, x, indices, act, activated):
    h = x
    for i in indices:
        h = h @ state[f"{i}.weight"].T + state[f"{i}.bias"]
        if i in activated:
            h = act(h)
    return h


def randomised_state(net, rng):
    """Parameters drawn afresh (and loaded), so that default initial values hide nothing."""
    state = {
        k: (rng.uniform(-0.5, 0.5, v.shape) if v.dtype.kind == "f" else v)
        for k, v in net.state_dict().items()
    }
    for key in state:
        if key.endswith("running_var"):
            state[key] = rng.uniform(0.5, 2.0, state[key].shape)
    net.load_state_dict(state)
    return net.state_dict()


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu", "elu", "softplus", "sin"])
def test_lenet5_forward_matches_numpy(activation):
    rng = np.random.default_rng(10)
    net = models.lenet5(activation)
    state = randomised_state(net, rng)
    x = rng.random((3, 1, 28, 28))
    act = {
        "sigmoid": np_sigmoid,
        "tanh": np.tanh,
        "relu": lambda z: np.maximum(z, 0),
        "elu": np_elu,
        "softplus": lambda z: np.log1p(np.exp(z)),
        "sin": np.sin,
    }[activation]
    want = np_lenet5(state, x, act)
    np.testing.assert_allclose(
        net(mc.tensor(x)).numpy(), want, rtol=1e-12, atol=1e-13 * np.abs(want).max()
    )


def test_autoencoder_mlp_and_linear_models_forward_match_numpy():
    rng = np.random.default_rng(11)
    net = models.autoencoder()
    state = randomised_state(net, rng)
    x = rng.random((2, 784)) * 0.1
    want = np_linear_stack(state, x, [0, 2, 4, 6, 7, 9, 11, 13], np_sigmoid, {0, 2, 4, 7, 9, 11})
    np.testing.assert_allclose(
        net(mc.tensor(x)).numpy(), want, rtol=1e-12, atol=1e-13 * np.abs(want).max()
    )
    net = models.mlp([7, 6, 4, 3], activation="tanh")
    state = randomised_state(net, rng)
    x = rng.standard_normal((5, 7))
    want = np_linear_stack(state, x, [0, 2, 4], np.tanh, {0, 2})
    np.testing.assert_allclose(net(mc.tensor(x)).numpy(), want, rtol=1e-12, atol=1e-14)
    for build in (models.logistic_regression, models.linear_svm):
        model = build(7, 3)
        state = randomised_state(model, rng)
        np.testing.assert_allclose(
            model(mc.tensor(x)).numpy(),
            x @ state["weight"].T + state["bias"],
            rtol=1e-13,
            atol=1e-14,
        )


@pytest.mark.parametrize(
    "config",
    [
        (4, "M", 8, "M", 8, 8, "M", 8, 8, "M", 8, 8, "M"),
        pytest.param(models.VGG11_CONFIG, marks=pytest.mark.slow),
    ],
)
def test_vgg_forward_in_train_mode_matches_numpy(config):
    rng = np.random.default_rng(12)
    net = models.VGG(config)
    state = randomised_state(net, rng)
    x = rng.random((3, 3, 32, 32))
    want = np_vgg(state, x, config)
    np.testing.assert_allclose(
        net(mc.tensor(x)).numpy(), want, rtol=1e-11, atol=1e-12 * np.abs(want).max()
    )


def check_gradient(module, loss, batch, rng, rtol=1e-8):
    """Backward's gradient . v vs the order-1 directional derivative of the forward along v."""
    objective = Objective(module, loss)
    w = parameters_to_vector(module)
    v = rng.standard_normal(w.shape)
    value, grad = objective.value_and_grad(w, batch)
    inputs, targets = batch

    def loss_at(point):
        from mcnet.nn.vector import vector_to_parameters

        kept = [p.value for p in module.parameters()]
        vector_to_parameters(point, module)
        try:
            return loss(module(mc.tensor(inputs)), targets)
        finally:
            for p, value_ in zip(module.parameters(), kept):
                p.value = value_

    forward = mc.directional(loss_at, w, [v])
    assert np.isfinite(value)
    np.testing.assert_allclose(grad @ v, forward, rtol=rtol, atol=1e-12)
    return objective, w, grad


def test_lenet5_layout_forward_and_gradient():
    rng = np.random.default_rng(0)
    net = models.lenet5()
    assert shapes(net) == LENET5_STATE
    assert list(net.state_dict()) == list(LENET5_STATE)
    assert parameters_to_vector(net).size == 61_706
    x, y = rng.random((4, 1, 28, 28)), rng.integers(0, 10, 4)
    assert net(mc.tensor(x)).shape == (4, 10)
    objective, w, grad = check_gradient(net, CrossEntropyLoss(), (x, y), rng)
    # an independent check of a few gradient entries: central differences
    for j in rng.choice(w.size, 4, replace=False):
        e = np.zeros_like(w)
        e[j] = 1e-5
        diff = (objective.value(w + e, (x, y)) - objective.value(w - e, (x, y))) / 2e-5
        np.testing.assert_allclose(grad[j], diff, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("activation", sorted(models.ACTIVATIONS))
def test_lenet5_every_activation_gives_exact_hvp(activation):
    """u^T (H v) from one complex backward vs u^T H v from one bicomplex forward (no
    backward): two exact methods, so they agree to roundoff of the terms of u . Hv."""
    rng = np.random.default_rng(sum(map(ord, activation)))
    net = models.lenet5(activation)
    x, y = rng.random((2, 1, 28, 28)), rng.integers(0, 10, 2)
    objective = Objective(net, CrossEntropyLoss())
    w = parameters_to_vector(net)
    u, v = rng.standard_normal(w.shape), rng.standard_normal(w.shape)
    hv = objective.hvp(w, v, (x, y))
    expected = objective.directional(w, [u, v], (x, y))
    np.testing.assert_allclose(u @ hv, expected, rtol=0, atol=1e-14 * (np.abs(u) @ np.abs(hv)))


def test_lenet5_loads_a_pytorch_state_dict_and_round_trips():
    rng = np.random.default_rng(3)
    state = {k: rng.standard_normal(s).astype(np.float32) for k, s in LENET5_STATE.items()}
    net = models.lenet5()
    net.load_state_dict(state)
    for key, value in net.state_dict().items():
        np.testing.assert_array_equal(value, state[key])
    again = models.lenet5()
    again.load_state_dict(net.state_dict())
    x = mc.tensor(rng.random((2, 1, 28, 28)))
    np.testing.assert_array_equal(again(x).numpy(), net(x).numpy())
    with pytest.raises(ValueError, match=r"'0.weight' has shape \(6, 1, 3, 3\); expected"):
        net.load_state_dict({**state, "0.weight": np.zeros((6, 1, 3, 3))})


def test_autoencoder_layout_forward_and_gradient():
    rng = np.random.default_rng(1)
    net = models.autoencoder()
    expected = {}
    for index, shape in AUTOENCODER_LINEARS.items():
        expected[f"{index}.weight"], expected[f"{index}.bias"] = shape, shape[:1]
    assert shapes(net) == expected
    x = rng.random((2, 784))
    assert net(mc.tensor(x)).shape == (2, 784)
    check_gradient(net, MSELoss(), (x, x), rng)


@pytest.mark.slow
def test_vgg11_layout_forward_and_gradient():
    rng = np.random.default_rng(2)
    net = models.vgg11()
    assert shapes(net) == vgg11_state()
    assert list(net.state_dict()) == list(vgg11_state())
    assert net.state_dict()["features.1.num_batches_tracked"].dtype == np.int64
    x, y = rng.random((2, 3, 32, 32)), rng.integers(0, 10, 2)
    assert net(mc.tensor(x)).shape == (2, 10)
    check_gradient(net, CrossEntropyLoss(), (x, y), rng, rtol=1e-7)


def test_small_models_forward_and_gradient():
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((5, 7)), rng.integers(0, 3, 5)
    net = models.mlp([7, 6, 4, 3], activation="tanh")
    assert [type(m).__name__ for m in net] == ["Linear", "Tanh", "Linear", "Tanh", "Linear"]
    assert shapes(net) == {"0.weight": (6, 7), "0.bias": (6,), "2.weight": (4, 6),
                           "2.bias": (4,), "4.weight": (3, 4), "4.bias": (3,)}  # fmt: skip
    check_gradient(net, CrossEntropyLoss(), (x, y), rng)
    for build, loss in ((models.logistic_regression, CrossEntropyLoss()),
                        (models.linear_svm, SquaredHingeLoss())):  # fmt: skip
        model = build(7, 3)
        assert shapes(model) == {"weight": (3, 7), "bias": (3,)}
        assert model(mc.tensor(x)).shape == (5, 3)
        check_gradient(model, loss, (x, y), rng)


def test_conv_batchnorm_maxpool_dropout_network_hvp():
    """My layers together in train mode: H v by one complex backward vs bicomplex forwards,
    with the dropout mask shared by every pass."""
    rng = np.random.default_rng(5)
    net = Sequential(
        Conv2d(2, 3, 3, padding=1), BatchNorm2d(3), MaxPool2d(2), Dropout(0.3), Flatten(),
        Linear(3 * 3 * 3, 4),
    )  # fmt: skip
    x, y = rng.standard_normal((4, 2, 6, 6)), rng.integers(0, 4, 4)
    objective = Objective(net, CrossEntropyLoss())
    w = parameters_to_vector(net)
    u, v = rng.standard_normal(w.shape), rng.standard_normal(w.shape)
    check_gradient(net, CrossEntropyLoss(), (x, y), rng)
    hv = objective.hvp(w, v, (x, y))
    expected = objective.directional(w, [u, v], (x, y))
    np.testing.assert_allclose(u @ hv, expected, rtol=0, atol=1e-14 * (np.abs(u) @ np.abs(hv)))
    # d^3 f[u, v, v]: the slope of the exact u^T H v (one bicomplex forward) along v, over
    # a span that stays on one piece of the max-pooling
    v /= np.linalg.norm(v)
    assert fd.same_branches(objective, w, v, (x, y), 1e-4)
    slope = fd.richardson(lambda t: objective.directional(w + t * v, [u, v], (x, y)), 1e-4, 2)
    third = objective.directional(w, [u, v, v], (x, y))
    assert third == pytest.approx(slope, rel=1e-8, abs=1e-10 * np.abs(u).sum())


def test_bad_model_arguments():
    with pytest.raises(ValueError, match=r"unknown activation 'gelu'; expected one of \['elu'"):
        models.lenet5("gelu")
    with pytest.raises(ValueError, match=r"at least two positive layer sizes, got \[3\]"):
        models.mlp([3])
    with pytest.raises(ValueError, match="Conv2d expected 1 input channels, got 3"):
        models.lenet5()(mc.tensor(np.zeros((1, 3, 28, 28))))
