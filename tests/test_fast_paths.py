"""The registry of fast paths: each rule that applies gives the general algebra's numbers."""

from __future__ import annotations

import numpy as np
import pytest

import mcnet as mc
from mcnet.algebra import fast_paths
from mcnet.tensor import algebra_of

ANALYTIC = ["exp", "sin", "tanh", "sigmoid", "softplus", "log"]


def sample(order: int, size: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    parts = (
        rng.uniform(0.2, 1.5, (2**order, size)) * np.r_[1.0, 1e-3 * np.ones(2**order - 1)][:, None]
    )
    return mc.from_parts(parts)


@pytest.mark.parametrize("name", ANALYTIC)
@pytest.mark.parametrize("order", [0, 1, 2])
@pytest.mark.parametrize("size", [8, 5000])  # below and above the fused kernels' threshold
def test_every_rule_that_applies_matches_the_general_algebra(name, order, size):
    x = sample(order, size)
    general = getattr(algebra_of(x), name)(x.comps)
    for applies, run in fast_paths.rules(name):
        if applies(x):
            out = run(x)
            if out is not None:
                for got, want in zip(out.comps, general):
                    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-300)


@pytest.mark.parametrize("name", ["add", "sub", "mul"])
@pytest.mark.parametrize("order", [0, 1])
def test_arithmetic_rules_match_the_general_algebra(name, order):
    a, b = sample(order, 5000, 1), sample(order, 5000, 2)
    general = getattr(algebra_of(a), name)(a.comps, b.comps)
    applied = 0
    for applies, run in fast_paths.rules(name):
        if applies(a, b):
            out = run(a, b)
            applied += out is not None
            for got, want in zip(out.comps, general):
                np.testing.assert_allclose(got, want, rtol=1e-15, atol=0)
    assert applied >= (1 if order == 0 else 0)  # two real arrays: always the NumPy rule


def test_sigmoid_backward_rule_and_the_consulting_order():
    y, g = mc.sigmoid(sample(1, 100)), sample(1, 100, 3)
    out = fast_paths.first("sigmoid_backward", g, y)
    want = g * (y * (1.0 - y))
    for got, expected in zip(out.comps, want.comps):
        np.testing.assert_allclose(got, expected, rtol=1e-14)
    assert fast_paths.first("no such primitive", g) is None
    # the exact Taylor mode comes first: no fused path knows nilpotent units
    assert len(fast_paths.rules("exp")) >= 2
