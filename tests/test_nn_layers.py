"""Conv2d, pooling, batch norm and dropout: forward against naive loops, backward against
multicomplex-step directional derivatives of the forward, state dicts against PyTorch's.

The backward check: for random u, v, ``u . (J v)`` (the coefficient of a fresh imaginary unit
in ``sum(u * f(x + h i v))``, a forward-only computation) must equal ``(J^T u) . v`` from the
hand-written backward.  At a complex (order-1) point z the same is done one order up: z carries
i_1, the probe i_2, and both the real and the i_1 parts of the two sides must agree (backward
is the holomorphic continuation of the real backward).
"""

from __future__ import annotations

import contextlib
import math
import unittest.mock

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import mcnet as mc
from mcnet.nn import conv as conv_module
from mcnet.nn import correlation, loops, winograd
from mcnet.nn.batchnorm import BatchNorm1d, BatchNorm2d
from mcnet.nn.conv import Conv2d
from mcnet.nn.dropout import Dropout, resample_dropout
from mcnet.nn.module import derivative_parts_only
from mcnet.nn.pooling import AvgPool2d, MaxPool2d

DTYPES = st.sampled_from([np.float32, np.float64])
TOL = {np.float32: 1e-5, np.float64: 1e-12}
PROBE_STEP = {np.float32: 2.0**-12, np.float64: 2.0**-30}


# --- independent references ---------------------------------------------------------------


def naive_conv2d(x, weight, bias, stride, padding):
    """Cross-correlation by nested loops over batch, output channel and output pixel."""
    n, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    (sh, sw), (ph, pw) = stride, padding
    xp = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=x.dtype)
    xp[:, :, ph : ph + h, pw : pw + w] = x
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    out = np.zeros((n, o, ho, wo))
    for b in range(n):
        for oc in range(o):
            for i in range(ho):
                for j in range(wo):
                    patch = xp[b, :, i * sh : i * sh + kh, j * sw : j * sw + kw]
                    shift = 0.0 if bias is None else bias[oc]
                    out[b, oc, i, j] = np.sum(patch * weight[oc]) + shift
    return out


def naive_pool(x, kernel, stride, reduce):
    n, c, h, w = x.shape
    (kh, kw), (sh, sw) = kernel, stride
    ho, wo = (h - kh) // sh + 1, (w - kw) // sw + 1
    out = np.zeros((n, c, ho, wo))
    for i in range(ho):
        for j in range(wo):
            out[:, :, i, j] = reduce(x[:, :, i * sh : i * sh + kh, j * sw : j * sw + kw], (2, 3))
    return out


# --- the backward check -------------------------------------------------------------------


def point(x: np.ndarray, imag: np.ndarray | None) -> mc.Tensor:
    """x (order 0), or x + i_1 imag (order 1)."""
    return mc.tensor(x) if imag is None else mc.from_parts(np.stack([x, imag]))


def probe(z: mc.Tensor, v: np.ndarray, h: float, order: int) -> mc.Tensor:
    """z + h v i_{p+1}, z embedded in order p = ``order``: the new unit carries the probe."""
    parts = mc.functions.embed(z, order).parts
    zeros = np.zeros_like(parts)
    zeros[0] = h * v
    return mc.from_parts(np.concatenate([parts, zeros]))


def probe_coefficient(y: mc.Tensor, order: int, h: float) -> np.ndarray:
    """The coefficient of the probe unit in y as an order-p tensor's parts, divided by h."""
    unit = order + 1
    units = [(unit,)] + ([(1, unit)] if order else [])
    return np.stack([y.coef(u) for u in units]) / h


def _assert_vectors_close(got, want, dtype, what):
    """Element by element, relative to the largest entry: a wrong border pixel counts."""
    tol = TOL[dtype]
    scale = np.abs(want).max() + np.finfo(dtype).tiny
    err = np.abs(got - want)
    worst = np.unravel_index(np.argmax(err), err.shape)
    assert np.all(err <= tol * (np.abs(want) + scale)), (
        f"{what}: entry {worst} is {got[worst]!r}, expected {want[worst]!r} "
        f"(error {err[worst]:.3e}, largest entry {scale:.3e})"
    )


def _probe_each(fn, value, h, order, dtype):
    """For every entry i of ``value`` (an order-p tensor): the coefficient of a fresh unit in
    fn(value + h e_i i_{p+1}), over h; fn returns a scalar tensor.  (J^T u)_i, by forward
    passes only."""
    out = np.empty((2**order,) + value.shape, dtype=np.float64)
    basis = np.zeros(value.shape, dtype=dtype)
    for i in np.ndindex(*value.shape):
        basis[i] = 1
        coefficient = probe_coefficient(fn(probe(value, basis, h, order)), order, h)
        out[(slice(None),) + i] = coefficient
        basis[i] = 0
    return out


def check_input_gradient(module, x, imag, rng, dtype):
    """J^T u from the hand-written backward against J^T u by one probing forward per input
    entry, element by element, at a real (order 0) or complex (order 1) point; the real and
    i_1 parts both (backward is the holomorphic continuation of the real backward)."""
    order = 0 if imag is None else 1
    z = point(x, imag).astype(dtype)
    y = module(z)
    u = rng.standard_normal(y.shape).astype(dtype)
    grad_in = module.backward(mc.tensor(u, dtype=dtype))
    backward = mc.functions.embed(grad_in, order).parts
    forward = _probe_each(lambda t: (module(t) * u).sum(), z, PROBE_STEP[dtype], order, dtype)
    _assert_vectors_close(backward, forward, dtype, "J^T u")
    if order == 0:  # the same numbers through the public API, along a random direction
        v = rng.standard_normal(x.shape).astype(dtype)
        public = mc.directional(lambda t: (module(t) * u).sum(), mc.tensor(x, dtype=dtype), [v])
        want = float(np.sum(backward[0] * v))
        assert abs(public - want) <= TOL[dtype] * float(np.abs(backward[0] * v).sum() + 1e-30)


def check_parameter_gradients(module, x, imag, rng, dtype):
    """Each parameter's accumulated gradient against one probing forward per parameter
    entry, element by element, at order 0 or 1."""
    order = 0 if imag is None else 1
    z = point(x, imag).astype(dtype)
    y = module(z)
    u = rng.standard_normal(y.shape).astype(dtype)
    module.zero_grad()
    module.backward(mc.tensor(u, dtype=dtype))
    for name, p in module.named_parameters():
        value = p.value
        grad = mc.functions.embed(p.grad, order).parts

        def loss_at(t, p=p, value=value):
            p.value = t
            try:
                return (module(z) * u).sum()
            finally:
                p.value = value

        forward = _probe_each(loss_at, value, PROBE_STEP[dtype], order, dtype)
        _assert_vectors_close(grad, forward, dtype, name)


def randomise(module, rng, dtype):
    """Random parameter values (so BatchNorm's weight 1 / bias 0 do not hide terms)."""
    for p in module.parameters():
        p.value = mc.tensor(rng.standard_normal(p.shape), dtype=dtype)
    return module


def sample_point(rng, shape, order):
    x = rng.standard_normal(shape)
    return x, (None if order == 0 else 0.5 * rng.standard_normal(shape))


# --- Conv2d ---------------------------------------------------------------------------------

# small shapes: the backward checks probe every entry of the input and of the parameters
conv_cases = st.fixed_dictionaries(
    {
        "n": st.integers(1, 2),
        "c": st.integers(1, 3),
        "o": st.integers(1, 4),
        "kernel": st.tuples(st.integers(1, 3), st.integers(1, 3)),
        "stride": st.tuples(st.integers(1, 3), st.integers(1, 3)),
        "padding": st.tuples(st.integers(0, 2), st.integers(0, 2)),
        "extra": st.tuples(st.integers(0, 3), st.integers(0, 3)),
        "bias": st.booleans(),
        "seed": st.integers(0, 2**32 - 1),
    }
)


def make_conv(case, dtype):
    conv = Conv2d(
        case["c"], case["o"], case["kernel"], case["stride"], case["padding"], case["bias"]
    )
    shape = (case["n"], case["c"], case["kernel"][0] + case["extra"][0],
             case["kernel"][1] + case["extra"][1])  # fmt: skip
    return conv.to(dtype=dtype), shape


@given(conv_cases, DTYPES)
def test_conv2d_forward_matches_naive_loops(case, dtype):
    conv, shape = make_conv(case, dtype)
    x = np.random.default_rng(case["seed"]).standard_normal(shape).astype(dtype)
    y = conv(mc.tensor(x))
    bias = None if conv.bias is None else conv.bias.value.numpy()
    expected = naive_conv2d(x, conv.weight.value.numpy(), bias, conv.stride, conv.padding)
    assert y.shape == expected.shape and y.dtype == dtype
    np.testing.assert_allclose(y.numpy(), expected, rtol=0, atol=TOL[dtype] * 10)


@given(conv_cases, DTYPES, st.integers(0, 1))
def test_conv2d_backward_matches_directional_derivatives(case, dtype, order):
    conv, shape = make_conv(case, dtype)
    rng = np.random.default_rng(case["seed"])
    x, imag = sample_point(rng, shape, order)
    check_input_gradient(conv, x, imag, rng, dtype)
    check_parameter_gradients(conv, x, imag, rng, dtype)


def test_conv2d_bicomplex_forward_is_the_product_rule():
    """An order-2 input and order-2 weight: each coefficient from real convolutions."""
    rng = np.random.default_rng(0)
    conv = Conv2d(2, 3, 2, stride=1, padding=1, bias=False)
    xp, wp = rng.standard_normal((4, 1, 2, 4, 5)), rng.standard_normal((4, 3, 2, 2, 2))
    conv.weight.value = mc.from_parts(wp)
    y = conv(mc.from_parts(xp)).parts
    sign = lambda a, b: -1.0 if bin(a & b).count("1") % 2 else 1.0  # noqa: E731
    expected = np.zeros_like(y)
    for a in range(4):
        for b in range(4):
            expected[a ^ b] += sign(a, b) * naive_conv2d(xp[a], wp[b], None, (1, 1), (1, 1))
    np.testing.assert_allclose(y, expected, atol=1e-12)


def naive_conv2d_weight_grad(x, g, kernel, padding, stride=(1, 1)):
    """dW[o, c, i, j] = sum over n, oh, ow of g[n, o, oh, ow] * x_padded[n, c, oh*sh + i,
    ow*sw + j], one einsum per kernel offset."""
    (kh, kw), (ph, pw), (sh, sw) = kernel, padding, stride
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    ho, wo = g.shape[2:]
    out = np.zeros((g.shape[1], x.shape[1], kh, kw))
    for i in range(kh):
        for j in range(kw):
            window = xp[:, :, i : i + sh * (ho - 1) + 1 : sh, j : j + sw * (wo - 1) + 1 : sw]
            out[:, :, i, j] = np.einsum("nohw,nchw->oc", g, window)
    return out


def naive_conv2d_input_grad(g, weight, image_size, padding, stride=(1, 1)):
    """dx by scattering every output gradient back through every kernel offset."""
    (ph, pw), (h, w), (sh, sw) = padding, image_size, stride
    _, _, kh, kw = weight.shape
    n, _, ho, wo = g.shape
    out = np.zeros((n, weight.shape[1], h + 2 * ph, w + 2 * pw))
    for i in range(kh):
        for j in range(kw):
            out[:, :, i : i + sh * (ho - 1) + 1 : sh, j : j + sw * (wo - 1) + 1 : sw] += (
                np.einsum("nohw,oc->nchw", g, weight[:, :, i, j]))  # fmt: skip
    return out[:, :, ph : ph + h, pw : pw + w]


@pytest.mark.parametrize("path", ["im2col", "direct"])
@pytest.mark.parametrize("derivative_parts", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(
    st.integers(3, 6), st.tuples(st.integers(1, 2), st.integers(1, 2)),
    st.tuples(st.integers(0, 2), st.integers(0, 2)), st.integers(1, 3),
    st.sampled_from([1.0, 2.0**-20]), st.booleans(), st.integers(0, 2**32 - 1),
)  # fmt: skip
@example(
    n=6, stride=(1, 1), padding=(0, 0), chunk=3, i_scale=1.0, real_weight=False, seed=0
)  # split columns: 8 * 3 <= 45
def test_conv2d_of_complex_images_in_batch_chunks_matches_naive_loops(
    path, derivative_parts, dtype, n, stride, padding, chunk, i_scale, real_weight, seed
):
    """Complex images (an H v pass's second layer) a few images per chunk (the chunk size
    made small): the output, the weight gradient and the input gradient against naive real
    loops by the complex product rule, so every chunk's columns and every chunk's place in
    the input gradient are checked.  ``im2col``: im2col, GEMMs, col2im; ``direct``: the
    direct correlation of the images' parts at stride 1 (``nn.correlation``; im2col at
    stride 2).  i-parts at full scale or 2^-20 of it (where the i-parts' product is left
    out); a real or a complex weight.  Within ``derivative_parts_only`` (an H v pass; for
    im2col the images and weight split into real halves where the chunks have 8x the output
    channels in columns) the weight gradient is its i-part alone, with a zero real part."""
    rng = np.random.default_rng(seed)
    c, o, kernel = 2, 3, (3, 2)
    conv = Conv2d(c, o, kernel, stride, padding).to(dtype=dtype)
    w = (
        rng.standard_normal((2, o, c, *kernel))
        * np.array([1.0, i_scale])[:, None, None, None, None]
    )
    if real_weight:
        w[1] = 0
    conv.weight.value = (
        mc.tensor(w[0], dtype=dtype) if real_weight else mc.from_parts(w).astype(dtype)
    )
    x = rng.standard_normal((2, n, c, 5, 6)) * np.array([1.0, i_scale])[:, None, None, None, None]
    per_image = (
        c
        * kernel[0]
        * kernel[1]
        * math.prod((s + 2 * p - k) // t + 1 for s, p, k, t in zip((5, 6), padding, kernel, stride))
    )
    itemsize = np.dtype(np.result_type(dtype, np.complex64)).itemsize
    parts_only = derivative_parts_only() if derivative_parts else contextlib.nullcontext()
    pairs = dict.fromkeys(conv_module._DIRECT_CHANNEL_PAIRS, 0 if path == "im2col" else c * o)
    with (
        unittest.mock.patch.object(loops, "CHUNK_BYTES", chunk * per_image * itemsize),
        unittest.mock.patch.object(correlation, "CHUNK_BYTES", chunk * per_image * itemsize),
        unittest.mock.patch.object(conv_module, "_DIRECT_CHANNEL_PAIRS", pairs),
        parts_only,
    ):
        y = conv(mc.from_parts(x).astype(dtype))
        u = rng.standard_normal((2, *y.shape)) * np.array([1.0, i_scale]).reshape(2, 1, 1, 1, 1)
        conv.zero_grad()
        grad_in = conv.backward(mc.from_parts(u).astype(dtype))
    b = conv.bias.value.numpy()

    def naive(xs, ws, bias=None):
        return naive_conv2d(xs, ws, bias, stride, padding)

    (xr, xi), (wr, wi), (ur, ui) = x.astype(dtype), w.astype(dtype), u
    want = [naive(xr, wr, b) - naive(xi, wi), naive(xr, wi) + naive(xi, wr)]
    tol = TOL[dtype] * 10
    for got, expected in zip(y.parts, want):
        np.testing.assert_allclose(got, expected, rtol=0, atol=tol * np.abs(expected).max())

    def weight_grad(xs, g):
        return naive_conv2d_weight_grad(xs, g, kernel, padding, stride)

    want = [weight_grad(xr, ur) - weight_grad(xi, ui), weight_grad(xi, ur) + weight_grad(xr, ui)]
    if derivative_parts:
        want[0] = np.zeros_like(want[0])
    for got, expected in zip(conv.weight.grad.parts, want):
        scale = max(np.abs(expected).max(), np.abs(want[1]).max())
        np.testing.assert_allclose(got, expected, rtol=0, atol=tol * scale)

    def input_grad(g, ws):
        return naive_conv2d_input_grad(g, ws, (5, 6), padding, stride)

    want = [input_grad(ur, wr) - input_grad(ui, wi), input_grad(ur, wi) + input_grad(ui, wr)]
    for got, expected in zip(grad_in.parts, want):
        np.testing.assert_allclose(got, expected, rtol=0, atol=tol * np.abs(expected).max())


def _real_parts(data):
    """Component data as real parts: (K, ...) real, or (K, ...) complex as (2K, ...)."""
    return np.concatenate([data.real, data.imag]) if data.dtype.kind == "c" else data


# the direct correlation (real images at stride 1) with weights of every kind: order 0, one
# direction of order 1-3 (real components), complex and bicomplex (general layout)
WEIGHT_KINDS = [("real", 1), ("one_direction", 2), ("one_direction", 4), ("general", 1),
                ("general", 2)]  # fmt: skip


def _weight_data(kind, count, shape, rng, dtype):
    parts = (
        rng.standard_normal((count, *shape))
        if kind != "general"
        else (rng.standard_normal((count, *shape)) + 1j * rng.standard_normal((count, *shape)))
    )
    return parts.astype(dtype if kind != "general" else np.result_type(dtype, np.complex64))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("weight_kind", WEIGHT_KINDS)
@given(
    st.integers(1, 3), st.integers(1, 3), st.integers(1, 5),
    st.tuples(st.integers(1, 5), st.integers(1, 5)),
    st.tuples(st.integers(0, 3), st.integers(0, 3)),
    st.tuples(st.integers(0, 4), st.integers(0, 4)),
    st.sampled_from(["none", "like the weight", "real"]), st.booleans(),
    st.sampled_from(["no", "the weight's", "the weight's and the bias's"]),
    st.integers(0, 2**32 - 1),
)  # fmt: skip
def test_conv2d_of_real_images_matches_naive_loops_for_every_weight_kind(
    weight_kind, dtype, n, c, o, kernel, padding, extra, bias, input_grad, zero_top, seed
):
    """Real images, stride 1 (the direct correlation, ``correlation.correlate``): each component of
    the output, of the weight gradient and (real weights) of the input gradient against
    naive loops, component by component; odd and even channel counts, kernels up to 5x5, no
    bias, a bias of the weight's kind or a real one, with and without the input gradient (a
    first layer's backward skips it), and a zero top component (a curvature pass's weights:
    its outputs are skipped, and must then be zeros, or the bias where it is not zero).
    Freed arrays of NaN first, so that memory handed back again is not zero by luck."""
    rng = np.random.default_rng(seed)
    kind, count = weight_kind
    conv = Conv2d(c, o, kernel, 1, padding, bias != "none").to(dtype=dtype)
    conv.input_grad_needed = input_grad
    weight = _weight_data(kind, count, conv.weight.shape, rng, dtype)
    if zero_top != "no":
        weight[-1] = 0
    conv.weight.value = mc.Tensor(weight)
    weights = _real_parts(conv.weight.value.data)
    biases = [None] * len(weights)
    if bias == "like the weight":
        bias_data = _weight_data(kind, count, (o,), rng, dtype)
        if zero_top == "the weight's and the bias's":
            bias_data[-1] = 0
        conv.bias.value = mc.Tensor(bias_data)
        biases = _real_parts(conv.bias.value.data)
    elif bias == "real":  # the first component's real part only
        conv.bias.value = mc.tensor(rng.standard_normal(o).astype(dtype))
        biases[0] = conv.bias.value.numpy()
    x = rng.standard_normal((n, c, kernel[0] + extra[0], kernel[1] + extra[1])).astype(dtype)
    for _ in range(4):
        junk = np.full(4 * len(weights) * n * o * x.shape[2] * x.shape[3], np.nan)
        del junk
    y = conv(mc.tensor(x))
    got = _real_parts(y.data)
    assert got.shape[0] == len(weights) and y.data.dtype == conv.weight.value.data.dtype
    tol = TOL[dtype] * 10
    for part, (w, b) in enumerate(zip(weights, biases)):
        want = naive_conv2d(x, w, b, (1, 1), padding)
        np.testing.assert_allclose(got[part], want, rtol=0, atol=tol * np.abs(want).max())
    u = rng.standard_normal(y.data.shape) + (1j * rng.standard_normal(y.data.shape)
                                             if y.data.dtype.kind == "c" else 0)  # fmt: skip
    conv.zero_grad()
    grad_in = conv.backward(mc.Tensor(u.astype(y.data.dtype)))
    for part, g in enumerate(_real_parts(u)):
        want = naive_conv2d_weight_grad(x, g, kernel, padding)
        got_w = _real_parts(conv.weight.grad.data)[part]
        np.testing.assert_allclose(got_w, want, rtol=0, atol=tol * np.abs(want).max())
        if bias != "none":
            got_b = _real_parts(conv.bias.grad.data)[part]
            np.testing.assert_allclose(got_b, g.sum(axis=(0, 2, 3)), rtol=0,
                                       atol=tol * np.abs(g).sum(axis=(0, 2, 3)).max())  # fmt: skip
    if not input_grad:
        assert grad_in is None
    elif kind == "real":
        want = naive_conv2d_input_grad(u[0], weights[0], x.shape[2:], padding)
        np.testing.assert_allclose(grad_in.data[0], want, rtol=0, atol=tol * np.abs(want).max())


def _bilinear(fn, a, b):
    """fn(a, b), bilinear, for real or complex a and b, from real evaluations alone."""
    ar, ai, br, bi = a.real, np.imag(a), b.real, np.imag(b)
    return fn(ar, br) - fn(ai, bi) + 1j * (fn(ar, bi) + fn(ai, br))


def _assert_parts_close(got, want, tol):
    """Real part and imaginary part each against its own largest entry; ``got`` a tensor of
    order 0 or 1 (complex, or in the one-direction layout)."""
    data = got.data
    got = data[0] + 1j * data[1] if len(data) == 2 else data[0]
    for part in (np.real, np.imag):
        g, w = part(got), part(want)
        np.testing.assert_allclose(g, w, rtol=0, atol=tol * np.abs(w).max() + 1e-300)


@unittest.mock.patch.object(conv_module, "_WINOGRAD_CHANNEL_PAIRS", {"real": 0, "complex": 0})
@unittest.mock.patch.object(
    conv_module, "_DIRECT_CHANNEL_PAIRS", dict.fromkeys(conv_module._DIRECT_CHANNEL_PAIRS, 0)
)
@unittest.mock.patch.object(winograd, "_CHUNK_BYTES", 3000)  # chunks of 1-2 images
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(
    st.integers(1, 3), st.integers(16, 19), st.integers(7, 9),
    st.tuples(st.integers(0, 6), st.integers(0, 6)),
    st.tuples(st.integers(0, 2), st.integers(0, 2)),
    st.sampled_from(["none", "real", "like the weight"]), st.booleans(),
    st.tuples(*[st.sampled_from(["real", "complex"])] * 3),
    st.sampled_from([1.0, 2.0**-20]), st.booleans(), st.integers(0, 2**32 - 1),
)  # fmt: skip
def test_conv2d_winograd_matches_naive_loops(
    dtype, n, c, o, extra, padding, bias, input_grad, kinds, scale, parts_only, seed
):
    """3x3 kernels at stride 1 by Winograd's F(2x2, 3x3) (``nn.winograd``, here at every
    channel count, the direct correlation at none): the output, the weight, bias and input
    gradients against naive loops, for odd and even output sizes (a half-used last tile row
    or column) and every padding.  Images, weight and output gradient each
    real or complex of order 1, with imaginary parts of the real parts' size or 2**-20 of it
    (a derivative pass's, whose product is left out of the real part), each part against its
    own scale; within ``derivative_parts_only`` a complex weight gradient's i-part alone.
    Batch chunks of one or two images, so that the weight gradient sums over chunks."""
    rng = np.random.default_rng(seed)
    cdtype = np.result_type(dtype, np.complex64)

    def draw(shape, kind):
        real = rng.standard_normal(shape)
        if kind == "real":
            return real.astype(dtype)
        return (real + 1j * scale * rng.standard_normal(shape)).astype(cdtype)

    conv = Conv2d(c, o, 3, 1, padding, bias != "none").to(dtype=dtype)
    conv.input_grad_needed = input_grad
    weight = draw(conv.weight.shape, kinds[1])
    conv.weight.value = mc.tensor(weight)
    if bias != "none":
        conv.bias.value = mc.tensor(draw((o,), kinds[1] if bias == "like the weight" else "real"))
    bias_ = None if conv.bias is None else conv.bias.value.data[0]
    size = [max(3 - 2 * p, 1) + e for p, e in zip(padding, extra)]
    x = draw((n, c, *size), kinds[0])
    y = conv(mc.tensor(x))
    assert conv.saved.winograd  # the Winograd path ran
    want = _bilinear(lambda a, b: naive_conv2d(a, b, None, (1, 1), padding), x, weight)
    if bias_ is not None:
        want = want + bias_[:, None, None]
    tol = TOL[dtype] * 10
    _assert_parts_close(y, want, tol)
    u = draw(y.shape, kinds[2])
    conv.zero_grad()
    complex_grad = np.iscomplexobj(u) or np.iscomplexobj(x)  # the weight gradient's
    with derivative_parts_only() if parts_only else contextlib.nullcontext():
        grad_in = conv.backward(mc.tensor(u))
    want = _bilinear(lambda a, b: naive_conv2d_weight_grad(a, b, (3, 3), padding), x, u)
    got = conv.weight.grad
    if parts_only and complex_grad:  # the i-part alone, in the one-direction layout
        assert np.all(got.data[0] == 0)
        np.testing.assert_allclose(got.data[1], want.imag, rtol=0,
                                   atol=tol * np.abs(want.imag).max())  # fmt: skip
    else:
        _assert_parts_close(got, want, tol)
    if bias != "none":
        _assert_parts_close(conv.bias.grad, u.sum(axis=(0, 2, 3)), tol)
    if not input_grad:
        assert grad_in is None
        return
    want = _bilinear(lambda a, b: naive_conv2d_input_grad(a, b, x.shape[2:], padding), u, weight)
    _assert_parts_close(grad_in, want, tol)


def test_conv2d_default_init_and_state_dict():
    conv = Conv2d(3, 8, (5, 3))
    state = conv.state_dict()
    assert list(state) == ["weight", "bias"]
    assert state["weight"].shape == (8, 3, 5, 3) and state["bias"].shape == (8,)
    bound = 1 / np.sqrt(3 * 5 * 3)
    for values in state.values():
        assert np.abs(values).max() <= bound and np.abs(values).max() > 0.5 * bound
    assert Conv2d(1, 2, 3, bias=False).state_dict().keys() == {"weight"}
    other = Conv2d(3, 8, (5, 3))
    other.load_state_dict(state)
    for key, value in other.state_dict().items():
        np.testing.assert_array_equal(value, state[key])


def test_conv2d_rejects_bad_input():
    conv = Conv2d(3, 4, 3)
    with pytest.raises(ValueError, match="expected 3 input channels, got 2"):
        conv(mc.tensor(np.zeros((1, 2, 5, 5))))
    with pytest.raises(ValueError, match=r"4-D input \(N, C, H, W\), got shape \(3, 5, 5\)"):
        conv(mc.tensor(np.zeros((3, 5, 5))))
    with pytest.raises(ValueError, match="input is 2x5, smaller than the 3x3 kernel"):
        conv(mc.tensor(np.zeros((1, 3, 2, 5))))
    with pytest.raises(ValueError, match="kernel_size must be an int or a pair"):
        Conv2d(1, 1, (1, 2, 3))
    with pytest.raises(ValueError, match="stride >= 1"):
        Conv2d(1, 1, 3, stride=0)


# --- pooling ----------------------------------------------------------------------------------

pool_cases = st.fixed_dictionaries(
    {
        "kernel": st.tuples(st.integers(1, 3), st.integers(1, 3)),
        "stride": st.none() | st.tuples(st.integers(1, 3), st.integers(1, 3)),
        "extra": st.tuples(st.integers(0, 3), st.integers(0, 3)),
        "seed": st.integers(0, 2**32 - 1),
    }
)


def make_pool(cls, case):
    pool = cls(case["kernel"], case["stride"])
    shape = (2, 3, case["kernel"][0] + case["extra"][0], case["kernel"][1] + case["extra"][1])
    return pool, shape


@given(st.sampled_from([AvgPool2d, MaxPool2d]), pool_cases, DTYPES, st.integers(0, 1))
def test_pooling_forward_and_backward(cls, case, dtype, order):
    pool, shape = make_pool(cls, case)
    rng = np.random.default_rng(case["seed"])
    x, imag = sample_point(rng, shape, order)
    stride = case["stride"] or case["kernel"]
    reduce = np.mean if cls is AvgPool2d else np.max
    expected = naive_pool(x.astype(dtype), case["kernel"], stride, reduce)
    np.testing.assert_allclose(pool(point(x, imag).astype(dtype)).real, expected, atol=TOL[dtype])
    check_input_gradient(pool, x, imag, rng, dtype)


@given(st.tuples(st.integers(1, 3), st.integers(1, 3)),
       st.tuples(st.integers(0, 2), st.integers(0, 2)), DTYPES, st.integers(0, 1),
       st.integers(0, 2**32 - 1))  # fmt: skip
@example((2, 2), (1, 1), np.float64, 0, 0)  # LeNet's pooling, in its own loops
@example((2, 2), (1, 0), np.float64, 1, 1)
def test_avgpool_backward_sets_every_element_of_fresh_memory(kernel, extra, dtype, order, seed):
    """Disjoint windows (stride = kernel) are written, not added to a zeroed array: the rows
    and columns no window covers (floor mode) must be zeroed all the same.  Freed arrays of
    NaN first, so that memory malloc hands back again is not zero by luck.  At order 1 the
    gradient is complex (an H v pass's), its imaginary part spread the same way."""
    rng = np.random.default_rng(seed)
    (kh, kw), (eh, ew) = kernel, extra
    shape = (2, 3, 2 * kh + eh, 3 * kw + ew)
    x, imag = sample_point(rng, shape, order)
    pool = AvgPool2d(kernel)
    y = pool(point(x, imag).astype(dtype))
    u = rng.standard_normal((order + 1, *y.shape))
    ho, wo = y.shape[2:]
    want = np.zeros((order + 1, *shape))
    for i in range(kh):
        for j in range(kw):
            want[:, :, :, i : ho * kh : kh, j : wo * kw : kw] += u / (kh * kw)
    for _ in range(4):
        junk = np.full(4 * int(np.prod(shape)), np.nan, dtype=dtype)
        del junk
    grad = mc.tensor(u[0], dtype=dtype) if order == 0 else mc.from_parts(u).astype(dtype)
    got = mc.functions.embed(pool.backward(grad), order).parts
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL[dtype])


def test_maxpool_decides_on_real_part_and_carries_the_element():
    real = np.array([[[[1.0, 1.0], [0.0, -2.0]]]])  # tie between the first two (first wins)
    imag = np.array([[[[5.0, 7.0], [9.0, 8.0]]]])  # the imaginary parts must not decide
    y = MaxPool2d(2)(point(real, imag))
    assert y.real.item() == 1.0 and y.coef((1,)).item() == 5.0
    pool = MaxPool2d(2)
    pool(point(real, imag))
    grad = pool.backward(mc.tensor(np.array([[[[3.0]]]])))
    np.testing.assert_array_equal(grad.numpy(), [[[[3.0, 0.0], [0.0, 0.0]]]])


@given(pool_cases, st.integers(0, 2), st.booleans(), st.integers(0, 2**32 - 1))
def test_maxpool_cpu_loop_picks_what_the_window_arrays_pick(case, order, channel_major, seed):
    """The CPU's one-pass loop against the windows-and-argmax forward (the GPU's) run on the
    same NumPy data: the same elements carried, ties and NaN included, in either layout;
    and its backward adds each gradient to the element chosen (overlapping windows too)."""
    pool, shape = make_pool(MaxPool2d, case)
    rng = np.random.default_rng(seed)
    parts = rng.integers(-3, 4, (2**order, *shape)).astype(np.float64)  # many ties
    parts[0].reshape(-1)[rng.integers(0, parts[0].size, 2)] = np.nan
    data = (parts[0] + 1j * parts[1])[None] if order == 1 else parts
    if channel_major:
        data = np.ascontiguousarray(data.transpose(0, 2, 1, 3, 4)).transpose(0, 2, 1, 3, 4)
    x = mc.Tensor(data)
    got = pool(x)
    choice, _ = pool.saved
    want = pool._forward_windows(x)
    np.testing.assert_array_equal(got.data, want.data)
    np.testing.assert_array_equal(choice, pool.saved[0])  # the same element of every tie
    g = rng.standard_normal(got.data.shape)
    back = pool.backward(mc.Tensor(g)).data
    expected = np.zeros((len(g), *shape))
    kw, (sh, sw) = pool.kernel_size[1], pool.stride
    for idx in np.ndindex(*choice.shape):
        n, c, i, j = idx
        a, b = divmod(int(choice[idx]), kw)
        expected[:, n, c, i * sh + a, j * sw + b] += g[:, n, c, i, j]
    np.testing.assert_array_equal(back, expected)


def test_pooling_rejects_bad_input():
    with pytest.raises(ValueError, match=r"AvgPool2d expected a 4-D input .* got shape \(4, 4\)"):
        AvgPool2d(2)(mc.tensor(np.zeros((4, 4))))
    with pytest.raises(ValueError, match="MaxPool2d: the .* input is 1x4, smaller than the 2x2"):
        MaxPool2d(2)(mc.tensor(np.zeros((1, 1, 1, 4))))


# --- BatchNorm --------------------------------------------------------------------------------

bn_cases = st.sampled_from(
    [(BatchNorm1d, (5, 3)), (BatchNorm1d, (3, 3, 4)), (BatchNorm2d, (3, 3, 2, 3))]
)


@given(bn_cases, st.booleans(), DTYPES, st.integers(0, 1), st.integers(0, 2**32 - 1))
def test_batchnorm_backward_matches_directional_derivatives(case, train, dtype, order, seed):
    cls, shape = case
    rng = np.random.default_rng(seed)
    bn = randomise(cls(3), rng, dtype).train(train)
    bn._buffers["running_mean"] = rng.standard_normal(3)
    bn._buffers["running_var"] = rng.uniform(0.5, 2.0, 3)
    x, imag = sample_point(rng, shape, order)
    check_input_gradient(bn, x, imag, rng, dtype)
    check_parameter_gradients(bn, x, imag, rng, dtype)


def _batchnorm_pass(bn, x, grad, fused: bool):
    """Output, input gradient and parameter gradients of a train-mode BatchNorm2d, by the
    fused loops or (``fused`` False) by the tensor operations."""
    with unittest.mock.patch.object(
        BatchNorm2d, "_fused", lambda self, x: fused and _FUSED(self, x)
    ):
        y = bn(x)
        bn.zero_grad()
        grad_in = bn.backward(grad(y))
    return [y.parts, grad_in.parts, bn.weight.grad.parts, bn.bias.grad.parts]


_FUSED = BatchNorm2d._fused


@given(DTYPES, st.integers(0, 1), st.booleans(), st.booleans(), st.integers(0, 2**32 - 1))
def test_batchnorm2d_fused_loops_match_the_tensor_operations(dtype, order, channel_major,
                                                            real_parameters, seed):  # fmt: skip
    """Train mode on real or complex (order-1) NCHW images, weight and bias real or complex,
    the images in either layout: the fused loops (``loops.batch_norm``, two passes a channel)
    give the tensor operations' output, input gradient and weight and bias gradients to
    roundoff; so does a gradient of order 2 after a fused forward (the tensor operations'
    backward, on what the fused forward kept)."""
    rng = np.random.default_rng(seed)
    shape = (3, 4, 2, 5)
    bn = randomise(BatchNorm2d(4), rng, dtype)
    if not real_parameters:
        for p in bn.parameters():
            p.value = point(p.value.numpy(), rng.standard_normal(4)).astype(dtype)
    x, imag = sample_point(rng, shape, order)
    data = point(x, imag).astype(dtype).data
    if channel_major:
        data = np.ascontiguousarray(data.transpose(0, 2, 1, 3, 4)).transpose(0, 2, 1, 3, 4)
    images = mc.Tensor(data)
    u = rng.standard_normal((4, *shape))
    for grad_order in (order, 2):
        parts = u[: 2**grad_order]

        def grad(y, parts=parts, grad_order=grad_order):
            return (
                mc.from_parts(parts).astype(dtype)
                if grad_order
                else mc.tensor(parts[0], dtype=dtype)
            )

        fused = _batchnorm_pass(bn, images, grad, True)
        reference = _batchnorm_pass(bn, images, grad, False)
        for got, want in zip(fused, reference):
            assert got.shape == want.shape
            for g, w in zip(got, want):
                np.testing.assert_allclose(g, w, rtol=0, atol=TOL[dtype] * max(np.abs(w).max(), 1))


def test_batchnorm_train_eval_and_running_statistics():
    rng = np.random.default_rng(1)
    bn = BatchNorm2d(2)
    bn.weight.value, bn.bias.value = mc.tensor([2.0, 0.5]), mc.tensor([0.1, -1.0])
    x = rng.normal(3.0, 2.0, (4, 2, 3, 3))
    mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
    y = bn(mc.tensor(x)).numpy()
    expected = (x - mean[:, None, None]) / np.sqrt(var[:, None, None] + 1e-5)
    expected = expected * np.array([2.0, 0.5])[:, None, None] + np.array([0.1, -1.0])[:, None, None]
    np.testing.assert_allclose(y, expected, atol=1e-12)
    unbiased = x.var(axis=(0, 2, 3), ddof=1)
    np.testing.assert_allclose(bn.buffer("running_mean"), 0.1 * mean)
    np.testing.assert_allclose(bn.buffer("running_var"), 0.9 + 0.1 * unbiased)
    assert bn.buffer("num_batches_tracked") == 1
    # derivative passes (complex input, or complex parameters) leave the statistics alone
    bn(point(x, rng.standard_normal(x.shape)))
    kept = bn.weight.value
    bn.weight.value = point(kept.numpy(), np.ones(2))
    bn(mc.tensor(x))
    bn.weight.value = kept
    np.testing.assert_allclose(bn.buffer("running_mean"), 0.1 * mean)
    assert bn.buffer("num_batches_tracked") == 1
    # eval: the running statistics, and no update
    bn.eval()
    x2 = rng.standard_normal((2, 2, 3, 3))
    rm, rv = bn.buffer("running_mean"), bn.buffer("running_var")
    expected = (x2 - rm[:, None, None]) / np.sqrt(rv[:, None, None] + 1e-5)
    expected = expected * np.array([2.0, 0.5])[:, None, None] + np.array([0.1, -1.0])[:, None, None]
    np.testing.assert_allclose(bn(mc.tensor(x2)).numpy(), expected, atol=1e-12)
    assert bn.buffer("num_batches_tracked") == 1


def test_batchnorm_state_dict_matches_pytorch():
    state = BatchNorm2d(4).state_dict()
    assert list(state) == ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    np.testing.assert_array_equal(state["weight"], np.ones(4))
    np.testing.assert_array_equal(state["bias"], np.zeros(4))
    np.testing.assert_array_equal(state["running_mean"], np.zeros(4))
    np.testing.assert_array_equal(state["running_var"], np.ones(4))
    count = state["num_batches_tracked"]
    assert count.shape == () and count.dtype == np.int64
    loaded = {k: v + 1 for k, v in state.items()}
    bn = BatchNorm1d(4)
    bn.load_state_dict(loaded)
    for key, value in bn.state_dict().items():
        np.testing.assert_array_equal(value, loaded[key])
    assert bn.state_dict()["num_batches_tracked"].dtype == np.int64


def test_batchnorm_rejects_bad_input():
    with pytest.raises(ValueError, match=r"BatchNorm2d expected a 4-D input .* got shape \(2, 3\)"):
        BatchNorm2d(3)(mc.tensor(np.zeros((2, 3))))
    with pytest.raises(ValueError, match="expected 3 channels .* got 2"):
        BatchNorm1d(3)(mc.tensor(np.zeros((4, 2))))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        BatchNorm1d(3)(mc.tensor(np.zeros((1, 3))))


# --- Dropout ----------------------------------------------------------------------------------


def test_dropout_reuses_its_mask_across_orders():
    rng = np.random.default_rng(2)
    drop = Dropout(0.4)
    x = rng.standard_normal((50, 40))
    real = drop(mc.tensor(x)).numpy()
    kept = real != 0
    assert 0.3 < 1 - kept.mean() < 0.5
    np.testing.assert_allclose(real[kept], x[kept] / 0.6)
    v = rng.standard_normal(x.shape)
    # complex and bicomplex passes see the same function: derivative = mask / (1 - p) * v
    first = mc.directional(drop, x, [v])
    np.testing.assert_allclose(first, kept * v / 0.6, atol=1e-12)
    second = mc.directional(drop, x, [v, v])
    np.testing.assert_array_equal(second, np.zeros_like(x))
    drop(mc.tensor(x))
    np.testing.assert_array_equal(drop.backward(mc.tensor(v)).numpy(), kept * v / 0.6)
    drop.resample()
    assert not np.array_equal(drop(mc.tensor(x)).numpy() != 0, kept)


def test_resample_dropout_is_deterministic_from_a_seed():
    from mcnet.nn.container import Sequential

    x = mc.tensor(np.ones((30, 30)))
    nets = [Sequential(Dropout(0.5), Dropout(0.5)) for _ in range(3)]
    for net, seed in zip(nets, (7, 7, 8)):
        resample_dropout(net, seed)
    a, b, c = (net(x).numpy() for net in nets)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(nets[0][0].mask((30, 30)), nets[0][1].mask((30, 30)))
    nets[0][0](mc.tensor(np.ones((3, 4))))  # a new shape draws a new mask
    assert nets[0][0].mask((3, 4)).shape == (3, 4)


def test_dropout_eval_is_identity_and_bad_p_is_rejected():
    drop = Dropout(0.9).eval()
    x = mc.tensor(np.arange(6.0))
    np.testing.assert_array_equal(drop(x).numpy(), np.arange(6.0))
    np.testing.assert_array_equal(drop.backward(x).numpy(), np.arange(6.0))
    with pytest.raises(ValueError, match=r"must be in \[0, 1\], got 1.5"):
        Dropout(1.5)
