"""The model zoo: PyTorch state dict names and shapes (written out by hand), forward shapes,
and gradients by backward against multicomplex-step directional derivatives of the forward
(and central differences for LeNet-5)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


@settings(max_examples=6)
@given(st.sampled_from(sorted(models.ACTIVATIONS)), st.integers(0, 2**32 - 1))
def test_lenet5_every_activation_gives_exact_hvp(activation, seed):
    """u^T (H v) from one complex backward vs u^T H v from one bicomplex forward."""
    rng = np.random.default_rng(seed)
    net = models.lenet5(activation)
    x, y = rng.random((2, 1, 28, 28)), rng.integers(0, 10, 2)
    objective = Objective(net, CrossEntropyLoss())
    w = parameters_to_vector(net)
    u, v = rng.standard_normal(w.shape), rng.standard_normal(w.shape)
    expected = objective.directional(w, [u, v], (x, y))
    np.testing.assert_allclose(u @ objective.hvp(w, v, (x, y)), expected, rtol=1e-8, atol=1e-10)


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
    expected = objective.directional(w, [u, v], (x, y))
    np.testing.assert_allclose(u @ objective.hvp(w, v, (x, y)), expected, rtol=1e-8, atol=1e-10)
    third = objective.directional(w, [u, v, v], (x, y))
    assert np.isfinite(third)


def test_bad_model_arguments():
    with pytest.raises(ValueError, match=r"unknown activation 'gelu'; expected one of \['elu'"):
        models.lenet5("gelu")
    with pytest.raises(ValueError, match=r"at least two positive layer sizes, got \[3\]"):
        models.mlp([3])
    with pytest.raises(ValueError, match="Conv2d expected 1 input channels, got 3"):
        models.lenet5()(mc.tensor(np.zeros((1, 3, 28, 28))))
