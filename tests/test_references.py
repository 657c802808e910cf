"""H v and d^3 f[v, v, v] through every layer, loss and zoo model against a reference that
shares no code with the multicomplex step: Richardson-extrapolated central differences of
the exact gradient (from the modules' real backward) for H v, and of the exact curvature
v^T H v (one bicomplex forward) for the third derivative (tests/fd.py).

Piecewise-smooth networks (ReLU, ELU, max-pooling, the squared hinge) are differenced over
a short span that crosses no kink, which ``fd.same_branches`` checks at both ends.
"""

from __future__ import annotations

import fd
import numpy as np
import pytest

import mcnet as mc
from mcnet import nn
from mcnet.nn import models

SMOOTH = {"eps": 1e-2, "levels": 3}  # truncation O(eps^6) ~ 1e-12
KINKED = {"eps": 1e-4, "levels": 2}  # shorter: stays on one piece; roundoff ~ 1e-12


def _randomise(net, rng):
    """Parameters of size O(1) (BatchNorm's weight 1 and bias 0 would hide terms)."""
    for p in net.parameters():
        p.value = mc.tensor(rng.uniform(-1.0, 1.0, p.shape))
    for module in net.modules():
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            module._buffers["running_mean"] = rng.standard_normal(module.num_features)
            module._buffers["running_var"] = rng.uniform(0.5, 2.0, module.num_features)
    return net


def _images(rng, n=4, c=2, size=6):
    return rng.standard_normal((n, c, size, size))


# name: (network, loss, batch, kinked); every network ends in a smooth part so that the
# layer under test has a non-zero second derivative through it
def _layer_case(name, rng):
    labels = rng.integers(0, 3, 4)
    if name == "conv2d":
        net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.Tanh(),
                            nn.Conv2d(3, 2, (2, 3), stride=(2, 1)), nn.Sigmoid(), nn.Flatten(),
                            nn.Linear(2 * 3 * 4, 3))  # fmt: skip
        return net, nn.CrossEntropyLoss(), (_images(rng), labels), False
    if name.startswith("batchnorm2d"):
        net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.Tanh(), nn.Flatten(),
                            nn.Linear(3 * 4 * 4, 3))  # fmt: skip
        net.train("train" in name)
        return net, nn.CrossEntropyLoss(), (_images(rng), labels), False
    if name.startswith("batchnorm1d"):
        net = nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.Tanh(), nn.Linear(5, 3))
        net.train("train" in name)
        batch = (rng.standard_normal((6, 4)), rng.integers(0, 3, 6))
        return net, nn.CrossEntropyLoss(), batch, False
    if name in ("maxpool2d", "avgpool2d"):
        pool = nn.MaxPool2d(2) if name == "maxpool2d" else nn.AvgPool2d(3, stride=(1, 2))
        net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.Tanh(), pool, nn.Flatten())
        width = 3 * (9 if name == "maxpool2d" else 4 * 2)
        net = nn.Sequential(*net, nn.Linear(width, 3))
        return net, nn.CrossEntropyLoss(), (_images(rng), labels), name == "maxpool2d"
    if name == "dropout":
        net = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Dropout(0.4), nn.Linear(6, 3))
        return net, nn.CrossEntropyLoss(), (rng.standard_normal((4, 4)), labels), False
    if name in ("relu", "elu"):
        act = nn.ReLU() if name == "relu" else nn.ELU(0.7)
        net = nn.Sequential(nn.Linear(4, 6), act, nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))
        return net, nn.CrossEntropyLoss(), (rng.standard_normal((4, 4)), labels), True
    raise AssertionError(name)


LAYERS = ["conv2d", "batchnorm2d_train", "batchnorm2d_eval", "batchnorm1d_train",
          "batchnorm1d_eval", "maxpool2d", "avgpool2d", "dropout", "relu", "elu"]  # fmt: skip


def _loss_case(name, rng):
    net = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3))
    x = rng.standard_normal((5, 4))
    if name == "squared_hinge":
        return net, nn.SquaredHingeLoss(), (x, rng.integers(0, 3, 5)), True
    if name == "cross_entropy":
        return net, nn.CrossEntropyLoss(), (x, rng.integers(0, 3, 5)), False
    if name == "mse":
        return net, nn.MSELoss(), (x, rng.standard_normal((5, 3))), False
    if name == "bce_with_logits":
        return net, nn.BCEWithLogitsLoss(), (x, rng.uniform(0, 1, (5, 3))), False
    raise AssertionError(name)


LOSSES = ["squared_hinge", "cross_entropy", "mse", "bce_with_logits"]


def check_against_differences(
    net, loss, batch, kinked, rng, rtol=1e-9, third_rtol=1e-8, steps=None
):
    objective = mc.Objective(net, loss)
    w = nn.parameters_to_vector(net)
    v = rng.standard_normal(w.size)
    steps = steps or (KINKED if kinked else SMOOTH)
    if kinked:
        # the differences stay on the piece of w: otherwise this case tests nothing
        assert fd.same_branches(objective, w, v, batch, steps["eps"])
    hv = objective.hvp(w, v, batch)
    fd.assert_close(hv, fd.hvp(objective, w, v, batch, **steps), rtol, "H v")
    third = objective.directional(w, [v, v, v], batch)
    reference = fd.third(objective, w, v, batch, **steps)
    assert third == pytest.approx(reference, rel=third_rtol, abs=third_rtol * 1e-3), "d3"
    return objective, w, v


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name", LAYERS)
def test_hvp_and_third_derivative_through_each_layer(name, seed):
    rng = np.random.default_rng(seed)
    nn.manual_seed(seed)
    net, loss, batch, kinked = _layer_case(name, rng)
    _randomise(net, rng)
    check_against_differences(net, loss, batch, kinked, rng)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name", LOSSES)
def test_hvp_and_third_derivative_of_each_loss(name, seed):
    rng = np.random.default_rng(100 + seed)
    nn.manual_seed(seed)
    net, loss, batch, kinked = _loss_case(name, rng)
    _randomise(net, rng)
    check_against_differences(net, loss, batch, kinked, rng)


def test_dropout_differences_see_one_fixed_mask():
    """The reference itself would be meaningless if a pass drew a new mask."""
    rng = np.random.default_rng(7)
    net, loss, batch, _ = _layer_case("dropout", rng)
    objective = mc.Objective(net, loss)
    w = nn.parameters_to_vector(net)
    objective.value(w, batch)
    mask = net[2].mask((4, 6)).copy()
    objective.hvp(w, w, batch)
    objective.value_and_grad(w + 1e-2, batch)
    np.testing.assert_array_equal(net[2].mask((4, 6)), mask)
    assert 0 < np.count_nonzero(mask) < mask.size


# --- the model zoo ----------------------------------------------------------------------------


def _tiny_vgg():
    """The VGG class with VGG-11's layout (conv-BN-ELU blocks, five max-pools) at widths
    4-8, so that H v and d^3 stay cheap; vgg11() itself is checked in the slow test."""
    return models.VGG((4, "M", 8, "M", 8, 8, "M", 8, 8, "M", 8, 8, "M"))


def _zoo_case(name, rng):
    if name.startswith("lenet5"):
        activation = name.split("_")[1]
        net = models.lenet5(activation)
        batch = (rng.random((2, 1, 28, 28)), rng.integers(0, 10, 2))
        return net, nn.CrossEntropyLoss(), batch, activation in ("relu", "elu")
    if name == "autoencoder":
        x = rng.random((2, 784))
        return models.autoencoder(), nn.BCEWithLogitsLoss(), (x, x), False
    if name == "vgg_tiny":
        batch = (rng.random((4, 3, 32, 32)), rng.integers(0, 10, 4))
        return _tiny_vgg(), nn.CrossEntropyLoss(), batch, True
    if name == "mlp":
        batch = (rng.standard_normal((5, 7)), rng.integers(0, 3, 5))
        return models.mlp([7, 6, 4, 3], activation="tanh"), nn.CrossEntropyLoss(), batch, False
    if name == "logistic_regression":
        batch = (rng.standard_normal((5, 7)), rng.integers(0, 3, 5))
        return models.logistic_regression(7, 3), nn.CrossEntropyLoss(), batch, False
    if name == "linear_svm":
        batch = (rng.standard_normal((5, 7)), rng.integers(0, 3, 5))
        return models.linear_svm(7, 3), nn.SquaredHingeLoss(), batch, True
    raise AssertionError(name)


ZOO = [
    "lenet5_sigmoid",
    "lenet5_tanh",
    "lenet5_relu",
    "lenet5_elu",
    "lenet5_softplus",
    "lenet5_sin",
    pytest.param("autoencoder", marks=pytest.mark.slow),
    "vgg_tiny",
    "mlp",
    "logistic_regression",
    "linear_svm",
]


@pytest.mark.slow
@pytest.mark.parametrize("name", ZOO)
def test_hvp_and_third_derivative_of_every_zoo_model(name):
    rng = np.random.default_rng(sum(map(ord, name)))
    nn.manual_seed(1)
    net, loss, batch, kinked = _zoo_case(name, rng)
    check_against_differences(net, loss, batch, kinked, rng, rtol=1e-8)


@pytest.mark.slow
def test_hvp_and_third_derivative_of_vgg11():
    """The full VGG-11 (9.2M parameters). With a batch of 2, its last batch norms see two
    values per channel, so the loss curves on a scale of ~1e-3 in w: short steps."""
    rng = np.random.default_rng(0)
    nn.manual_seed(0)
    batch = (rng.random((2, 3, 32, 32)), rng.integers(0, 10, 2))
    check_against_differences(
        models.vgg11(),
        nn.CrossEntropyLoss(),
        batch,
        True,
        rng,
        rtol=1e-8,
        steps={"eps": 1e-4, "levels": 2},
    )
