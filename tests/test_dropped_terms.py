"""The product of imaginary parts left out of order-1 GEMMs (``algebra.gemm``): below roundoff
where it is left out, kept where it is not, and planted back in a network's H v pass to
measure what leaving it out changes."""

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import mcnet as mc
from mcnet.algebra import gemm, loops
from mcnet.derivatives import _times_power_of_two
from mcnet.nn import Objective, models, parameters_to_vector

DTYPES = {np.float32: np.complex64, np.float64: np.complex128}


def _complex(rng, shape, imag_scale, dtype, fortran: bool):
    z = rng.standard_normal(shape) + 1j * imag_scale * rng.standard_normal(shape)
    z = z.astype(DTYPES[dtype])
    return np.asfortranarray(z) if fortran else z


def _order1(data) -> mc.Tensor:
    return mc.Tensor(data[None])


@pytest.fixture(autouse=True)
def three_gemm_products(monkeypatch):
    """Every order-1 product here takes the 3-GEMM path, however small: products up to
    ``functions._SMALL_GEMM`` multiply-adds are otherwise one complex matmul."""
    monkeypatch.setattr(mc.functions, "_SMALL_GEMM", 0)


@pytest.fixture
def dropped(monkeypatch):
    """Counts the products that took the 3-GEMM path."""
    calls = []
    original = gemm._without_imaginary_square

    def counting(a_parts, b):
        out = original(a_parts, b)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(gemm, "_without_imaginary_square", counting)
    return calls


@given(
    dtype=st.sampled_from(list(DTYPES)),
    shape=st.tuples(st.integers(1, 40), st.integers(1, 60), st.integers(1, 40)),
    exponent=st.integers(24, 80),
    layouts=st.tuples(st.booleans(), st.booleans()),
    seed=st.integers(0, 2**16),
)
def test_small_imaginary_parts_give_the_product_to_roundoff(dtype, shape, exponent, layouts, seed):
    """A tiny perturbation: the real part to the roundoff of a real GEMM, the imaginary part
    to the roundoff of its two real GEMMs, against the exact product in float64 (longdouble
    sums of the parts for float64 operands)."""
    p, q, r = shape
    rng = np.random.default_rng(seed)
    h = 2.0**-exponent
    a = _complex(rng, (p, q), h, dtype, layouts[0])
    b = _complex(rng, (q, r), h, dtype, layouts[1])
    got = mc.matmul(_order1(a), _order1(b)).data[0]
    ar, ai = a.real.astype(np.longdouble), a.imag.astype(np.longdouble)
    br, bi = b.real.astype(np.longdouble), b.imag.astype(np.longdouble)
    eps = float(np.finfo(dtype).eps)
    real_bound = 2 * q * eps * (np.abs(ar) @ np.abs(br)) + np.finfo(dtype).tiny
    imag_bound = 2 * q * eps * (np.abs(ar) @ np.abs(bi) + np.abs(ai) @ np.abs(br))
    imag_bound += np.finfo(dtype).tiny
    assert np.all(np.abs(got.real - (ar @ br - ai @ bi)) <= real_bound)
    assert np.all(np.abs(got.imag - (ar @ bi + ai @ br)) <= imag_bound)


@pytest.mark.parametrize("dtype", list(DTYPES))
def test_the_three_gemm_path_is_taken_for_a_derivative_sized_perturbation(dtype, dropped):
    rng = np.random.default_rng(0)
    h = 2.0**-24 if dtype == np.float32 else 2.0**-400
    a, b = _complex(rng, (8, 30), h, dtype, False), _complex(rng, (30, 5), h, dtype, True)
    mc.matmul(_order1(a), _order1(b))
    assert dropped == [True]


@pytest.mark.parametrize("dtype", list(DTYPES))
def test_small_products_are_one_complex_matmul_and_larger_ones_three_gemms(
    dtype, monkeypatch, dropped
):
    """Below the threshold the product is NumPy's complex matmul, bit for bit, every term
    in; above it, the 3-GEMM path."""
    monkeypatch.setattr(mc.functions, "_SMALL_GEMM", 1 << 19)
    rng = np.random.default_rng(3)
    h = 2.0**-24 if dtype == np.float32 else 2.0**-400
    a, b = _complex(rng, (128, 32), h, dtype, False), _complex(rng, (32, 32), h, dtype, False)
    np.testing.assert_array_equal(mc.matmul(_order1(a), _order1(b)).data[0], a @ b)
    assert dropped == []
    a, b = _complex(rng, (64, 96), h, dtype, False), _complex(rng, (96, 96), h, dtype, True)
    mc.matmul(_order1(a), _order1(b))  # 589,824 multiply-adds
    assert dropped == [True]


@given(
    dtype=st.sampled_from(list(DTYPES)),
    imag_scale=st.sampled_from([1.0, 1e-2, 2.0**-10]),
    seed=st.integers(0, 2**16),
)
def test_large_imaginary_parts_keep_the_whole_complex_product(dtype, imag_scale, seed):
    """Not a derivative-sized perturbation: the full complex GEMM, bit for bit (a criterion
    that let these through would be off by the product of the imaginary parts)."""
    rng = np.random.default_rng(seed)
    a, b = (
        _complex(rng, (6, 20), imag_scale, dtype, False),
        _complex(rng, (20, 7), 1.0, dtype, False),
    )
    got = mc.matmul(_order1(a), _order1(b)).data[0]
    np.testing.assert_array_equal(got, a @ b)


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_non_finite_operand_keeps_the_whole_product(dtype, bad, dropped):
    rng = np.random.default_rng(1)
    a, b = _complex(rng, (4, 5), 1e-9, dtype, False), _complex(rng, (5, 3), 1e-9, dtype, False)
    a[1, 2] = bad
    with np.errstate(invalid="ignore"):
        got = mc.matmul(_order1(a), _order1(b)).data[0]
        np.testing.assert_array_equal(got, a @ b)
    assert dropped == [False]


def _sigmoid_mlp_objective(dtype):
    mc.nn.manual_seed(3)
    net = models.mlp([30, 40, 20, 30], "sigmoid")
    net.to(dtype=dtype)
    rng = np.random.default_rng(4)
    x = rng.random((16, 30))
    objective = Objective(net, mc.nn.BCEWithLogitsLoss())
    w = parameters_to_vector(net).astype(np.float64)
    v = rng.standard_normal(w.shape)
    return objective, w, v, (x.astype(dtype), x.astype(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_planting_the_term_back_changes_h_v_by_roundoff_only(dtype, monkeypatch, dropped):
    """In a network's H v pass (every hidden GEMM complex by complex), the products of the
    imaginary parts, computed and planted back, are below the roundoff that each product's
    real GEMM incurs; and the gradient and H v with and without them differ by roundoff,
    each as close to the float64 (or longdouble-summed) reference as the other."""
    objective, w, v, batch = _sigmoid_mlp_objective(dtype)
    planted_sizes, roundoffs = [], []
    original = gemm._without_imaginary_square

    def measuring(a_parts, b):
        out = original(a_parts, b)
        if out is not None:
            ar, ai = a_parts[0].astype(np.longdouble), a_parts[1].astype(np.longdouble)
            br, bi = b.real.astype(np.longdouble), b.imag.astype(np.longdouble)
            planted_sizes.append(float(np.max(np.abs(ai @ bi))))
            roundoffs.append(float(np.max(np.abs(out.real - ar @ br))))
        return out

    monkeypatch.setattr(gemm, "_without_imaginary_square", measuring)
    grad_dropped, hv_dropped = objective.grad_and_hvp(w.astype(dtype), v.astype(dtype), batch)
    assert len(planted_sizes) >= 5 and all(dropped)
    for planted, roundoff in zip(planted_sizes, roundoffs):
        assert planted <= 2.0**-8 * max(roundoff, np.finfo(dtype).tiny)

    monkeypatch.setattr(gemm, "negligible_imaginary_square", lambda *args: False)  # planted
    grad_full, hv_full = objective.grad_and_hvp(w.astype(dtype), v.astype(dtype), batch)
    eps = float(np.finfo(dtype).eps)
    for dropped_value, full in ((grad_dropped, grad_full), (hv_dropped, hv_full)):
        assert np.max(np.abs(dropped_value - full)) <= 64 * eps * np.max(np.abs(full))

    if dtype == np.float32:  # both as close to the float64 values
        reference_objective, _, _, reference_batch = _sigmoid_mlp_objective(np.float64)
        grad_ref, hv_ref = reference_objective.grad_and_hvp(w, v, reference_batch)
        for ours, full, ref in ((grad_dropped, grad_full, grad_ref), (hv_dropped, hv_full, hv_ref)):
            err_dropped, err_full = np.max(np.abs(ours - ref)), np.max(np.abs(full - ref))
            assert err_dropped <= 2 * err_full + 4 * eps * np.max(np.abs(ref))


@given(
    dtype=st.sampled_from([np.float32, np.float64]),
    exponent=st.integers(-1100, 1100),
    seed=st.integers(0, 2**16),
)
def test_scaling_a_direction_by_a_power_of_two_is_ldexp(dtype, exponent, seed):
    v = (np.random.default_rng(seed).standard_normal(50) * 10.0 ** np.arange(-25, 25)).astype(dtype)
    with np.errstate(over="ignore", under="ignore"):
        np.testing.assert_array_equal(_times_power_of_two(v, exponent, np), np.ldexp(v, exponent))


# --- H v passes keep only the i-part of the parameters' gradient products -------------------


@given(
    dtype=st.sampled_from(list(DTYPES)),
    shape=st.tuples(st.integers(1, 30), st.integers(1, 50), st.integers(1, 30)),
    kinds=st.sampled_from(["cc", "rc", "cr", "rr"]),
    layouts=st.tuples(st.booleans(), st.booleans()),
    seed=st.integers(0, 2**16),
)
def test_imaginary_part_of_a_product_is_numpys(dtype, shape, kinds, layouts, seed):
    """gemm.imaginary_part(a, b) against the imaginary part of NumPy's complex product,
    for real or complex operands in C or Fortran order, to the roundoff of the terms."""
    rng = np.random.default_rng(seed)
    p, q, r = shape
    a = _complex(rng, (p, q), 1.0, dtype, layouts[0])
    b = _complex(rng, (q, r), 1.0, dtype, layouts[1])
    a = a if kinds[0] == "c" else np.asfortranarray(a.real) if layouts[0] else a.real.copy()
    b = b if kinds[1] == "c" else np.asfortranarray(b.real) if layouts[1] else b.real.copy()
    got = gemm.imaginary_part(a, b)
    wide = np.complex128
    expected = (a.astype(wide) @ b.astype(wide)).imag
    scale = (np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64)).max() + 1e-300
    assert got.dtype == dtype and got.shape == (p, r)
    assert np.abs(got - expected).max() <= 4 * q * np.finfo(dtype).eps * scale


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("model", ["mlp", "lenet5"])
def test_h_v_alone_keeps_only_the_derivative_parts_and_agrees_with_the_full_pass(dtype, model):
    """``Objective.hvp`` builds the parameters' gradient products as their i-part alone
    (Linear's GEMM, Conv2d's GEMM and its direct correlation): H v agrees with the one of the
    whole complex pass (``grad_and_hvp``) to the roundoff of float32 / float64, and the
    products really were cut (every Linear and Conv2d weight gradient of the pass had a zero
    real part)."""
    rng = np.random.default_rng(0)
    if model == "mlp":
        net = models.mlp([20, 16, 12, 3], "tanh").to(dtype=dtype)
        batch = (rng.standard_normal((32, 20)).astype(dtype), rng.integers(0, 3, 32))
    else:
        net = models.lenet5("tanh").to(dtype=dtype)
        batch = (rng.random((8, 1, 28, 28)).astype(dtype), rng.integers(0, 10, 8))
    objective = Objective(net, mc.nn.CrossEntropyLoss())
    w = parameters_to_vector(net).astype(dtype)
    v = rng.standard_normal(w.shape).astype(dtype)
    seen = []
    original = mc.nn.module.Parameter.accumulate

    def recording(self, grad):
        seen.append((self.shape, np.abs(grad.real).max()))
        original(self, grad)

    mc.nn.module.Parameter.accumulate = recording
    try:
        alone = objective.hvp(w, v, batch)
    finally:
        mc.nn.module.Parameter.accumulate = original
    full = objective.grad_and_hvp(w, v, batch)[1]
    weights = [real for shape, real in seen if len(shape) >= 2]
    assert weights and all(real == 0 for real in weights)
    tolerance = 64 * np.finfo(dtype).eps * np.abs(full).max()
    assert np.abs(alone - full).max() <= tolerance


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
@given(
    shape=st.tuples(st.integers(1, 40), st.integers(1, 40)),
    transposed=st.booleans(),
    special=st.sampled_from([None, np.nan, np.inf, -np.inf, -0.0, 1e-40]),
    in_imag=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_split_parts_are_numpys_parts_and_largest_magnitudes(dtype, shape, transposed, special,
                                                             in_imag, seed):  # fmt: skip
    """``loops.split_parts`` (integer maxima of the parts' bits) against NumPy's .real,
    .imag and max |.|, in C and Fortran order: a part that is not finite anywhere gives NaN
    for both maxima; signed zeros and subnormals are ordinary values."""
    rng = np.random.default_rng(seed)
    z = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape) * 1e-6).astype(dtype)
    if special is not None:
        at = tuple(rng.integers(0, n) for n in shape)
        z[at] = complex(z[at].real, special) if in_imag else complex(special, z[at].imag)
    z = z.T if transposed else z
    real, imag, largest_real, largest_imag = loops.split_parts(z)
    assert np.array_equal(real, z.real, equal_nan=True)
    assert np.array_equal(imag, z.imag, equal_nan=True)
    if np.all(np.isfinite(z)):
        assert largest_real == np.abs(z.real).max() and largest_imag == np.abs(z.imag).max()
    else:
        assert np.isnan(largest_real) and np.isnan(largest_imag)


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
@given(
    shape=st.tuples(st.integers(1, 5), st.integers(1, 5), st.integers(1, 5)),
    order=st.permutations([0, 1, 2]),
    special=st.sampled_from([None, np.nan, np.inf, -0.0, 1e-41]),
    seed=st.integers(0, 2**32 - 1),
)
def test_order_one_data_split_in_two_halves_and_joined_again(dtype, shape, order, special, seed):
    """``loops.split_order_one`` against NumPy's .real, .imag (the one-direction layout
    of the same numbers) and max |.| (NaN for both where a part is not finite), in the
    input's memory order, and ``join_order_one`` back to the same complex data bit for bit,
    whatever the axes' order in memory."""
    rng = np.random.default_rng(seed)
    z = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)
    if special is not None:
        z.flat[0] = complex(special, 1.0)
        z.flat[-1] = complex(1.0, special)
    data = z.transpose(order)[None]  # an axis order in memory other than the logical one
    halves, largest_real, largest_imag = loops.split_order_one(data)
    assert halves.shape == (2, *data.shape[1:]) and halves.dtype == z.real.dtype
    assert np.array_equal(halves[0], data[0].real, equal_nan=True)
    assert np.array_equal(halves[1], data[0].imag, equal_nan=True)
    if np.all(np.isfinite(z)):
        assert largest_real == np.abs(z.real).max() and largest_imag == np.abs(z.imag).max()
    else:
        assert np.isnan(largest_real) and np.isnan(largest_imag)
    long = [a for a in range(1, 4) if data.shape[a] > 1]  # a length-1 axis has any stride
    assert sorted(long, key=lambda a: halves.strides[a]) == sorted(
        long, key=lambda a: data.strides[a]
    )
    joined = loops.join_order_one(halves)
    assert joined.dtype == dtype and joined.shape == data.shape
    for part in ("real", "imag"):
        got, want = getattr(joined, part), getattr(data, part)
        assert np.array_equal(got, want, equal_nan=True)
        assert np.array_equal(np.signbit(got), np.signbit(want))


def _one_direction_operands(rng, dtype, shape, h):
    """A weight (w, h v, 0) and data (x, h x', h^2 x''), as in a vᵀHv pass."""
    p, q, r = shape
    a = np.stack([rng.standard_normal((p, q)), h * rng.standard_normal((p, q)), np.zeros((p, q))])
    b = np.stack([rng.standard_normal((q, r)), h * rng.standard_normal((q, r)),
                  h * h * rng.standard_normal((q, r))])  # fmt: skip
    return a.astype(dtype), b.astype(dtype)


def _full_one_direction_product(a, b):
    """The multicomplex product of order-2 one-direction data, every term, in float64:
    (i1 + i2)^2 = -2 + 2 i1 i2, (i1 + i2) i1 i2 = -(i1 + i2), (i1 i2)^2 = 1."""
    a0, a1, a2 = a.astype(np.float64)
    b0, b1, b2 = b.astype(np.float64)
    return [a0 @ b0 - 2 * a1 @ b1 + a2 @ b2,
            a0 @ b1 + a1 @ b0 - a1 @ b2 - a2 @ b1,
            a0 @ b2 + 2 * a1 @ b1 + a2 @ b0]  # fmt: skip


def _roundoff_bounds(a, b):
    """Worst-case roundoff of each class's GEMMs: q eps sum |w| max|a_i| max|b_j|."""
    eps, q = float(np.finfo(a.dtype).eps), a.shape[2]
    m = [[float(np.abs(x).max()) * float(np.abs(y).max()) for y in b] for x in a]
    return [q * eps * (m[0][0] + 2 * m[1][1]), q * eps * (m[0][1] + m[1][0] + m[1][2]),
            q * eps * (m[0][2] + 2 * m[1][1])]  # fmt: skip


@given(
    dtype=st.sampled_from([np.float32, np.float64]),
    shape=st.tuples(st.integers(1, 30), st.integers(60, 80), st.integers(380, 420)),
    margin=st.integers(3, 20),
    seed=st.integers(0, 2**16),
)
def test_one_direction_corrections_are_below_roundoff_where_left_out(dtype, shape, margin, seed):
    """vᵀHv's GEMMs leave out a_1 @ b_2, which only corrects class 1 (units that square to
    -1), when it is negligible: with it planted back, class 1 moves by less than NEGLIGIBLE
    of its kept GEMMs' roundoff bound, and every class is the full product's to roundoff.
    (b is too large to copy side by side: one GEMM per component, where it is left out.)"""
    from mcnet.algebra import symmetric

    rng = np.random.default_rng(seed)
    eps = float(np.finfo(dtype).eps)
    h = 2.0 ** (np.floor(np.log2(eps) / 2) - 4 - margin)  # h^2 well below eps
    a, b = _one_direction_operands(rng, dtype, shape, h)
    product = gemm.Product(symmetric, a, b)
    dropped = gemm.negligible_corrections(product.corrections, product.a_largest,
                                          gemm.largest_entries(b), dtype)  # fmt: skip
    assert dropped == {(1, 2)}
    got = product(b)
    full = _full_one_direction_product(a, b)
    planted = -(a[1].astype(np.float64) @ b[2].astype(np.float64))
    bounds = _roundoff_bounds(a, b)
    assert np.abs(planted).max() <= gemm.NEGLIGIBLE * bounds[1]
    for c in range(3):
        assert np.abs(got[c] - full[c]).max() <= bounds[c] + 1e-300


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_one_direction_corrections_are_kept_where_they_are_not_negligible(dtype):
    """At a step of 2^-3 the correction a_1 @ b_2 is far above roundoff: it is computed, and
    class 1 is the full product's to roundoff (without it, it would be off by ~h^2)."""
    from mcnet.algebra import symmetric

    a, b = _one_direction_operands(np.random.default_rng(3), dtype, (8, 40, 12), 2.0**-3)
    got = gemm.Product(symmetric, a, b)(b)
    full = _full_one_direction_product(a, b)
    bounds = _roundoff_bounds(a, b)
    planted = a[1].astype(np.float64) @ b[2].astype(np.float64)
    assert np.abs(planted).max() > 100 * bounds[1]
    for c in range(3):
        assert np.abs(got[c] - full[c]).max() <= bounds[c]


def _order_one_operands(rng, dtype, shape, h):
    """A weight (w, h v) and data (x, h x') in the order-1 one-direction layout, the data
    wide enough (r >= 8 p) for the weight's block matrix."""
    p, q, r = shape
    a = np.stack([rng.standard_normal((p, q)), h * rng.standard_normal((p, q))])
    b = np.stack([rng.standard_normal((q, r)), h * rng.standard_normal((q, r))])
    return a.astype(dtype), b.astype(dtype)


@pytest.fixture
def leading_products(monkeypatch):
    """Counts the block-matrix products that left the corrections out."""
    calls = []
    original = gemm.Product._leading_product

    def counting(self, right, r):
        calls.append(r)
        return original(self, right, r)

    monkeypatch.setattr(gemm.Product, "_leading_product", counting)
    return calls


@given(
    dtype=st.sampled_from([np.float32, np.float64]),
    shape=st.tuples(st.integers(1, 6), st.integers(1, 40), st.integers(48, 90)),
    exponent=st.integers(30, 60),
    seed=st.integers(0, 2**16),
)
def test_order_one_block_matrix_leaves_out_the_i_part_product_below_roundoff(
    dtype, shape, exponent, seed
):
    """An H v pass's convolution (``Conv2d``: weight and columns split in two halves) takes
    a_1 @ b_1 out of the block-matrix product when max |a_1| max |b_1| is negligible: 3 of
    the 4 blocks.  Planted back, the real part moves by less than NEGLIGIBLE of its GEMM's
    roundoff bound, and both parts are the full product's to roundoff."""
    from mcnet.algebra import symmetric

    rng = np.random.default_rng(seed)
    a, b = _order_one_operands(rng, dtype, shape, 2.0**-exponent)
    # at h = 2^-30 in float64, h^2 is NEGLIGIBLE eps itself: a draw whose i-parts are large
    # beside its real parts (q = 1: one entry each) is not negligible, and not this case
    assume(gemm.negligible_imaginary_square(*gemm.largest_entries(a), *gemm.largest_entries(b),
                                            dtype))  # fmt: skip
    product = gemm.Product(symmetric, a, b)
    calls = []
    original = product._leading_product
    product._leading_product = lambda right, r: calls.append(r) or original(right, r)
    got = product(b, gemm.largest_entries(b))
    assert calls == [shape[2]]
    a0, a1 = a.astype(np.float64)
    b0, b1 = b.astype(np.float64)
    planted = a1 @ b1
    eps, q = float(np.finfo(dtype).eps), shape[1]
    (m0, m1), (n0, n1) = (np.abs(a0).max(), np.abs(a1).max()), (np.abs(b0).max(), np.abs(b1).max())
    bounds = [q * eps * m0 * n0, q * eps * (m0 * n1 + m1 * n0)]
    assert np.abs(planted).max() <= gemm.NEGLIGIBLE * bounds[0]
    for got_c, full, bound in zip(got, (a0 @ b0 - planted, a0 @ b1 + a1 @ b0), bounds):
        assert np.abs(got_c - full).max() <= bound + 1e-300


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("h", [2.0**-3, np.nan])
def test_order_one_block_matrix_keeps_the_i_part_product_where_it_counts(
    dtype, h, leading_products
):
    """At a step of 2^-3 (a_1 @ b_1 far above roundoff), or with a part that is not
    finite, the whole block matrix: bit for bit NumPy's GEMM with it."""
    from mcnet.algebra import symmetric

    a, b = _order_one_operands(np.random.default_rng(5), dtype, (4, 30, 40), 1.0)
    b[1] *= 2.0**-3 if np.isfinite(h) else 1.0
    if not np.isfinite(h):
        b[1, 3, 7] = h
    product = gemm.Product(symmetric, a, b)
    with np.errstate(invalid="ignore"):
        got = product(b, gemm.largest_entries(b))
        want = (product.block_matrix @ b.reshape(-1, b.shape[2])).reshape(got.shape)
    assert leading_products == []
    np.testing.assert_array_equal(got, want)


def test_a_correction_that_also_leads_keeps_the_whole_block_matrix(leading_products):
    """At order 2 a_1 @ b_1 adds to class 0 (a correction) and to class 2 (a leading
    term): the block-matrix product keeps it whole, however small h is."""
    from mcnet.algebra import symmetric

    a, b = _one_direction_operands(np.random.default_rng(6), np.float64, (3, 20, 40), 2.0**-40)
    got = gemm.Product(symmetric, a, b)(b, gemm.largest_entries(b))
    assert leading_products == []
    full = _full_one_direction_product(a, b)
    bounds = _roundoff_bounds(a, b)
    for c in range(3):
        assert np.abs(got[c] - full[c]).max() <= bounds[c] + 1e-300


def _assert_roundoff_apart(left_out, planted, reference, dtype):
    """H v with a term left out and planted back differ by roundoff, and both are about as
    close to the float64 ``reference``."""
    eps = float(np.finfo(dtype).eps)
    scale = np.abs(reference).max()
    assert np.abs(left_out - planted).max() <= 64 * eps * scale
    err_left_out, err_planted = (np.abs(z - reference).max() for z in (left_out, planted))
    assert err_left_out <= 2 * err_planted + 4 * eps * scale


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_planting_the_i_part_product_back_in_a_convolutions_h_v_changes_roundoff_only(
    dtype, monkeypatch, leading_products
):
    """LeNet-5's H v (its second convolution by im2col, split in halves, forward and input
    gradient without a_1 @ b_1): with the products planted back, H v moves by roundoff only,
    and both are as close to the float64 H v."""
    from mcnet.nn import conv

    monkeypatch.setattr(conv, "_DIRECT_CHANNEL_PAIRS", dict.fromkeys(conv._DIRECT_CHANNEL_PAIRS, 0))
    rng = np.random.default_rng(7)
    mc.nn.manual_seed(7)
    net = models.lenet5("sigmoid")
    x, y = rng.random((16, 1, 28, 28)), rng.integers(0, 10, 16)
    w = parameters_to_vector(net).astype(np.float64)
    v = rng.standard_normal(w.shape)

    def hvp(d):
        objective = Objective(net.to(dtype=d), mc.nn.CrossEntropyLoss())
        return objective.hvp(w.astype(d), v.astype(d), (x.astype(d), y))

    left_out = hvp(dtype)
    assert len(leading_products) >= 2  # the forward's chunks and the input gradient's
    monkeypatch.setattr(gemm.Product, "_corrections_negligible", lambda *args: False)
    planted = hvp(dtype)
    _assert_roundoff_apart(left_out, planted, hvp(np.float64), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("path", ["winograd", "direct"])
def test_planting_the_i_part_product_back_in_convolutions_of_complex_images_changes_roundoff_only(
    dtype, path, monkeypatch
):
    """H v of a network whose convolutions after the first (complex images) run Winograd's
    F(2x2, 3x3) (``nn.winograd``, here at every channel count) or the direct correlation
    (``nn.correlation``, few channels), both of which leave the i-parts' product out of their
    forwards and input gradients: with it planted back, H v moves by roundoff only, and both
    are as close to the float64 H v."""
    from mcnet.nn import conv, correlation

    rng = np.random.default_rng(8)
    mc.nn.manual_seed(8)
    c1, c2 = (16, 16) if path == "winograd" else (4, 8)
    net = mc.nn.Sequential(
        mc.nn.Conv2d(2, c1, 3, padding=1), mc.nn.Tanh(), mc.nn.Conv2d(c1, c2, 3, padding=1),
        mc.nn.Tanh(), mc.nn.Conv2d(c2, 4, 3), mc.nn.Flatten(), mc.nn.Linear(4 * 5 * 5, 3),
    )  # fmt: skip
    x, y = rng.random((4, 2, 7, 7)), rng.integers(0, 3, 4)
    w = parameters_to_vector(net).astype(np.float64)
    v = rng.standard_normal(w.shape)
    decisions, direct_forwards = [], []
    original, original_forward = gemm.negligible_imaginary_square, correlation.correlate_order_one

    def counting(*args):
        decisions.append(original(*args))
        return decisions[-1]

    def hvp(d):
        objective = Objective(net.to(dtype=d), mc.nn.CrossEntropyLoss())
        return objective.hvp(w.astype(d), v.astype(d), (x.astype(d), y))

    if path == "winograd":
        monkeypatch.setattr(conv, "_WINOGRAD_CHANNEL_PAIRS", {"real": 0, "complex": 0})
        monkeypatch.setattr(
            conv, "_DIRECT_CHANNEL_PAIRS", dict.fromkeys(conv._DIRECT_CHANNEL_PAIRS, 0)
        )

    def counted_forward(*args):
        direct_forwards.append(args)
        return original_forward(*args)

    monkeypatch.setattr(correlation, "correlate_order_one", counted_forward)
    monkeypatch.setattr(gemm, "negligible_imaginary_square", counting)
    left_out = hvp(dtype)
    assert len(direct_forwards) == (0 if path == "winograd" else 2)
    assert len(decisions) >= 4 and all(decisions)  # forwards and input gradients
    monkeypatch.setattr(gemm, "negligible_imaginary_square", lambda *args: False)
    planted = hvp(dtype)
    _assert_roundoff_apart(left_out, planted, hvp(np.float64), dtype)
