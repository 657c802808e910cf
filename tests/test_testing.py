"""mcnet.testing: check_module catches each planted defect of a backward and passes every
built-in layer; assert_derivatives catches a wrong analytic derivative; finite_difference
against closed forms; the strategies, the profile and the import without hypothesis."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings

import mcnet as mc
from mcnet import nn
from mcnet.testing import strategies as mst

RNG = np.random.default_rng(3)
X = RNG.normal(size=(4, 3))
IMAGES = RNG.normal(size=(2, 2, 6, 6))


# --- check_module on the built-in layers ------------------------------------------------------


def _mlp():
    nn.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 4))


BUILT_IN = {
    "Linear": lambda: (nn.Linear(3, 2), X),
    "Linear without bias": lambda: (nn.Linear(3, 2, bias=False), X),
    "Sigmoid": lambda: (nn.Sigmoid(), X),
    "Tanh": lambda: (nn.Tanh(), X),
    "ReLU": lambda: (nn.ReLU(), X),
    "ELU": lambda: (nn.ELU(), X),
    "Softplus": lambda: (nn.Softplus(), X),
    "Sin": lambda: (nn.Sin(), X),
    "BatchNorm1d eval": lambda: (nn.BatchNorm1d(3).eval(), X),
    "BatchNorm1d train": lambda: (nn.BatchNorm1d(3), X),
    "Conv2d": lambda: (nn.Conv2d(2, 3, 3, padding=1), IMAGES),
    "AvgPool2d": lambda: (nn.AvgPool2d(2), IMAGES),
    "MaxPool2d": lambda: (nn.MaxPool2d(2), IMAGES),
    "BatchNorm2d": lambda: (nn.BatchNorm2d(2), IMAGES),
    "Flatten": lambda: (nn.Flatten(), IMAGES),
    "Dropout train": lambda: (nn.Dropout(0.5), X),
    "Identity": lambda: (nn.Identity(), X),
    "Sequential": lambda: (_mlp(), X),
}


@pytest.mark.parametrize("name", list(BUILT_IN))
def test_every_built_in_layer_passes(name):
    module, inputs = BUILT_IN[name]()
    errors = mc.testing.check_module(module, inputs)
    measured = [e for check in errors.values() for e in check.values()]
    assert measured and max(measured) < 1e-10
    assert "input" in errors["gradient"]
    assert set(errors["gradient"]) == {"input", *(n for n, _ in module.named_parameters())}


def test_a_network_with_a_loss_and_labels_passes_and_is_left_as_it_was():
    model = nn.Sequential(nn.Linear(3, 5), nn.BatchNorm1d(5), nn.Tanh(), nn.Linear(5, 4))
    labels = np.array([0, 3, 1, 2])
    before = model.state_dict()
    model[0].weight.grad = marker = mc.tensor(np.ones((5, 3)))
    errors = mc.testing.check_module(model, X, labels, loss=nn.CrossEntropyLoss())
    assert max(errors["hvp"].values()) < 1e-10
    assert model[0].weight.grad is marker and model[1].weight.grad is None
    after = model.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)  # running stats too


def test_a_float32_module_is_checked_at_float32_accuracy():
    model = _mlp().to(dtype=np.float32)
    errors = mc.testing.check_module(model, X.astype(np.float32))
    assert 0 < max(errors["gradient"].values()) < 1e-5
    with pytest.raises(AssertionError, match=r"(?s)rtol 0\.001.*'bias'"):
        mc.testing.check_module(ForgetsBias(3, 2).to(dtype=np.float32), X.astype(np.float32))


def test_targets_without_a_loss_take_the_mean_squared_error():
    errors = mc.testing.check_module(_mlp(), X, RNG.normal(size=(4, 4)))
    assert max(errors["gradient"].values()) < 1e-10


# --- check_module on planted defects ----------------------------------------------------------


class ForgetsBias(nn.Linear):
    """A backward that never accumulates the bias's gradient."""

    def backward(self, grad_out):
        self.weight.accumulate(grad_out.T @ self.saved)
        return grad_out @ self.weight.value


class ScaledGradient(nn.Linear):
    """The weight's (or the input's) gradient off by a relative 1e-6."""

    def __init__(self, wrong: str, in_features: int = 3, out_features: int = 2) -> None:
        super().__init__(in_features, out_features)
        self.wrong = wrong

    def backward(self, grad_out):
        weight_factor = 1 + 1e-6 if self.wrong == "weight" else 1.0
        input_factor = 1 + 1e-6 if self.wrong == "input" else 1.0
        self.weight.accumulate((grad_out.T @ self.saved) * weight_factor)
        self.bias.accumulate(grad_out.sum(axis=0))
        return (grad_out @ self.weight.value) * input_factor


class RealPartInBackward(nn.Module):
    """y = tanh(x W^T + b) whose weight gradient uses the real part of y only: the gradient
    is right, but the complex pass loses part of H v, which is no longer symmetric."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(RNG.normal(size=(2, 3)))
        self.bias = nn.Parameter(RNG.normal(size=2))

    def forward(self, x):
        y = mc.tanh(x @ self.weight.value.T + self.bias.value)
        self.saved = (x, y)
        return y

    def backward(self, grad_out):
        x, y = self.saved
        local = grad_out * (1.0 - y * y)
        real_local = grad_out * (1.0 - mc.tensor(y.real) ** 2)
        self.weight.accumulate(real_local.T @ x)
        self.bias.accumulate(local.sum(axis=0))
        return local @ self.weight.value


def test_a_forgotten_parameter_gradient_is_named():
    with pytest.raises(AssertionError) as caught:
        mc.testing.check_module(ForgetsBias(3, 2), X)
    message = str(caught.value)
    assert "ForgetsBias" in message and "'bias'" in message and "accumulate" in message
    assert "'weight'" not in message


@pytest.mark.parametrize("wrong", ["weight", "input"])
def test_a_relative_error_of_1e_6_in_one_gradient_is_caught(wrong):
    with pytest.raises(AssertionError) as caught:
        mc.testing.check_module(ScaledGradient(wrong), X)
    message = str(caught.value)
    assert "ScaledGradient" in message and "relative error" in message
    named = "'weight'" if wrong == "weight" else "gradient of the input"
    assert named in message
    assert ("'bias'" not in message) and (("input" in message) == (wrong == "input"))


def test_an_asymmetric_hvp_is_caught():
    with pytest.raises(AssertionError, match="RealPartInBackward") as caught:
        mc.testing.check_module(RealPartInBackward(), X)
    message = str(caught.value)
    assert "H v of the parameters is not symmetric" in message
    assert "H v of parameter 'weight'" in message
    assert "gradient" not in message  # the real gradient itself is right


def test_a_relative_error_of_1e_6_is_caught_among_many_weights():
    # along a random direction alone the defect would be diluted by 1/sqrt(n), n = 4000
    x = np.random.default_rng(4).normal(size=(8, 200))
    with pytest.raises(AssertionError, match="'weight'"):
        mc.testing.check_module(ScaledGradient("weight", 200, 20), x, rtol=3e-7)


def test_a_plain_function_as_the_loss_is_refused_with_what_to_pass():
    with pytest.raises(TypeError, match=r"loss module with a backward.*got function"):
        mc.testing.check_module(nn.Linear(3, 2), X, X[:, :2], loss=lambda out, y: mc.sum(out))


def test_rtol_decides():
    with pytest.raises(AssertionError):
        mc.testing.check_module(ScaledGradient("weight"), X, rtol=1e-9)
    errors = mc.testing.check_module(ScaledGradient("weight"), X, rtol=1e-5)
    assert 1e-7 < errors["gradient"]["weight"] < 1e-5


# --- assert_derivatives --------------------------------------------------------------------


SIN_DERIVATIVES = [np.cos, lambda x: -np.sin(x), lambda x: -np.cos(x), np.sin]


@given(x=mst.points((-3.0, 3.0), shape=5))
def test_assert_derivatives_accepts_the_true_derivatives(x):
    errors = mc.testing.assert_derivatives(mc.sin, x, SIN_DERIVATIVES)
    assert set(errors) == {1, 2, 3, 4} and max(errors.values()) <= 1e-10


def test_assert_derivatives_rtol_and_atol_decide():
    x = np.linspace(0.5, 1.5, 5)
    off = [np.exp, lambda t: np.exp(t) * (1 + 2e-6)]
    with pytest.raises(AssertionError, match="order 2"):
        mc.testing.assert_derivatives(mc.exp, x, off, rtol=1e-6)
    errors = mc.testing.assert_derivatives(mc.exp, x, off, rtol=4e-6)
    assert errors[1] < 1e-15 and 1.9e-6 < errors[2] < 2.1e-6
    mc.testing.assert_derivatives(mc.exp, x, off, rtol=1e-6, atol=1e-5)


def test_assert_derivatives_names_the_worst_point_of_a_wrong_derivative():
    x = np.array([0.5, 1.0, 2.0])
    wrong = [np.cos, lambda t: -np.sin(t) + 0.01 * t**2]  # worst at 2.0
    with pytest.raises(AssertionError, match=r"order 2, x\[2\] = 2\.0: got -0\.909.*expected"):
        mc.testing.assert_derivatives(mc.sin, x, wrong)


def test_assert_derivatives_catches_a_relative_error_of_1e_9():
    x = np.linspace(-1.0, 1.0, 7)
    with pytest.raises(AssertionError, match="order 3"):
        mc.testing.assert_derivatives(mc.exp, x, [np.exp, np.exp, lambda t: np.exp(t) * (1 + 1e-9)])


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_assert_derivatives_float32_and_infinities():
    x = np.array([0.25, 0.5], dtype=np.float32)
    mc.testing.assert_derivatives(mc.exp, x, [np.exp, np.exp])
    # exp overflows at 800: every derivative is +inf on both sides
    mc.testing.assert_derivatives(mc.exp, np.array([1.0, 800.0]), [np.exp, np.exp])


# --- finite_difference ---------------------------------------------------------------------


MATRIX = RNG.normal(size=(5, 4)) / 2


def sum_sin(x):
    return mc.sin(x @ MATRIX.T).sum()


@given(x=mst.points((-2.0, 2.0), shape=4), directions=mst.directions(4, 3))
def test_finite_difference_matches_closed_forms_of_sum_sin(x, directions):
    u, v, w = directions
    ax, au, av, aw = MATRIX @ x, MATRIX @ u, MATRIX @ v, MATRIX @ w
    scale = np.abs(MATRIX).sum()
    first = mc.testing.finite_difference(sum_sin, x, [u])
    assert abs(first - np.sum(np.cos(ax) * au)) <= 1e-10 * scale
    second = mc.testing.finite_difference(sum_sin, x, [u, v])
    assert abs(second - np.sum(-np.sin(ax) * au * av)) <= 1e-9 * scale
    third = mc.testing.finite_difference(sum_sin, x, [u, v, w])
    assert abs(third - np.sum(-np.cos(ax) * au * av * aw)) <= 1e-8 * scale


def test_finite_difference_of_an_array_function_and_a_zero_direction():
    x = np.array([0.1, 0.7])
    got = mc.testing.finite_difference(mc.exp, x, [np.array([2.0, 0.0])] * 2)
    np.testing.assert_allclose(got, [4 * np.exp(0.1), 0.0], rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(mc.testing.finite_difference(mc.exp, x, [0 * x]), [0, 0])
    # a plain NumPy function is a reference too
    got = mc.testing.finite_difference(np.sin, x, [np.ones(2)] * 3)
    np.testing.assert_allclose(got, -np.cos(x), rtol=1e-8)


# --- strategies, the profile, warm_up and the import without hypothesis ----------------------


@given(
    x=mst.points((0.0, 1.0), dtype=np.float32, shape=(2, 3)),
    y=mst.points((0.1, 0.3), dtype=np.float32),
    z=mst.points((0.0, np.inf)),
)
def test_points_lie_inside_the_open_domain(x, y, z):
    assert x.dtype == np.float32 and x.shape == (2, 3)
    assert np.all((x > 0) & (x < 1))
    assert isinstance(y, np.float32) and np.float32(0.1) <= y <= np.float32(0.3)
    assert 0 < z < np.inf


@given(directions=mst.directions((2, 3), 3), t=mst.tensors(2, (4,)), d=mst.tensors(3, 2, ratio=0.5))
def test_directions_and_tensors_have_their_shapes(directions, t, d):
    assert len(directions) == 3 and all(v.shape == (2, 3) for v in directions)
    assert all(np.all(np.abs(v) <= 1) for v in directions)
    assert t.order == 2 and t.shape == (4,) and np.all(np.abs(t.parts) <= 2)
    parts = d.parts
    assert d.order == 3 and np.all(np.abs(parts[1:]).sum(axis=0) <= 0.5 * parts[0] * (1 + 1e-12))


def test_the_mcnet_profile_has_no_deadline_and_warm_up_runs():
    assert settings.get_profile("mcnet").deadline is None
    mc.testing.warm_up(orders=(1, 2), dtypes=(np.float64,))


def test_mcnet_testing_imports_without_hypothesis_but_strategies_say_how_to_get_it():
    code = (
        "import sys; sys.modules['hypothesis'] = None\n"
        "import mcnet as mc\n"
        "assert callable(mc.testing.check_module)\n"
        "try:\n"
        "    mc.testing.strategies\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert "pip install mcnet[testing]" in result.stdout
