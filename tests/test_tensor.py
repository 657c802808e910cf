"""The Tensor API (docs/api.md): layout, promotion, mixing, dtypes, linear operations, errors."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import parts_arrays, reference_mul
from hypothesis import given
from hypothesis import strategies as st

import mcnet as mc


def test_parts_layout_bit_k_is_unit_k_plus_1():
    p = np.arange(8 * 2, dtype=float).reshape(8, 2)
    t = mc.from_parts(p)
    assert (t.order, t.shape, t.ndim, t.dtype, t.device) == (3, (2,), 1, np.float64, "cpu")
    np.testing.assert_array_equal(t.parts, p)
    np.testing.assert_array_equal(t.real, p[0])
    np.testing.assert_array_equal(t.coef(()), p[0])
    np.testing.assert_array_equal(t.coef((1,)), p[1])
    np.testing.assert_array_equal(t.coef((2,)), p[2])
    np.testing.assert_array_equal(t.coef((1, 2)), p[3])
    np.testing.assert_array_equal(t.coef((2, 1)), p[3])
    np.testing.assert_array_equal(t.coef((3,)), p[4])
    np.testing.assert_array_equal(t.coef((1, 2, 3)), p[7])  # parts[2**n - 1]
    np.testing.assert_array_equal(t.coef((4,)), np.zeros(2))  # a unit it does not carry
    with pytest.raises(ValueError, match="distinct"):
        t.coef((1, 1))
    with pytest.raises(ValueError, match=">= 1"):
        t.coef((0,))


def test_layout_matches_unit_products():
    # i1 * i2 is the parts[3] unit, i1 * i1 = -1, i2 * i3 is parts[6]
    def unit(m, order=3):
        p = np.zeros((2**order, 1))
        p[m] = 1.0
        return mc.from_parts(p)

    assert (unit(1) * unit(2)).parts[3, 0] == 1.0
    assert (unit(1) * unit(1)).parts[0, 0] == -1.0
    assert (unit(2) * unit(4)).parts[6, 0] == 1.0
    assert (unit(3) * unit(3)).parts[0, 0] == 1.0  # (i1 i2)^2 = i1^2 i2^2 = +1
    assert (unit(7) * unit(7)).parts[0, 0] == -1.0  # (i1 i2 i3)^2 = -1
    assert (unit(3) * unit(5)).parts[6, 0] == -1.0  # i1 i2 i1 i3 = -i2 i3


def test_hyperbolic_unit_squares_to_one():
    p = np.zeros((4, 1))
    p[3] = 1.0
    j = mc.from_parts(p)
    np.testing.assert_array_equal((j * j).parts[:, 0], [1.0, 0.0, 0.0, 0.0])


@pytest.mark.parametrize(("order_a", "order_b"), [(0, 2), (1, 3), (2, 2)])
@given(data=st.data())
def test_binary_ops_promote_orders(order_a, order_b, data):
    pa, pb = data.draw(parts_arrays(order_a)), data.draw(parts_arrays(order_b))
    a, b = mc.from_parts(pa), mc.from_parts(pb)
    for result in (a + b, b - a, a * b, b * a):
        assert result.order == max(order_a, order_b)
    np.testing.assert_allclose((a * b).parts, reference_mul(pa, pb), rtol=1e-13, atol=1e-13)


def test_scalars_and_arrays_mix_in_as_order_zero():
    t = mc.from_parts(np.array([[1.0, 2.0], [3.0, 4.0]]))
    arr = np.array([10.0, 20.0])
    for result, want in [
        (t + 1, [[2, 3], [3, 4]]),
        (1 + t, [[2, 3], [3, 4]]),
        (t * 2.0, [[2, 4], [6, 8]]),
        (2 * t, [[2, 4], [6, 8]]),
        (t - arr, [[-9, -18], [3, 4]]),
        (arr - t, [[9, 18], [-3, -4]]),
        (t * arr, [[10, 40], [30, 80]]),
        (arr * t, [[10, 40], [30, 80]]),
        (t / 2, [[0.5, 1], [1.5, 2]]),
        (-t, [[-1, -2], [-3, -4]]),
    ]:
        assert isinstance(result, mc.Tensor)
        np.testing.assert_array_equal(result.parts, want)
    np.testing.assert_allclose((1 / t).parts[0], [1 / (1 + 9), 2 / (4 + 16)])
    np.testing.assert_allclose((arr / t).parts[1], [-10 * 3 / 10, -20 * 4 / 20])


def test_float32_stays_float32():
    t = mc.tensor(np.array([1.0, 2.0], dtype=np.float32))
    assert t.dtype == np.float32
    for result in (t + 1.5, 2.0 * t, t / 3.0, t**2, mc.exp(t), t - 1, mc.perturb(t, [t.real], 0.5)):
        assert result.dtype == np.float32
    assert mc.tensor([1.0, 2.0], dtype=np.float32).dtype == np.float32
    assert mc.tensor(np.float32(1.0)).dtype == np.float32
    assert mc.tensor([1, 2]).dtype == np.float64
    # float32 with float64 data promotes to float64
    assert (t + mc.tensor(np.array([1.0, 1.0]))).dtype == np.float64


@given(st.sampled_from([((3, 4), (4,)), ((2, 1, 5), (3, 1)), ((), (2, 3)), ((4, 1), (1, 4))]),
       st.sampled_from([np.float32, np.float64]), st.integers(0, 2**32 - 1))  # fmt: skip
def test_real_arithmetic_is_numpys_bit_for_bit(shapes, dtype, seed):
    """Order-0 +, -, * (broadcasting) and 2-D @ give NumPy's numbers exactly, in the operands'
    dtype (a real pass takes a direct path for them)."""
    rng = np.random.default_rng(seed)
    x, y = (rng.standard_normal(shape).astype(dtype) for shape in shapes)
    a, b = mc.tensor(x), mc.tensor(y)
    for got, want in ((a + b, x + y), (a - b, x - y), (a * b, x * y), (b - a, y - x)):
        assert got.order == 0 and got.dtype == dtype and got.shape == want.shape
        np.testing.assert_array_equal(got.numpy(), want)
    p, q = rng.standard_normal((3, 5)).astype(dtype), rng.standard_normal((5, 2)).astype(dtype)
    np.testing.assert_array_equal((mc.tensor(p) @ mc.tensor(q)).numpy(), p @ q)


def test_broadcasting():
    a = mc.from_parts(np.ones((2, 3, 1)))
    b = mc.from_parts(np.arange(4 * 4, dtype=float).reshape(4, 1, 4))
    assert (a * b).shape == (3, 4)
    assert (a + b).order == 2
    np.testing.assert_allclose((a * b).parts, reference_mul(a.parts, b.parts))


def test_indexing_slicing_masks_and_setitem():
    p = np.arange(4 * 6, dtype=float).reshape(4, 2, 3)
    t = mc.from_parts(p)
    np.testing.assert_array_equal(t[1].parts, p[:, 1])
    np.testing.assert_array_equal(t[:, 1:].parts, p[:, :, 1:])
    np.testing.assert_array_equal(t[0, 2].parts, p[:, 0, 2])
    np.testing.assert_array_equal(t[..., ::-1].parts, p[..., ::-1])
    mask = t > 8.0
    assert mask.dtype == bool and mask.shape == (2, 3)
    np.testing.assert_array_equal(t[mask].parts, p[:, p[0] > 8.0])
    np.testing.assert_array_equal(t[[1, 0]].parts, p[:, [1, 0]])
    # setitem: a lower order value gets zero imaginary parts; a higher order one is refused
    t[0, 0] = 100.0
    np.testing.assert_array_equal(t.parts[:, 0, 0], [100.0, 0.0, 0.0, 0.0])
    t[1] = mc.from_parts(np.ones((2, 3)))
    np.testing.assert_array_equal(t.parts[:, 1], [np.ones(3), np.ones(3), np.zeros(3), np.zeros(3)])
    with pytest.raises(ValueError, match="order-3.*order-2"):
        t[0] = mc.from_parts(np.ones((8, 3)))
    with pytest.raises(TypeError, match="not a Tensor"):
        t[mc.tensor([0.0])]


def test_reshape_transpose_sum_mean():
    p = np.random.default_rng(1).normal(size=(4, 2, 3, 5))
    t = mc.from_parts(p)
    np.testing.assert_array_equal(t.reshape(6, 5).parts, p.reshape(4, 6, 5))
    np.testing.assert_array_equal(t.reshape((3, -1)).parts, p.reshape(4, 3, 10))
    np.testing.assert_array_equal(t.T.parts, p.transpose(0, 3, 2, 1))
    np.testing.assert_array_equal(t.transpose(1, 0, 2).parts, p.transpose(0, 2, 1, 3))
    np.testing.assert_array_equal(mc.transpose(t, (2, 0, 1)).parts, p.transpose(0, 3, 1, 2))
    np.testing.assert_allclose(t.sum().parts, p.sum(axis=(1, 2, 3)))
    np.testing.assert_allclose(t.sum(axis=1).parts, p.sum(axis=2))
    np.testing.assert_allclose(t.sum(axis=(0, 2)).parts, p.sum(axis=(1, 3)))
    np.testing.assert_allclose(t.sum(axis=-1, keepdims=True).parts, p.sum(axis=3, keepdims=True))
    np.testing.assert_allclose(t.mean(axis=0).parts, p.mean(axis=1))
    np.testing.assert_allclose(
        mc.mean(t, axis=2, keepdims=True).parts, p.mean(axis=3, keepdims=True)
    )
    with pytest.raises(ValueError, match="axis 3 is out of range"):
        t.sum(axis=3)


def test_matmul_matches_unit_rule():
    rng = np.random.default_rng(2)
    pa, pb = rng.normal(size=(4, 3, 5)), rng.normal(size=(2, 5, 2))
    got = (mc.from_parts(pa) @ mc.from_parts(pb)).parts
    want = np.zeros((4, 3, 2))
    for a in range(4):
        for b in range(2):
            sign = -1.0 if bin(a & b).count("1") % 2 else 1.0
            want[a ^ b] += sign * pa[a] @ pb[b]
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13)
    # a NumPy matrix on either side
    m = rng.normal(size=(2, 3))
    np.testing.assert_allclose((m @ mc.from_parts(pa)).parts, np.einsum("ij,cjk->cik", m, pa))


def test_concatenate_and_stack_promote_orders():
    a = mc.tensor(np.array([1.0, 2.0]))
    b = mc.from_parts(np.array([[3.0], [4.0]]))
    c = mc.concatenate([a, b])
    assert c.order == 1 and c.shape == (3,)
    np.testing.assert_array_equal(c.parts, [[1, 2, 3], [0, 0, 4]])
    s = mc.stack([b, b * 2], axis=1)
    assert s.shape == (1, 2)
    np.testing.assert_array_equal(s.parts, [[[3, 6]], [[4, 8]]])


def test_comparisons_use_real_parts():
    t = mc.from_parts(np.array([[1.0, 2.0, 3.0], [9.0, -9.0, 0.0]]))
    for result, want in [
        (t < 2, [1, 0, 0]),
        (t <= 2, [1, 1, 0]),
        (t > 2, [0, 0, 1]),
        (t >= 2, [0, 1, 1]),
        (t > mc.tensor([0.0, 5.0, 0.0]), [1, 0, 1]),
    ]:
        assert isinstance(result, np.ndarray) and result.dtype == bool
        np.testing.assert_array_equal(result, np.array(want, dtype=bool))


def test_to_cpu_copies():
    t = mc.from_parts(np.ones((2, 3)))
    c = t.to("cpu")
    assert c.device == "cpu" and c.order == 1
    c.data[...] = 0
    assert t.parts.sum() == 6.0
    with pytest.raises(ValueError, match='"cpu" or "cuda"'):
        t.to("tpu")


def test_conversion_to_numpy_only_at_order_zero():
    real = mc.tensor([1.0, 2.0])
    np.testing.assert_array_equal(np.asarray(real), [1.0, 2.0])
    np.testing.assert_array_equal(real.numpy(), [1.0, 2.0])
    assert float(mc.tensor(3.5)) == 3.5
    complex_scalar = mc.from_parts(np.array([1.0, 1e-20]))
    with pytest.raises(TypeError, match="order-1.*imaginary"):
        np.asarray(mc.from_parts(np.ones((2, 3))))
    with pytest.raises(TypeError, match="order-2"):
        mc.from_parts(np.ones((4, 3))).numpy()
    with pytest.raises(TypeError, match="order-1"):
        float(complex_scalar)
    with pytest.raises(TypeError, match="order-1"):
        complex_scalar.item()


def test_from_parts_and_dtype_errors():
    with pytest.raises(ValueError, match=r"2\*\*n.*\(3, 2\)"):
        mc.from_parts(np.ones((3, 2)))
    with pytest.raises(ValueError, match="2\\*\\*n"):
        mc.from_parts(np.float64(1.0))
    with pytest.raises(TypeError, match="float32 or float64.*int8"):
        mc.tensor([1.0], dtype=np.int8)
    with pytest.raises(TypeError, match="float32 or float64.*complex128"):
        mc.tensor([1.0], dtype=np.complex128)
    with pytest.raises(TypeError, match="numeric"):
        mc.tensor(np.array(["a"]))
    with pytest.raises(ValueError, match='"cpu" or "cuda"'):
        mc.tensor([1.0], device="gpu")


def test_from_parts_keeps_float32():
    t = mc.from_parts(np.ones((4, 2), dtype=np.float32))
    assert t.dtype == np.float32 and t.parts.dtype == np.float32
    assert mc.from_parts(np.ones((4, 2))).dtype == np.float64


def test_cuda_without_cupy_or_a_device_says_what_is_missing(monkeypatch):
    import sys
    import types

    from mcnet.algebra import devices

    monkeypatch.setattr(devices, "_CUPY", [])
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy raises ImportError
    with pytest.raises(ImportError, match=r'pip install "mcnet\[cuda\]"'):
        mc.tensor(np.ones(3), device="cuda")
    with pytest.raises(ImportError, match=r'pip install "mcnet\[cuda\]"'):
        mc.tensor(np.ones(3)).to("cuda")

    def fake_cupy(device_count):
        runtime = types.SimpleNamespace(getDeviceCount=device_count)
        return types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=runtime))

    def no_driver():
        raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")

    monkeypatch.setitem(sys.modules, "cupy", fake_cupy(no_driver))
    with pytest.raises(RuntimeError, match="finds no usable CUDA device.*cudaErrorNoDevice"):
        mc.tensor(np.ones(3), device="cuda")
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy(lambda: 0))
    with pytest.raises(RuntimeError, match="no CUDA device is present"):
        mc.tensor(np.ones(3), device="cuda")


def test_lower_layers_never_import_higher_ones():
    """algebra < tensor < functions, derivatives < nn < solvers < training < experiments, cli:
    an import anywhere in a module's source (also inside a function) of a higher layer is a
    defect, and so is one of the top-level package itself (``import mcnet``, ``from mcnet
    import ...``), whose namespace is still being built while these modules load."""
    import ast
    from pathlib import Path

    root = Path(mc.__file__).parent
    higher = {
        "algebra": (
            "mcnet.tensor",
            "mcnet.functions",
            "mcnet.derivatives",
            "mcnet.nn",
            "mcnet.solvers",
            "mcnet.experiments",
            "mcnet.cli",
        ),
        "tensor.py": (
            "mcnet.functions",
            "mcnet.derivatives",
            "mcnet.nn",
            "mcnet.solvers",
            "mcnet.experiments",
            "mcnet.cli",
        ),
        "functions.py": (
            "mcnet.derivatives",
            "mcnet.nn",
            "mcnet.solvers",
            "mcnet.experiments",
            "mcnet.cli",
        ),
        "nn": ("mcnet.solvers", "mcnet.training", "mcnet.experiments", "mcnet.cli"),
        "solvers": ("mcnet.training", "mcnet.experiments", "mcnet.cli"),
        "training": ("mcnet.experiments", "mcnet.cli"),
        "derivatives.py": ("mcnet.solvers", "mcnet.training", "mcnet.experiments", "mcnet.cli"),
        "transforms.py": (
            "mcnet.nn",
            "mcnet.solvers",
            "mcnet.training",
            "mcnet.experiments",
            "mcnet.cli",
        ),
        "diagnostics.py": ("mcnet.training", "mcnet.experiments", "mcnet.cli"),
        "datasets": ("mcnet.tensor", "mcnet.nn", "mcnet.solvers", "mcnet.experiments", "mcnet.cli"),
        "errors.py": (),
        "testing": ("mcnet.training", "mcnet.experiments", "mcnet.cli"),
    }
    offenders = []
    for place, forbidden in higher.items():
        files = sorted((root / place).glob("*.py")) if (root / place).is_dir() else [root / place]
        assert files, place
        for path in files:
            for node in ast.walk(ast.parse(path.read_text())):
                names = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                    if isinstance(node, ast.ImportFrom)
                    else []
                )
                offenders += [
                    f"{path.name}: {n}"
                    for n in names
                    if n == "mcnet" or any(n == f or n.startswith(f + ".") for f in forbidden)
                ]
    assert not offenders, offenders
