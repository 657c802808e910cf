"""Algebra laws and identities of the multicomplex numbers, against independent references.

References: the unit product rule written out as a loop (``helpers.reference_mul``), the
idempotent split of C^n onto complex numbers (``helpers.idempotent_apply``), NumPy's
complex128 at order 1, Python's cmath for explicit bicomplex formulas, and embedding into a
higher order.
"""

from __future__ import annotations

import cmath

import numpy as np
import pytest
from helpers import (
    assert_parts_close,
    dominant_parts,
    idempotent_apply,
    norm1,
    one_parts,
    parts_arrays,
    reference_mul,
)
from hypothesis import given
from hypothesis import strategies as st

import mcnet as mc

ORDERS = [0, 1, 2, 3, 4]


def T(parts) -> mc.Tensor:
    return mc.from_parts(parts)


# --- ring laws on arbitrary O(1) arrays ---------------------------------------------------


@pytest.mark.parametrize("order", ORDERS)
@given(data=st.data())
def test_product_matches_unit_rule(order, data):
    pa = data.draw(parts_arrays(order))
    pb = data.draw(parts_arrays(order))
    got = (T(pa) * T(pb)).parts
    assert got.shape == pa.shape
    assert_parts_close(got, reference_mul(pa, pb), norm1(pa) * norm1(pb), rtol=1e-14)


@pytest.mark.parametrize(("order_a", "order_b"), [(0, 3), (1, 2), (3, 1), (2, 4), (4, 0)])
@given(data=st.data())
def test_mixed_order_product_matches_unit_rule(order_a, order_b, data):
    pa = data.draw(parts_arrays(order_a))
    pb = data.draw(parts_arrays(order_b))
    product = T(pa) * T(pb)
    assert product.order == max(order_a, order_b)
    assert_parts_close(product.parts, reference_mul(pa, pb), norm1(pa) * norm1(pb), rtol=1e-14)
    total = T(pa) + T(pb)
    want = np.zeros_like(product.parts)
    want[: len(pa)] += pa
    want[: len(pb)] += pb
    np.testing.assert_array_equal(total.parts, want)


@pytest.mark.parametrize("order", ORDERS)
@given(data=st.data())
def test_commutativity(order, data):
    a, b = T(data.draw(parts_arrays(order))), T(data.draw(parts_arrays(order)))
    # the recursion evaluates the two halves in a different order: equal up to roundoff
    assert_parts_close((a * b).parts, (b * a).parts, norm1(a.parts) * norm1(b.parts), 1e-14)


@pytest.mark.parametrize("order", ORDERS)
@given(data=st.data())
def test_associativity_and_distributivity(order, data):
    pa, pb, pc = (data.draw(parts_arrays(order)) for _ in range(3))
    a, b, c = T(pa), T(pb), T(pc)
    scale = norm1(pa) * norm1(pb) * norm1(pc)
    assert_parts_close(((a * b) * c).parts, (a * (b * c)).parts, scale, 1e-14)
    assert_parts_close(
        (a * (b + c)).parts, (a * b + a * c).parts, norm1(pa) * (norm1(pb) + norm1(pc)), 1e-14
    )


@pytest.mark.parametrize("order", ORDERS)
@given(data=st.data())
def test_inverse(order, data):
    p = data.draw(dominant_parts(order))
    z = T(p)
    one = one_parts(order, p.shape[1:])
    assert_parts_close((z * (1 / z)).parts, one, 1.0, 1e-13)
    assert_parts_close(((1 / z) * z).parts, one, 1.0, 1e-13)
    assert_parts_close((z / z).parts, one, 1.0, 1e-13)
    assert_parts_close((z**-1 * z).parts, one, 1.0, 1e-13)


@pytest.mark.parametrize("order", ORDERS)
@given(data=st.data())
def test_subtraction_and_negation(order, data):
    pa, pb = data.draw(parts_arrays(order)), data.draw(parts_arrays(order))
    np.testing.assert_array_equal((T(pa) - T(pb)).parts, pa - pb)
    np.testing.assert_array_equal((-T(pa)).parts, -pa)


# --- order 1 is NumPy complex128 --------------------------------------------------------------

COMPLEX_FUNCTIONS = {
    "exp": (mc.exp, np.exp),
    "log": (mc.log, np.log),
    "sqrt": (mc.sqrt, np.sqrt),
    "sin": (mc.sin, np.sin),
    "cos": (mc.cos, np.cos),
    "tan": (mc.tan, np.tan),
    "sinh": (mc.sinh, np.sinh),
    "cosh": (mc.cosh, np.cosh),
    "tanh": (mc.tanh, np.tanh),
    "arctan": (mc.arctan, np.arctan),
    "sigmoid": (mc.sigmoid, lambda z: 1 / (1 + np.exp(-z))),
}


@given(data=st.data())
def test_order1_arithmetic_is_complex128(data):
    pa, pb = data.draw(parts_arrays(1)), data.draw(dominant_parts(1))
    za, zb = pa[0] + 1j * pa[1], pb[0] + 1j * pb[1]
    a, b = T(pa), T(pb)
    for got, want in [
        (a * b, za * zb),
        (a / b, za / zb),
        (a + b, za + zb),
        (a - b, za - zb),
        (b**3, zb**3),
        (b**2.5, zb**2.5),
    ]:
        assert_parts_close(got.parts, [want.real, want.imag], np.abs(want) + 1e-300, 1e-14)


@pytest.mark.parametrize("name", sorted(COMPLEX_FUNCTIONS))
@given(data=st.data())
def test_order1_functions_are_complex128(name, data):
    mc_fn, np_fn = COMPLEX_FUNCTIONS[name]
    # real part away from zero keeps log/sqrt/arctan off their cuts and tan off its poles
    p = data.draw(dominant_parts(1, ratio=0.7))
    p[0] *= data.draw(st.sampled_from([1.0, -1.0])) if name not in ("log", "sqrt") else 1.0
    want = np_fn(p[0] + 1j * p[1])
    assert_parts_close(mc_fn(T(p)).parts, [want.real, want.imag], np.abs(want), 1e-13)


# --- embedding order n into n + 1 is a homomorphism ---------------------------------------

EMBED_FUNCTIONS = [
    mc.exp,
    mc.sin,
    mc.cos,
    mc.sinh,
    mc.cosh,
    mc.tanh,
    mc.tan,
    mc.log,
    mc.sqrt,
    mc.arctan,
    mc.sigmoid,
    mc.softplus,
    mc.erf,
    lambda z: z**3,
    lambda z: z**0.7,
]


@pytest.mark.slow
@pytest.mark.parametrize("order", [0, 1, 2, 3])
@given(data=st.data())
def test_embed_is_homomorphism(order, data):
    pa, pb = data.draw(dominant_parts(order)), data.draw(dominant_parts(order))
    a, b = T(pa), T(pb)
    up = order + 1

    def embedded(t):
        e = mc.embed(t, up)
        assert e.order == up
        return e.parts

    scale = norm1(pa) * norm1(pb)
    assert_parts_close(embedded(a * b), (mc.embed(a, up) * mc.embed(b, up)).parts, scale, 1e-14)
    quotient_scale = norm1(pa) * norm1((1 / b).parts)
    assert_parts_close(
        embedded(a / b), (mc.embed(a, up) / mc.embed(b, up)).parts, quotient_scale, 1e-13
    )
    # the new unit's coefficients are exactly zero
    assert not np.any(embedded(a)[2**order :])
    for fn in EMBED_FUNCTIONS:
        want = embedded(fn(a))
        # tan may come near a pole: its condition number grows as 1 + tan^2
        scale = (norm1(want) + 1.0) ** (2 if fn is mc.tan else 1)
        assert_parts_close(fn(mc.embed(a, up)).parts, want, scale, 1e-13)


def test_embed_refuses_lower_order():
    with pytest.raises(ValueError, match="order-2.*order 1"):
        mc.embed(T(np.ones((4, 2))), 1)


# --- the idempotent split as an independent reference for analytic functions ----------------

# the order-1 table's functions at orders 2-4, and two powers; not tan (its pole pi/2 lies
# among the drawn real parts), arctan (checked below with its own draws) or sigmoid
IDEMPOTENT_FUNCTIONS = {
    **{
        name: COMPLEX_FUNCTIONS[name]
        for name in ("exp", "log", "sqrt", "sin", "cos", "sinh", "cosh", "tanh")
    },
    "power_2.5": (lambda z: z**2.5, lambda z: z**2.5),
    "power_-3": (lambda z: z**-3, lambda z: z**-3),
}


@pytest.mark.parametrize(
    ("name", "order"),
    [(name, order) for name in sorted(IDEMPOTENT_FUNCTIONS) for order in (2, 3, 4)],
)
@pytest.mark.slow
@given(data=st.data())
def test_analytic_functions_match_idempotent_split(name, order, data):
    mc_fn, np_fn = IDEMPOTENT_FUNCTIONS[name]
    p = data.draw(dominant_parts(order, ratio=0.5))
    want = idempotent_apply(np_fn, p)
    # absolute scale 1 too: log(1) = 0, and the reference itself is only that accurate
    assert_parts_close(mc_fn(T(p)).parts, want, norm1(want) + 1.0, 1e-12)


# --- float32: the same laws and functions in single precision ---------------------------------


@pytest.mark.parametrize("order", ORDERS)
@given(data=st.data())
def test_float32_product_and_inverse(order, data):
    """float32 operands stay float32 and agree with the float64 unit rule to float32 roundoff."""
    pa = data.draw(parts_arrays(order)).astype(np.float32)
    pb = data.draw(dominant_parts(order)).astype(np.float32)
    a, b = T(pa), T(pb)
    product = a * b
    assert product.dtype == np.float32 and product.parts.dtype == np.float32
    wide_a, wide_b = pa.astype(np.float64), pb.astype(np.float64)
    # products of float32 subnormals (drawn entries ~1e-40) have absolute accuracy only
    assert_parts_close(
        product.parts, reference_mul(wide_a, wide_b), norm1(wide_a) * norm1(wide_b) + 1e-35, 1e-6
    )
    inverse = 1 / b
    assert inverse.dtype == np.float32
    assert_parts_close((inverse * b).parts, one_parts(order, pb.shape[1:]), 1.0, 2e-6 * 2**order)


@pytest.mark.parametrize(
    ("name", "order"),
    [(name, order) for name in sorted(IDEMPOTENT_FUNCTIONS) for order in (1, 2, 3, 4)],
)
@pytest.mark.slow
@given(data=st.data())
def test_float32_analytic_functions_match_idempotent_split(name, order, data):
    mc_fn, np_fn = IDEMPOTENT_FUNCTIONS[name]
    p = data.draw(dominant_parts(order, ratio=0.5)).astype(np.float32)
    got = mc_fn(T(p))
    assert got.dtype == np.float32
    want = idempotent_apply(np_fn, p.astype(np.float64))
    assert_parts_close(got.parts, want, norm1(want) + 1.0, 2e-6 * 2**order)


@pytest.mark.parametrize("order", [2, 3, 4])
@given(data=st.data())
def test_arctan_and_erf_match_idempotent_split(order, data):
    from scipy.special import erf

    p = data.draw(dominant_parts(order, ratio=0.3))
    p[0] -= 0.25  # real parts in [0.25, 2.75]: arctan's cuts are on the imaginary axis
    for mc_fn, np_fn in [(mc.arctan, np.arctan), (mc.erf, erf)]:
        want = idempotent_apply(np_fn, p)
        assert_parts_close(mc_fn(T(p)).parts, want, norm1(want) + 1.0, 1e-12)


# --- identities with O(1) imaginary parts -------------------------------------------------


# at orders >= 4 a ratio of 0.9 lets a half z1 of z come near zero, and the polar-form
# recursion of log (w = z2 / z1) then loses digits with the conditioning of z1: keep 0.5
DOMINANCE = [(1, 0.9), (2, 0.9), (3, 0.9), (4, 0.5), (5, 0.5)]


@pytest.mark.slow
@pytest.mark.parametrize(("order", "ratio"), DOMINANCE)
@given(data=st.data())
def test_exp_log_identities(order, ratio, data):
    pa = data.draw(dominant_parts(order, ratio=ratio))
    pb = data.draw(dominant_parts(order, ratio=0.7 / 3.0))
    a, b = T(pa), T(pb)
    rtol = 1e-12 * 2.0 ** max(0, order - 3)  # roundoff grows with the 2**n components
    assert_parts_close(mc.exp(mc.log(a)).parts, pa, norm1(pa), rtol)
    # log(exp b) = b needs |Im| of every idempotent component of b below pi
    assert_parts_close(mc.log(mc.exp(b)).parts, pb, norm1(pb), rtol)
    ea, eb = mc.exp(a), mc.exp(b)
    assert_parts_close(
        mc.exp(a + b).parts, (ea * eb).parts, norm1(ea.parts) * norm1(eb.parts), 1e-12
    )


@pytest.mark.slow
@pytest.mark.parametrize("order", [1, 2, 3, 4, 6])
@given(data=st.data())
def test_trigonometric_and_hyperbolic_identities(order, data):
    # sum |coefficients| <= 4: the idempotent components stay O(1), away from tanh's poles
    p = data.draw(parts_arrays(order, scale=min(1.0, 4.0 / 2**order)))
    z = T(p)
    s, c = mc.sin(z), mc.cos(z)
    sc = norm1(s.parts) ** 2 + norm1(c.parts) ** 2
    assert_parts_close((s * s + c * c).parts, one_parts(order, p.shape[1:]), sc, 1e-13)
    sh, ch = mc.sinh(z), mc.cosh(z)
    assert_parts_close(
        (ch * ch - sh * sh).parts,
        one_parts(order, p.shape[1:]),
        norm1(sh.parts) ** 2 + norm1(ch.parts) ** 2,
        1e-13,
    )
    th = mc.tanh(z)
    assert_parts_close(th.parts, (sh / ch).parts, norm1(th.parts) + 1, 1e-12)
    assert_parts_close(mc.tan(z).parts, (s / c).parts, norm1(s.parts) + 1, 1e-12)


@pytest.mark.slow
@pytest.mark.parametrize(("order", "ratio"), DOMINANCE)
@given(data=st.data())
def test_sqrt_and_power_identities(order, ratio, data):
    p = data.draw(dominant_parts(order, ratio=ratio))
    z = T(p)
    r = mc.sqrt(z)
    # roundoff grows with the 2**n components and with the spread of the idempotent parts
    assert_parts_close((r * r).parts, p, norm1(p), 1e-12 * 2.0 ** max(1, order - 2))
    a = data.draw(st.floats(-2.0, 2.0))
    b = data.draw(st.floats(-2.0, 2.0))
    lhs = mc.power(z, a) * mc.power(z, b)
    want = mc.power(z, a + b).parts
    assert_parts_close(lhs.parts, want, norm1(want), 1e-12)
    # tensor exponents: z**w = exp(w log z)
    # sum |w coefficients| <= 1 keeps |Im| of w log z below pi on every idempotent component
    w = T(data.draw(parts_arrays(order, scale=1.0 / 2**order)))
    zw = mc.power(z, w)
    assert_parts_close(mc.log(zw).parts, (w * mc.log(z)).parts, norm1(mc.log(zw).parts) + 1, 1e-12)
    # integer powers are repeated products
    assert_parts_close((z**3).parts, (z * z * z).parts, norm1(p) ** 3, 1e-14)
    assert_parts_close((z ** (-2)).parts, (1 / (z * z)).parts, norm1((z ** (-2)).parts), 1e-13)


def test_arctan_of_embedded_complex_numbers_at_order_3():
    z = 0.3 + 0.9j
    p = np.zeros(8)
    p[:2] = z.real, z.imag
    want = np.arctan(z)
    np.testing.assert_allclose(mc.arctan(T(p)).parts[:2], [want.real, want.imag], rtol=1e-13)


def test_sqrt_at_order_4_with_o1_parts():
    p = np.zeros(16)
    p[0], p[0b1011] = 1.0, 0.9  # 1 + 0.9 i1 i2 i4: idempotent components 1 +- 0.9i
    r = mc.sqrt(T(p))
    np.testing.assert_allclose((r * r).parts, p, atol=1e-12)


def test_arctan_inverts_tan_with_widely_spread_idempotent_components():
    y = T(np.array([0.5, 0.0, 0.0, 1.0]))  # idempotent components 1.5 and -0.5: both in range
    np.testing.assert_allclose(mc.arctan(mc.tan(y)).parts, y.parts, atol=1e-12)


def test_power_of_real_base_with_tensor_exponent():
    base = np.array([0.5, 2.0, 3.0])
    w = T(np.array([[1.5, -0.5, 2.0], [0.25, 0.1, -0.3]]))
    got = mc.power(mc.tensor(base), w)
    want = base ** (w.parts[0] + 1j * w.parts[1])
    assert_parts_close(got.parts, [want.real, want.imag], np.abs(want), 1e-14)
    # rpow: a Python scalar base
    got = 2.0**w
    want = 2.0 ** (w.parts[0] + 1j * w.parts[1])
    assert_parts_close(got.parts, [want.real, want.imag], np.abs(want), 1e-14)


# --- explicit bicomplex formulas with Python complex numbers ---------------------------------


def bicomplex(p) -> tuple[complex, complex]:
    """(z1, z2) of z = z1 + z2 i_2 from order-2 parts (scalar elements)."""
    return complex(p[0], p[1]), complex(p[2], p[3])


def as_parts(z1: complex, z2: complex) -> np.ndarray:
    return np.array([z1.real, z1.imag, z2.real, z2.imag])


def _polar_log_real_part(z1: complex, z2: complex) -> complex:
    import mpmath

    with mpmath.workdps(40):
        return complex(mpmath.log(mpmath.mpc(z1) ** 2 + mpmath.mpc(z2) ** 2) / 2)


@given(data=st.data())
def test_bicomplex_explicit_formulas(data):
    p = data.draw(dominant_parts(2, shape=()))
    z1, z2 = bicomplex(p)
    z = T(p)
    formulas = {
        "exp": (mc.exp, as_parts(cmath.exp(z1) * cmath.cos(z2), cmath.exp(z1) * cmath.sin(z2))),
        "sin": (mc.sin, as_parts(cmath.sin(z1) * cmath.cosh(z2), cmath.cos(z1) * cmath.sinh(z2))),
        "cos": (mc.cos, as_parts(cmath.cos(z1) * cmath.cosh(z2), -cmath.sin(z1) * cmath.sinh(z2))),
        # 1/(z1 + z2 i2) = (z1 - z2 i2)/(z1^2 + z2^2)
        "inv": (lambda t: 1 / t, as_parts(z1 / (z1**2 + z2**2), -z2 / (z1**2 + z2**2))),
        # log: polar form log(z1^2 + z2^2)/2 + i2 atan(z2/z1), principal for Re z1 > |z2|;
        # in mpmath, since log(z1^2 + z2^2) cancels in double precision where |z| is near 1
        "log": (mc.log, as_parts(_polar_log_real_part(z1, z2), cmath.atan(z2 / z1))),
    }
    for fn, want in formulas.values():
        assert_parts_close(fn(z).parts, want, np.abs(want).sum(), 1e-13)


def test_bicomplex_matches_mpmath_at_high_precision():
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 40
    p = np.array([1.3, 0.4, -0.6, 0.2])
    z1, z2 = (mpmath.mpc(p[0], p[1]), mpmath.mpc(p[2], p[3]))
    ap, am = z1 - 1j * z2, z1 + 1j * z2  # idempotent components, in mpmath precision
    for fn, mfn in [
        (mc.exp, mpmath.exp),
        (mc.log, mpmath.log),
        (mc.tanh, mpmath.tanh),
        (mc.sqrt, mpmath.sqrt),
        (mc.arctan, mpmath.atan),
        (mc.erf, mpmath.erf),
    ]:
        a, b = mfn(ap), mfn(am)
        w1, w2 = (a + b) / 2, 1j * (a - b) / 2
        want = np.array([float(w1.real), float(w1.imag), float(w2.real), float(w2.imag)])
        np.testing.assert_allclose(fn(T(p)).parts, want, rtol=0, atol=1e-14 * np.abs(want).sum())


# --- tiny imaginary parts: exact small coefficients -----------------------------------------


@pytest.mark.parametrize("h", [1e-20, 1e-100, 1e-150])
def test_tiny_coefficients_survive_every_function(h):
    """With parts h, h and h^2 the i1 i2 coefficient is f''(x) h^2 (no O(1) differences)."""
    x = 0.7
    z = T(np.array([x, h, h, 0.0]))
    second = {
        mc.exp: np.exp(x),
        mc.log: -1 / x**2,
        mc.sqrt: -0.25 * x**-1.5,
        mc.sin: -np.sin(x),
        mc.tanh: -2 * np.tanh(x) * (1 - np.tanh(x) ** 2),
        mc.arctan: -2 * x / (1 + x * x) ** 2,
        mc.erf: -4 * x / np.sqrt(np.pi) * np.exp(-x * x),
        (lambda t: 1 / t): 2 / x**3,
    }
    for fn, want in second.items():
        top = fn(z).parts[3] / h**2
        np.testing.assert_allclose(top, want, rtol=1e-13)


@pytest.mark.parametrize(("order", "unit_product"), [(5, 0b10111), (4, 0b1011), (5, 0b11011)])
def test_log_of_exp_near_arctans_singularities(order, unit_product):
    """b = 3 + 0.7 e with e^2 = +1: arctan inside log meets idempotent parts near -+i, where
    log1p(4y/d) would cancel (it lost 7 digits here before log n - log d took over)."""
    p = np.zeros((2**order, 1))
    p[0], p[unit_product] = 3.0, 0.7
    np.testing.assert_allclose(mc.log(mc.exp(T(p))).parts, p, atol=1e-14)
