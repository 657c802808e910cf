"""The fused kernels: exact derivatives against hand-written formulas, agreement with the
per-array recursion, the CUDA source under Numba's simulator, and the GPU when present."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import mcnet as mc
from mcnet.algebra import kernels
from mcnet.algebra import multicomplex as alg
from mcnet.tensor import FUSE_MIN_SIZE, Tensor

N = FUSE_MIN_SIZE + 37  # large enough to take the fused path, not a multiple of anything


def _sigmoid_derivs(x):
    s = 1 / (1 + np.exp(-x))
    return [s * (1 - s), s * (1 - s) * (1 - 2 * s), s * (1 - s) * (1 - 6 * s + 6 * s * s)]


def _tanh_derivs(x):
    t = np.tanh(x)
    return [1 - t * t, -2 * t * (1 - t * t), -2 * (1 - t * t) * (1 - 3 * t * t)]


def _exp_derivs(x):
    return [np.exp(x)] * 3


def _sin_derivs(x):
    return [np.cos(x), -np.sin(x), -np.cos(x)]


HAND_WRITTEN = {
    "sigmoid": (mc.sigmoid, _sigmoid_derivs),
    "tanh": (mc.tanh, _tanh_derivs),
    "exp": (mc.exp, _exp_derivs),
    "sin": (mc.sin, _sin_derivs),
}


@pytest.mark.parametrize("name", sorted(HAND_WRITTEN))
@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fused_derivatives_match_hand_written_formulas(name, order, dtype):
    f, derivs = HAND_WRITTEN[name]
    x = np.linspace(-6, 6, N).astype(dtype)
    # the multicomplex step: mc.derivative's Taylor mode does not run the fused kernels
    got = mc.derivatives.multicomplex_step(f, x, [np.ones_like(x)] * order)
    want = derivs(x.astype(np.float64))[order - 1]
    tol = 1e-11 if dtype == np.float64 else 2e-4
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())


def _parts_product(p, q):
    """Reference product on the API layout: e_a e_b = (-1)^popcount(a & b) e_(a ^ b)."""
    out = np.zeros_like(p)
    for a in range(len(p)):
        for b in range(len(q)):
            sign = -1.0 if bin(a & b).count("1") % 2 else 1.0
            out[a ^ b] += sign * p[a] * q[b]
    return out


@pytest.mark.parametrize("order", [2, 3, 4])
def test_fused_product_matches_the_unit_multiplication_table(order):
    rng = np.random.default_rng(order)
    p, q = rng.normal(size=(2, 2**order, N))
    got = (mc.from_parts(p) * mc.from_parts(q)).parts
    np.testing.assert_allclose(got, _parts_product(p, q), rtol=1e-12, atol=1e-12)


APPLICABLE = [
    (name, order)
    for name in sorted(kernels.FUSED)
    for order in range(5)
    if kernels.applies(name, order)
]


def test_every_fused_primitive_has_a_kernel_at_some_order():
    assert {name for name, _ in APPLICABLE} == set(kernels.FUSED)
    assert len(APPLICABLE) >= 2 * len(kernels.FUSED)


@pytest.mark.parametrize(("name", "order"), APPLICABLE)
@given(seed=st.integers(0, 2**32 - 1))
def test_kernel_agrees_with_recursion_for_large_imaginary_parts(name, order, seed):
    rng = np.random.default_rng(seed)
    fn, n_inputs = kernels.FUSED[name][:2]
    inputs = []
    for _ in range(n_inputs):
        parts = rng.uniform(-0.3, 0.3, size=(2**order, 64))
        parts[0] += 1.0
        inputs.append(mc.from_parts(parts))
    fused = Tensor(kernels.run(name, order, *(t.data for t in inputs)))
    recursed = Tensor._from_comps(fn(*(t.comps for t in inputs)))
    np.testing.assert_allclose(fused.parts, recursed.parts, rtol=1e-12, atol=1e-12)


@pytest.mark.slow
def test_cuda_sources_run_under_the_simulator():
    """Every fused CUDA kernel, general and one-direction, at orders 0-3, run by Numba's CUDA
    simulator on a machine without a GPU, against the per-array recursion."""
    script = textwrap.dedent(
        """
        import numpy as np
        from mcnet.algebra import kernels, symmetric, multicomplex as alg
        rng = np.random.default_rng(0)
        n = 40
        for name, (fn, n_inputs, *_) in kernels.FUSED.items():
            for order in range(4):
                for one_direction, series in ((False, False), (True, False), (True, True)):
                    if one_direction and order < 2:
                        continue
                    if not one_direction and order < kernels.FUSED[name][2]:
                        continue
                    if one_direction:
                        size = (1e-30 if series else 0.2) ** np.arange(order + 1)[:, None]
                        ins = [rng.uniform(-1, 1, size=(order + 1, n)) * size
                               for _ in range(n_inputs)]
                        ref = getattr(symmetric, name)
                    else:
                        count = 2 ** (order - 1) if order else 1
                        dtype = complex if order else float
                        ins = [rng.uniform(-0.2, 0.2, size=(count, n)).astype(dtype)
                               + (1j * rng.uniform(-0.2, 0.2, size=(count, n)) if order else 0)
                               for _ in range(n_inputs)]
                        ref = fn
                    for x in ins:
                        x[0] += 1.0
                    out = np.empty_like(ins[0])
                    kernels.kernel(name, order, "cuda", one_direction, series)[1, 64](*ins, out)
                    want = np.stack(ref(*[list(x) for x in ins]))
                    err = (abs(out - want) / (abs(want).max(axis=-1, keepdims=True) + 1e-300)).max()
                    assert err < 1e-12, (name, order, one_direction, series, err)
        print("ok")
        """
    )
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "ok" in done.stdout


@pytest.mark.gpu
@pytest.mark.parametrize("order", [1, 2, 3])
def test_gpu_matches_cpu(order):
    rng = np.random.default_rng(order)
    parts = rng.uniform(-0.5, 0.5, size=(2**order, N))
    parts[0] += 1
    t = mc.from_parts(parts)
    g = t.to("cuda")
    for f in (mc.exp, mc.tanh, mc.sigmoid, mc.log, mc.sqrt):
        np.testing.assert_allclose(f(g).to("cpu").parts, f(t).parts, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose((g * g).to("cpu").parts, (t * t).parts, rtol=1e-12, atol=1e-12)
    w = rng.normal(size=(N, 8))
    np.testing.assert_allclose(
        (g @ mc.tensor(w, device="cuda")).to("cpu").parts, (t @ w).parts, rtol=1e-10
    )
    d = mc.derivative(mc.sigmoid, mc.tensor(np.linspace(-3, 3, N), device="cuda"), order)
    want = mc.derivative(mc.sigmoid, np.linspace(-3, 3, N), order)
    np.testing.assert_allclose(d, want, rtol=1e-12)


def test_generated_source_is_straight_line_code():
    source = kernels.generate_source(alg.exp, 1, 2, "cpu")
    assert "for e in range" in source and "cmath.exp" in source
    assert "while" not in source


def test_kernels_walk_transposed_views_in_memory_order():
    """A transposed view (a convolution's NCHW output) is computed in place of a copy and
    keeps its layout; a sliced view, which is not one buffer, is copied first."""
    rng = np.random.default_rng(5)
    parts = rng.uniform(-0.3, 0.3, size=(4, 6, 32, 8, 8))
    parts[0] += 1.0
    t = mc.from_parts(parts).transpose(1, 0, 2, 3)
    for fused in (mc.sigmoid(t), mc.exp(t), t * t):
        assert fused.shape == t.shape
    want = Tensor._from_comps(alg.sigmoid(t.comps)).parts
    np.testing.assert_allclose(mc.sigmoid(t).parts, want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        (t * t).parts, Tensor._from_comps(alg.mul(t.comps, t.comps)).parts, rtol=1e-12, atol=1e-12
    )
    sliced = mc.from_parts(parts)[:, ::2]
    np.testing.assert_allclose(
        mc.exp(sliced).parts,
        Tensor._from_comps(alg.exp(sliced.comps)).parts,
        rtol=1e-12,
        atol=1e-12,
    )


@given(
    dtype=st.sampled_from([np.float32, np.float64, np.complex64, np.complex128]),
    size=st.integers(1000, 3000),
    scalar=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_select_is_numpy_where_bit_for_bit(dtype, size, scalar, seed):
    """The branch-free where of the CPU (``algebra.loops.select``) against NumPy's, with
    NaN, infinities and signed zeros among the values, a 0-d or a full second operand."""
    from mcnet.algebra import loops

    rng = np.random.default_rng(seed)
    specials = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 1e-45])
    x = rng.standard_normal(size)
    x[rng.integers(0, size, 50)] = rng.choice(specials, 50)
    x = x.astype(dtype)
    if np.dtype(dtype).kind == "c":
        x = x + 1j * rng.choice(specials, size).astype(dtype)
    cond = rng.random(size) < 0.5
    y = np.asarray(-0.0, dtype=dtype) if scalar else rng.standard_normal(size).astype(dtype)
    got = loops.select(cond, x, y)
    expected = np.where(cond, x, y)
    if size < 1024:
        assert got is None
        return
    assert got is not None and got.dtype == expected.dtype
    assert np.array_equal(got.view(np.uint8), expected.view(np.uint8))
