"""Steps of scale-invariant output channels (weights followed by batch normalisation)."""

from __future__ import annotations

import numpy as np
from hypothesis import assume, given
from hypothesis import strategies as st

import mcnet as mc
from mcnet import nn
from mcnet.solvers.newton_krylov.scale_invariance import (
    channel_rows,
    limit_scale_invariant_steps,
)
from mcnet.training import Oracle


def test_channel_rows_follow_the_shapes():
    assert channel_rows([(2, 3), (3,), (4, 1, 1, 2)], 17) == [
        (slice(0, 6), 2),
        (slice(6, 9), 1),
        (slice(9, 17), 4),
    ]
    assert channel_rows(None, 7) == [(slice(0, 7), 1)]


@given(st.integers(0, 2**32 - 1), st.floats(0.05, 2.0), st.floats(0.1, 20.0))
def test_orthogonal_rows_of_mostly_orthogonal_tensors_are_shortened_to_the_limit(
    seed, limit, length
):
    assume(abs(length / limit - 1) > 1e-9)  # at the limit itself roundoff decides
    rng = np.random.default_rng(seed)
    rows = channel_rows([(5, 4), (4,), (3, 6)], 42)
    w, g, dw = rng.standard_normal(42), rng.standard_normal(42), rng.standard_normal(42)
    vector = slice(20, 24)  # one row: orthogonal to its gradient only by chance, left out here
    assume(
        abs(g[vector] @ w[vector]) > 1e-2 * np.linalg.norm(g[vector]) * np.linalg.norm(w[vector])
    )
    first = [slice(4 * i, 4 * i + 4) for i in range(5)]  # four of five rows scale-invariant
    for part in first[:4] + [slice(30, 36)]:  # and one row of three in the third tensor
        g[part] -= (g[part] @ w[part]) / (w[part] @ w[part]) * w[part]
    g[first[3]] = 0.0  # a row without a gradient (a dead unit) does not break the rule

    def resize(part, factor):
        dw[part] *= factor * np.linalg.norm(w[part]) / np.linalg.norm(dw[part])

    resize(first[0], length)
    resize(first[1], 50.0)
    for part in first[2:]:
        resize(part, 0.9 * limit)
    resize(first[3], 50.0)
    resize(first[4], 50.0)  # not orthogonal to its gradient: left alone
    resize(slice(30, 36), 50.0)
    given_dw = dw.copy()
    limited, count = limit_scale_invariant_steps(dw, w, g, rows, limit)
    np.testing.assert_array_equal(dw, given_dw)  # the caller's array is left alone
    expected = given_dw.copy()
    if length > limit:  # shortened to limit |w_row|, in the same direction
        expected[first[0]] *= limit / length
    expected[first[1]] *= limit / 50.0
    expected[first[3]] = given_dw[first[3]]  # no gradient: nothing measured, left alone
    # the third tensor has one orthogonal row of three, by chance: not batch-normalised
    np.testing.assert_allclose(limited, expected, rtol=1e-13)
    assert count == 1 + (length > limit)


def test_weights_before_batch_norm_are_found_row_by_row_and_the_others_are_not():
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
    rows = channel_rows(oracle.shapes, w.shape[0])
    names = [name for name, _ in net.named_parameters()]
    for name, (part, _) in zip(names, rows):
        dw = np.zeros_like(w)
        dw[part] = 100.0  # far longer than any row here
        _, limited = limit_scale_invariant_steps(dw, w, g, rows, 0.25)
        # every row of 0.weight; 0.bias has a zero gradient (batch norm subtracts the mean)
        # and BN's beta starts at zero: neither is a rotation, and neither is shortened
        assert limited == (16 if name == "0.weight" else 0), name


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
    """CG's step lengthened the filters ahead of batch norm several times over, where the
    loss no longer changes, and the Taylor ratio cut the whole step to keep the model
    honest: the loss fell like Adam's at a small learning rate. With those filters' steps
    limited to a quarter of their norms the loss falls far faster."""
    limited = _digits_batchnorm_cnn_history(mc.solvers.make("newton-krylov"))
    unlimited = _digits_batchnorm_cnn_history(
        mc.solvers.make(
            "newton-krylov", scale_invariant_limit=None, scale_invariant_curvature=False
        )
    )
    reasons = [r["reason"] for r in limited.records]
    assert any("scale-invariant channels limited" in r for r in reasons)
    assert not any("scale-invariant" in r["reason"] for r in unlimited.records)
    losses = limited.train_loss
    assert all(b < a for a, b in zip(losses, losses[1:])), losses
    assert losses[-1] < 0.5 * unlimited.train_loss[-1], (losses, unlimited.train_loss)
