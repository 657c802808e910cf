"""Steps of scale-invariant parameter tensors (weights followed by batch normalisation)."""

from __future__ import annotations

import numpy as np
from hypothesis import assume, given
from hypothesis import strategies as st

import mcnet as mc
from mcnet import nn
from mcnet.solvers.newton_krylov.scale_invariance import (
    limit_scale_invariant_steps,
    tensor_slices,
)
from mcnet.training import Oracle


def test_tensor_slices_follow_the_shapes():
    assert tensor_slices([(2, 3), (3,), (1, 1, 2)], 11) == [slice(0, 6), slice(6, 9), slice(9, 11)]
    assert tensor_slices(None, 7) == [slice(0, 7)]


@given(st.integers(0, 2**32 - 1), st.floats(0.05, 2.0), st.floats(0.1, 20.0))
def test_only_tensors_orthogonal_to_their_gradient_are_shortened_to_the_limit(seed, limit, length):
    assume(abs(length / limit - 1) > 1e-9)  # at the limit itself roundoff decides
    rng = np.random.default_rng(seed)
    shapes = [(5, 4), (4,), (3, 6)]
    w = rng.standard_normal(42)
    g = rng.standard_normal(42)
    first, second, third = tensor_slices(shapes, 42)
    # the first and third tensors are scale-invariant: their gradients have no radial part
    for part in (first, third):
        g[part] -= (g[part] @ w[part]) / (w[part] @ w[part]) * w[part]
    dw = rng.standard_normal(42)
    dw[first] *= length * np.linalg.norm(w[first]) / np.linalg.norm(dw[first])
    dw[third] *= 0.9 * limit * np.linalg.norm(w[third]) / np.linalg.norm(dw[third])
    given_dw = dw.copy()
    limited, count = limit_scale_invariant_steps(dw, w, g, [first, second, third], limit)
    np.testing.assert_array_equal(dw, given_dw)  # the caller's array is left alone
    expected = given_dw.copy()
    if length > limit:  # shortened to limit |w_l|, in the same direction
        expected[first] *= limit / length
    np.testing.assert_allclose(limited, expected, rtol=1e-13)
    assert count == (length > limit)
    # the second tensor's gradient has a radial part: never shortened, however long its step
    np.testing.assert_array_equal(limited[second], given_dw[second])


def test_weights_before_batch_norm_are_found_and_the_others_are_not():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((128, 6)), rng.integers(0, 3, 128)
    nn.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(6, 16), nn.BatchNorm1d(16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(),
        nn.Linear(16, 3),
    )  # fmt: skip
    oracle = Oracle(mc.Objective(net, nn.CrossEntropyLoss()), (x, y))
    w = oracle.initial_point()
    _, g = oracle.value_and_grad(w, (x, y))
    slices = tensor_slices(oracle.shapes, w.shape[0])
    names = [name for name, _ in net.named_parameters()]
    for name, part in zip(names, slices):
        dw = np.zeros_like(w)
        dw[part] = 100.0  # far longer than any tensor here
        _, count = limit_scale_invariant_steps(dw, w, g, slices, 0.25)
        # 0.bias has a zero gradient (batch norm subtracts the mean) and BN's beta starts
        # at zero: neither is a rotation, and neither is shortened
        assert count == (name == "0.weight"), name


def _digits_batchnorm_cnn_history(solver):
    x, y = mc.datasets.digits()
    nn.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.Tanh(), nn.AvgPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.Tanh(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(64, 10),
    )  # fmt: skip
    data = (x[:640], y[:640])
    return mc.fit(net, nn.CrossEntropyLoss(), data, solver, epochs=3, progress=False)


def test_newton_krylov_trains_a_batchnorm_cnn_by_turning_its_convolutions():
    """CG's step lengthened the convolutions ahead of batch norm several times over, where
    the loss no longer changes, and the Taylor ratio cut the whole step to keep the model
    honest: the loss fell like Adam's at a small learning rate. With those tensors' steps
    limited to a quarter of their norms the loss falls far faster."""
    limited = _digits_batchnorm_cnn_history(mc.solvers.make("newton-krylov"))
    unlimited = _digits_batchnorm_cnn_history(
        mc.solvers.make("newton-krylov", scale_invariant_limit=None)
    )
    reasons = [r["reason"] for r in limited.records]
    assert any("scale-invariant steps limited" in r for r in reasons)
    assert not any("scale-invariant" in r["reason"] for r in unlimited.records)
    losses = limited.train_loss
    assert all(b < a for a, b in zip(losses, losses[1:])), losses
    assert losses[-1] < 0.5 * unlimited.train_loss[-1], (losses, unlimited.train_loss)
