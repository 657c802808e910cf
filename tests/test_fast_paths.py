"""The registry of fast paths: each rule that applies gives the general algebra's numbers."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

import mcnet as mc
from mcnet.algebra import fast_paths, symmetric
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


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("order", [0, 1])
@pytest.mark.parametrize("channel_major", [False, True])
@pytest.mark.parametrize("i_scale", [1e-3, 1e-10])
def test_elu_rules_match_the_general_algebra_in_any_layout(dtype, order, channel_major, i_scale):
    """ELU's fused forward (result and mask) and backward against mc.elu and the backward's
    formula g where Re x > 0, else g (y + alpha), on a convolution's channel-major layout
    too; zeros, negatives and NaN included.  i-parts of 1e-3 (exp by cos and sin) and of
    1e-10 (below the size where exp(a + ib) = e^a (1 + ib) to roundoff)."""
    rng = np.random.default_rng(order)
    shape = (4, 3, 5, 6)

    def tensor(scale):
        parts = (
            rng.standard_normal((2**order, *shape))
            * np.r_[1.0, i_scale][: 2**order, None, None, None, None]
            * scale
        )
        parts[0, 0, 0, 0, :2] = [0.0, np.nan]
        t = mc.from_parts(parts.astype(dtype))
        if channel_major:  # (N, C, H, W) laid out as (C, N, H, W), as Conv2d gives it
            t = mc.Tensor(
                np.ascontiguousarray(t.data.transpose(0, 2, 1, 3, 4)).transpose(0, 2, 1, 3, 4)
            )
        return t

    x, g, alpha = tensor(2.0), tensor(1.0), 0.7
    y, positive = fast_paths.first("elu_forward", x, alpha)
    # alpha (exp(x) - 1) carries the roundoff of exp near 1: a few ulps of alpha, absolute
    tol = 4 * np.finfo(dtype).eps
    np.testing.assert_array_equal(positive, x.real > 0)
    scales = (1.0, i_scale)  # each component's size: an i-part is checked to its own roundoff
    for got, want, scale in zip(y.parts, mc.elu(x, alpha).parts, scales[: 2**order], strict=True):
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * alpha * scale)
    # a gradient whose one component axis has another stride (0, as x[None] gives it)
    g = mc.Tensor(g.data[0][None]) if order == 0 else g
    back = fast_paths.first("elu_backward", g, positive, y, alpha)
    assert back is not None
    want = mc.where(positive, g, g * (y + alpha))
    for got, expected, scale in zip(back.parts, want.parts, scales[: 2**order], strict=True):
        np.testing.assert_allclose(got, expected, rtol=tol, atol=tol * alpha * scale)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("channel_major", [False, True])
@pytest.mark.parametrize("step", ["tiny", "large"])
@pytest.mark.parametrize("nilpotent", [False, True])
def test_elu_rule_at_order_two_is_the_closed_form_written_out(dtype, channel_major, step,
                                                             nilpotent):  # fmt: skip
    """ELU's fused forward on one-direction order-2 data s = (x, s1, s2) against the closed
    form written out by hand in float64 with libm's functions: s where x > 0, else
    alpha (exp(s) - 1) with exp(s) = e^x [1, s1, s2 + s1^2] for nilpotent units and
    e^x [c^2 ch + r^2 sh, c r e^-s2, r^2 ch + c^2 sh] (c, r = cos, sin s1; ch, sh = cosh,
    sinh s2) for multicomplex ones; a step beyond the series' bound is refused (the general
    algebra takes it)."""
    rng = np.random.default_rng(5)
    shape = (4, 3, 5, 6)
    eps = np.finfo(dtype).eps
    s1_size = (
        2.0**-8 * np.sqrt(eps) / 4
        if step == "tiny"
        else {np.float32: 2e-2, np.float64: 1e-3}[dtype]
    )
    sizes = np.array([2.0, s1_size, s1_size**2])[:, None, None, None, None]
    s = rng.standard_normal((3, *shape)) * sizes
    s[0, 0, 0, 0, :3] = [0.0, -0.0, -30.0]
    data = s.astype(dtype)
    if channel_major:
        data = np.ascontiguousarray(data.transpose(0, 2, 1, 3, 4)).transpose(0, 2, 1, 3, 4)
    x, s1, s2 = (c.astype(np.float64) for c in data)
    alpha = 0.7
    e = np.exp(np.minimum(x, 0))
    if nilpotent:
        series = [np.ones_like(x), s1, s2 + s1 * s1]
    else:
        c, r, ch, sh = np.cos(s1), np.sin(s1), np.cosh(s2), np.sinh(s2)
        series = [c * c * ch + r * r * sh, c * r * np.exp(-s2), r * r * ch + c * c * sh]
    want = [np.where(x > 0, part, alpha * (e * term - (k == 0)))
            for k, (part, term) in enumerate(zip((x, s1, s2), series))]  # fmt: skip
    with symmetric.nilpotent_units() if nilpotent else contextlib.nullcontext():
        y, positive = fast_paths.first("elu_forward", mc.Tensor(data), alpha)
    np.testing.assert_array_equal(positive, x > 0)
    assert y.data.shape == data.shape
    # e^x - 1 carries exp's roundoff: ulps of alpha, absolute; the others relative
    np.testing.assert_allclose(y.data[0], want[0], rtol=2 * eps, atol=2 * eps * alpha)
    for got, expected, size in zip(y.data[1:], want[1:], (abs(s1), abs(s2) + s1 * s1)):
        np.testing.assert_array_less(np.abs(got - expected), 4 * eps * (size + 1e-300))
    beyond = data.copy()
    beyond[1, 0, 0, 0, 0] = 0.5
    with symmetric.nilpotent_units() if nilpotent else contextlib.nullcontext():
        refused = fast_paths.first("elu_forward", mc.Tensor(beyond), alpha) is None
    assert refused != nilpotent  # nilpotent units: the series is exact at any step
