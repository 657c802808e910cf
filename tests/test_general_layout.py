"""The general multicomplex layout at orders 2-6, with DISTINCT directions, for every
elementwise function, against mpmath (tests/mpref.py: nothing there calls mcnet).

``mc.derivative`` and ``directional(f, x, [v] * k)`` run the one-direction layout (and its
Taylor path), so these tests are what checks the 2**k layout and its fused kernels:

- the derivative regime: ``directional`` with distinct directions at the default step, and
  x + sum_j h_j v_j i_j with every h_j drawn from 1e-150 to 1e-3, every one of the 2**k
  coefficients against the mixed partials of f (the exact series in the h_j);
- O(1) imaginary parts: idempotent components drawn anywhere in f's domain, off its branch
  cuts and poles, against f of each component in mpmath;
- arrays below and above ``FUSE_MIN_SIZE`` (the fused kernels from 4096 elements, up to
  order 4), and float32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import mpmath
import mpref
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import mcnet as mc
from mcnet.algebra import kernels
from mcnet.tensor import FUSE_MIN_SIZE

PI = math.pi


def identity(z):
    return z


def constant(c):
    return lambda z: 0 * z + c


# --- where each function's idempotent components may go ----------------------------------
# A placer maps a drawn point (re, im) of the box [-1, 1]^2 to a point of the function's
# domain at least 0.25 away from its branch cuts and poles.

MARGIN = 0.25


def box(re_size, im_size):
    return lambda re, im: complex(re * re_size, im * im_size)


def off_negative_axis(re, im, size=3.0, start=0.0):
    z = complex(re * size, im * size)
    if z.real < start + MARGIN and abs(z.imag) < MARGIN:
        z = complex(z.real, math.copysign(MARGIN + abs(z.imag), z.imag or 1.0))
    return z


def off_zero(re, im, size=3.0):
    z = complex(re * size, im * size)
    if abs(z) < MARGIN:
        z = z / abs(z) * MARGIN if z else complex(MARGIN, 0.0)
    return z


def off_poles(poles_on_real_axis, rotate=False, size=2.0):
    """Away from the poles p (real numbers) of f(z), or of f(i z) with ``rotate``."""

    def place(re, im):
        z = complex(re * size, im * size)
        w = complex(z.imag, -z.real) if rotate else z  # rotate: poles i p -> p
        for p in poles_on_real_axis:
            if abs(w - p) < MARGIN:
                w = complex(w.real, math.copysign(MARGIN, w.imag or 1.0))
        return complex(-w.imag, w.real) if rotate else w

    return place


@dataclass
class Spec:
    """An elementwise function: mcnet's, the branch mpmath evaluates at a real part x (an
    analytic function of an mpf or mpc), the real domain for derivatives, the placer of
    idempotent components, and the kinks that real parts keep away from."""

    fn: object
    branch: object
    domain: tuple[float, float]
    place: object
    kinks: tuple[float, ...] = field(default_factory=tuple)
    # what the recursions invert (its halves set the conditioning): z for inv, log, powers
    denominator: object = identity
    # erf sums its Taylor series about the real part x: terms grow to ~exp(|z - x|^2)
    series_about_real_part: bool = False
    # arctan's recursion (atan2 of halves, log of a ratio) loses a digit more than the rest
    roundoff: float = 1.0


def analytic(mp_fn):
    return lambda x: mp_fn


def sigmoid_mp(z):
    return 1 / (1 + mpmath.exp(-z))


SPECS = {
    "exp": Spec(mc.exp, analytic(mpmath.exp), (-3, 3), box(2, 2)),
    "log": Spec(mc.log, analytic(mpmath.log), (0.5, 3), off_negative_axis),
    "log1p": Spec(mc.log1p, analytic(mpmath.log1p), (-0.5, 3),
                  lambda re, im: off_negative_axis(re, im, 3.0, -1.0),
                  denominator=lambda z: 1 + z),
    "sqrt": Spec(mc.sqrt, analytic(mpmath.sqrt), (0.5, 3), off_negative_axis),
    "power_2.5": Spec(lambda t: mc.power(t, 2.5), analytic(lambda z: mpmath.power(z, 2.5)),
                      (0.5, 3), lambda re, im: off_negative_axis(re, im, 2.0)),
    "power_-1.5": Spec(lambda t: t**-1.5, analytic(lambda z: mpmath.power(z, -1.5)), (0.5, 3),
                       off_negative_axis),
    "power_3": Spec(lambda t: t**3, analytic(lambda z: z**3), (-2, 2), box(2, 2)),
    "product": Spec(lambda t: t * mc.sin(t), analytic(lambda z: z * mpmath.sin(z)), (-2, 2),
                    box(2, 2)),
    "power_-2": Spec(lambda t: t**-2, analytic(lambda z: z**-2), (0.5, 3), off_zero),
    "inverse": Spec(lambda t: 1 / t, analytic(lambda z: 1 / z), (0.5, 3), off_zero),
    "rpow": Spec(lambda t: 2.5**t, analytic(lambda z: mpmath.power(2.5, z)), (-2, 2),
                 box(2, 2)),
    "sin": Spec(mc.sin, analytic(mpmath.sin), (-3, 3), box(3, 2)),
    "cos": Spec(mc.cos, analytic(mpmath.cos), (-3, 3), box(3, 2)),
    "sinh": Spec(mc.sinh, analytic(mpmath.sinh), (-3, 3), box(2, 3)),
    "cosh": Spec(mc.cosh, analytic(mpmath.cosh), (-3, 3), box(2, 3)),
    "tan": Spec(mc.tan, analytic(mpmath.tan), (-1.2, 1.2),
                off_poles([-PI / 2, PI / 2], size=2.0), denominator=mpmath.cos),
    "tanh": Spec(mc.tanh, analytic(mpmath.tanh), (-4, 4),
                 off_poles([-PI / 2, PI / 2], rotate=True, size=2.0),
                 denominator=lambda z: 1 + mpmath.exp(-2 * z)),
    # the strip |Im z| < 1 - MARGIN, where arctan is analytic (clusters near the cut outside
    # it: test_arctan_at_order_6_with_components_clustered_near_its_cut)
    "arctan": Spec(mc.arctan, analytic(mpmath.atan), (-3, 3), box(2.5, 1 - MARGIN),
                   roundoff=10.0),
    "sigmoid": Spec(mc.sigmoid, analytic(sigmoid_mp), (-6, 6),
                    off_poles([-PI, PI], rotate=True, size=3.5),
                    denominator=lambda z: 1 + mpmath.exp(-z)),
    # log(1 + e^z) is analytic on the strip |Im z| < pi, where mcnet's stable form agrees
    "softplus": Spec(mc.softplus, analytic(lambda z: mpmath.log1p(mpmath.exp(z))), (-6, 6),
                     box(3, PI - 2 * MARGIN), denominator=lambda z: 1 + mpmath.exp(-z)),
    "erf": Spec(mc.erf, analytic(mpmath.erf), (-2, 2), box(1.5, 1.5),
                series_about_real_part=True),
    # branching functions decide on the real part and carry the whole number of the branch
    "relu": Spec(mc.relu, lambda x: identity if x > 0 else constant(0), (-2, 2), box(2, 2),
                 (0.0,)),
    "elu": Spec(lambda t: mc.elu(t, 0.7),
                lambda x: identity if x > 0 else (lambda z: 0.7 * (mpmath.exp(z) - 1)),
                (-2, 2), box(2, 2), (0.0,)),
    "abs": Spec(mc.abs, lambda x: identity if x >= 0 else (lambda z: -z), (-2, 2), box(2, 2),
                (0.0,)),
    "maximum": Spec(lambda t: mc.maximum(t, 0.3),
                    lambda x: identity if x >= 0.3 else constant(0.3), (-2, 2), box(2, 2),
                    (0.3,)),
    "minimum": Spec(lambda t: mc.minimum(0.3, t),  # the constant first: ties keep it
                    lambda x: identity if x < 0.3 else constant(0.3), (-2, 2), box(2, 2),
                    (0.3,)),
    "where": Spec(lambda t: mc.where(t > 0.5, mc.exp(t), mc.sin(t)),
                  lambda x: mpmath.exp if x > 0.5 else mpmath.sin, (-2, 2), box(2, 2), (0.5,)),
    "clip": Spec(lambda t: mc.clip(t, -1.0, 0.5),
                 lambda x: constant(-1.0) if x < -1 else (constant(0.5) if x > 0.5 else identity),
                 (-2, 2), box(2, 2), (-1.0, 0.5)),
}  # fmt: skip
NAMES = sorted(SPECS)
DISTINCT = 3  # distinct points per draw; large arrays repeat them past FUSE_MIN_SIZE
# the functions that reach a fused kernel (a tensor-level exp, sin, cos, tanh, sigmoid or
# product of at least FUSE_MIN_SIZE elements): only they are also run on large arrays
FUSED = ["cos", "elu", "exp", "product", "sigmoid", "sin", "tanh", "where"]
CASES = [(name, DISTINCT) for name in NAMES] + [(name, FUSE_MIN_SIZE + 5) for name in FUSED]


def real_points(spec, draw, count):
    lo, hi = spec.domain
    values = st.floats(lo, hi, allow_subnormal=False)
    if spec.kinks:
        values = values.filter(lambda v: min(abs(v - k) for k in spec.kinks) > 1e-2)
    return np.array([draw(values) for _ in range(count)])


def unit_directions(draw, k, size):
    """k distinct directions with entries of size 0.1 to 1 and either sign."""
    magnitude = st.floats(0.1, 1.0)
    sign = st.sampled_from([-1.0, 1.0])
    return [
        np.array([draw(magnitude) * draw(sign) for _ in range(size)]) * (1 + j / 16)
        for j in range(k)
    ]


# --- the derivative regime: directional with distinct directions ---------------------------


def _tile(a, size):
    return np.resize(a, size)


def _tile_parts(parts, size):
    """(2**k, count) parts repeated along the elements to ``size`` elements."""
    return np.tile(parts, (1, -(-size // parts.shape[1])))[:, :size]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "size"), CASES)
@given(data=st.data())
def test_directional_with_distinct_directions_is_the_mixed_partial(name, size, data):
    """d^k f[v_1..v_k] = f^(k)(x) prod_j v_j for elementwise f, orders 2-6 (2-4 above the
    fused-kernel size, where the kernels exist), against mpmath's derivatives."""
    spec = SPECS[name]
    highest = 6 if size < FUSE_MIN_SIZE else kernels.MAX_KERNEL_ORDER
    x = real_points(spec, data.draw, DISTINCT)
    derivs = [mpref.derivatives(spec.branch(xi), xi, highest) for xi in x]
    xs = _tile(x, size)
    for k in range(2, highest + 1):  # every order in every example
        vs = [_tile(v, size) for v in unit_directions(data.draw, k, DISTINCT)]
        assert not mc.perturb(xs, vs, 2.0**-30).one_direction
        got = mc.directional(spec.fn, xs, vs)
        want = np.array([float(d[k]) for d in derivs])
        scale = np.array([max(abs(float(d[m])) for m in range(k + 1)) for d in derivs])
        product = np.prod(vs, axis=0)
        err = np.abs(got - _tile(want, size) * product)
        # 1e-30: mpmath's derivatives are numerical, exact only to ~1e-40 absolute
        size_of = np.abs(_tile(want, size)) + 1e-2 * _tile(scale, size) + 1e-30
        bound = 1e-12 * size_of * np.abs(product)
        assert np.all(err <= bound), (k, got[:DISTINCT], want * product[:DISTINCT])


# --- every coefficient for steps h_j from 1e-150 to 1e-3 ------------------------------------


@st.composite
def derivative_regime_steps(draw, k):
    """h_1..h_k log-uniform in [1e-150, 1e-3], their product >= 1e-280 so that the top
    coefficient (and h_1...h_k times a derivative) is a normal float64."""
    exponents = [draw(st.floats(-150.0, -3.0)) for _ in range(k)]
    total = sum(exponents)
    if total < -280.0:  # shrink toward -3 until the product is representable
        shrink = (-280.0 + 3.0 * k) / (total + 3.0 * k)
        exponents = [-3.0 + (e + 3.0) * shrink for e in exponents]
    return [10.0**e for e in exponents]


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
@given(data=st.data())
def test_every_coefficient_in_the_derivative_regime_matches_mpmath(name, data):
    spec = SPECS[name]
    k = data.draw(st.integers(2, 6), label="order")
    steps = data.draw(derivative_regime_steps(k), label="h")
    x = real_points(spec, data.draw, 2)
    vs = unit_directions(data.draw, k, 2)
    got = spec.fn(mc.perturb(x, [h * v for h, v in zip(steps, vs)], 1.0, one_direction=False)).parts
    for e, xe in enumerate(x):
        derivs = mpref.derivatives(spec.branch(xe), xe, k + 8)
        eps = [h * v[e] for h, v in zip(steps, vs)]
        want = mpref.series_value(derivs, eps)
        for m, units in mpref.subsets(k):
            size = math.prod(abs(eps[u - 1]) for u in units)
            # the size of f's terms at x: an odd f at 0 has a real part that is 0 exactly,
            # computed from O(|f'|) intermediates
            scale = max(abs(float(derivs[c])) for c in range(len(units) + 3))
            bound = 1e-12 * (abs(want[m]) + (1e-2 * scale + 1e-30) * size)
            assert abs(got[m, e] - want[m]) <= bound, (units, got[m, e], want[m], eps)


# --- O(1) imaginary parts: idempotent components anywhere in the domain ---------------------


def idempotent_numbers(seed, spec, order, count, spread):
    """Parts (2**order, count) of numbers whose 2**(order-1) idempotent components lie in the
    spec's domain off its cuts and poles: within ``spread`` (in units of the placer's box) of
    a centre drawn anywhere, or anywhere at all (spread 2).  Drawn from a seed (hypothesis
    draws the seed): hundreds of components are too many single draws for it."""
    rng = np.random.default_rng(seed)
    components = []
    for _ in range(count):
        centre = rng.uniform(-1.0, 1.0, 2)
        offsets = rng.uniform(-1.0, 1.0, (2 ** (order - 1), 2))
        components.append([spec.place(*np.clip(centre + spread * o, -1.0, 1.0)) for o in offsets])
    return mpref.parts_from_components(components)


def o1_reference(spec, parts):
    """f of each idempotent component in mpmath, the branch decided by the real part."""
    branches = [spec.branch(parts[0, e]) for e in range(parts.shape[1])]
    return mpref.idempotent_value(lambda z, e: branches[e](z), parts)


def o1_scale(spec, parts):
    """max |f| over the idempotent components of each element, plus 1: what the result's
    roundoff is relative to."""
    branches = [spec.branch(parts[0, e]) for e in range(parts.shape[1])]
    comps = mpref.idempotent_components(parts)
    return np.array(
        [max(abs(complex(branches[e](z))) for z in c) + 1.0 for e, c in enumerate(comps)]
    )


def halves_condition(parts, denominator=identity):
    """For each element, max |component| / min |component of a half z1|, over the halves z1
    that the recursions split off at every level (z = z1 + z2 i_n, then z1 again, ...), of
    d = denominator(z).  The idempotent components of z1 are the means of pairs of z's; the
    recursions of inv, log, ... divide by z1, so they lose accuracy as a z1 nears 0 although
    z itself is far from every singularity (measured: error up to ~1e-16 kappa**4)."""
    out = []
    for comps in mpref.idempotent_components(parts):
        current = [complex(denominator(z)) for z in comps]
        largest, kappa = max(abs(z) for z in current), 1.0
        while len(current) > 1:
            h = len(current) // 2
            current = [(a + b) / 2 for a, b in zip(current[:h], current[h:])]
            kappa = max(kappa, largest / max(min(abs(z) for z in current), 1e-300))
        out.append(kappa)
    return np.array(out)


def series_growth(parts):
    """exp(max |component - x|^2) per element, x the real part: how far the terms of erf's
    Taylor series about x grow above its sum."""
    out = []
    for e, comps in enumerate(mpref.idempotent_components(parts)):
        out.append(math.exp(max(abs(complex(z) - parts[0, e]) for z in comps) ** 2))
    return np.array(out)


def o1_rtol(spec, parts):
    """Roundoff allowed per element, relative to ``o1_scale``: 1e-12 (more with the 2**k
    components), plus what ill-conditioned halves cost; no bound (inf) past kappa = 1000."""
    k = int(np.log2(len(parts)))
    kappa = halves_condition(parts, spec.denominator)
    rtol = spec.roundoff * 1e-12 * 2.0 ** max(0, k - 3) + 1e-15 * kappa**4
    if spec.series_about_real_part:
        rtol = 10 * rtol * series_growth(parts)
    return np.where(kappa <= 1e3, rtol, np.inf)


def check_o1(spec, parts, size, rtol):
    """f at the numbers ``parts`` (repeated past ``size`` elements) against mpmath."""
    k = int(np.log2(len(parts)))
    want, scale = o1_reference(spec, parts), o1_scale(spec, parts)
    result = spec.fn(mc.from_parts(_tile_parts(parts, size))).parts
    got = result[:, :DISTINCT]
    err = np.abs(got - want).max(axis=0)
    checked = np.isfinite(rtol)
    assert np.all(err[checked] <= (rtol * scale)[checked]), (k, err / scale, rtol)
    # the same numbers near the end of a large array (a kernel's last elements)
    shift = (size - DISTINCT) % DISTINCT
    np.testing.assert_array_equal(result[:, -DISTINCT:], np.roll(got, -shift, axis=1))


@pytest.mark.slow
@pytest.mark.parametrize(("name", "size"), CASES)
@given(data=st.data())
def test_o1_imaginary_parts_match_mpmath(name, size, data):
    """Idempotent components within 0.1 (of the box) of a centre anywhere off the cuts
    (mostly well-conditioned halves: every function exact to roundoff), or anywhere off the
    cuts (the right branch on every component, and roundoff bounded by the conditioning of
    the halves; no bound past kappa = 1000, where the recursions lose most digits).  Orders
    2-6 in both cases, 2-4 through the fused kernels (anywhere was 2-3, and arctan's clusters
    2-4, until log and arctan took the idempotent value where the recursion misses the
    lattice of branches)."""
    spec = SPECS[name]
    anywhere = data.draw(st.booleans(), label="anywhere")
    highest = 6
    k = data.draw(
        st.integers(2, highest if size < FUSE_MIN_SIZE else min(highest, 4)), label="order"
    )
    seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
    parts = idempotent_numbers(seed, spec, k, DISTINCT, 2.0 if anywhere else 0.05)
    check_o1(spec, parts, size, o1_rtol(spec, parts))


# --- what the strategies above found: defects of the algebra, fixed ----------------------


def test_inverse_of_numbers_whose_first_half_is_zero_or_tiny():
    """The inverse once divided by the half z1 whatever its size: 1/i_2 was NaN."""
    for parts, want in [
        ([0.0, 0.0, 1.0, 0.0], [0.0, 0.0, -1.0, 0.0]),  # 1 / i_2 = -i_2
        ([0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 1.0]),  # 1 / (i_1 i_2) = i_1 i_2
        ([0.0, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, -0.5] + [0.0] * 5),  # order 3
        ([0.0] * 4 + [4.0, 0.0, 0.0, 0.0], [0.0] * 4 + [-0.25, 0.0, 0.0, 0.0]),  # 1/(4 i_3)
    ]:
        got = (1 / mc.from_parts(np.array(parts)[:, None])).parts[:, 0]
        np.testing.assert_array_equal(got, want)


@given(
    seed=st.integers(0, 2**32 - 1),
    order=st.integers(2, 5),
    small=st.sampled_from([0.0, 1e-300, 1e-150, 1e-8]),
)
def test_inverse_times_the_number_is_one_when_a_half_is_zero_or_tiny(seed, order, small):
    """z (1/z) = 1 for z = s z1 + z2 i_n with the first half scaled down to 0 or nearly,
    elementwise mixed with ordinary numbers (so both forms of the inverse run in one array),
    to roundoff plus what the conditioning of the halves the recursion divides by costs (z's
    own for the ordinary numbers, z2's for the others: a random ordinary number of order 4
    with kappa = 74 gave 2.8e-12)."""
    rng = np.random.default_rng(seed)
    parts = rng.uniform(-1, 1, (2**order, 6))
    parts[: 2 ** (order - 1), ::2] *= small  # every other element: the first half (nearly) 0
    z = mc.from_parts(parts)
    one = np.zeros_like(parts)
    one[0] = 1.0
    kappa = halves_condition(parts)
    kappa[::2] = halves_condition(parts[2 ** (order - 1) :])[::2]
    error = np.abs((z * (1 / z)).parts - one).max(axis=0)
    assert np.all(error <= 1e-12 + 1e-15 * kappa**4), (error, kappa)


LOG_ORDER_6 = [
    -1.0436 + 0.3344j, -2.4968 + 3j, -1.3788 + 0.3859j, -3 + 3j, -3 + 0.8026j, 2.6077 - 3j,
    -2.0215 + 1.6127j, -2.5357 - 3j, 3 + 3j, -3 + 1.8758j, -3 - 3j, -3 + 3j, -3 + 3j,
    0.4952 + 3j, 2.1138 + 3j, 3 + 2.0036j, -3 - 0.8438j, -3 + 3j, -0.0098 + 0.5616j, -3 + 3j,
    -3 + 3j, -2.788 + 3j, 2.7043 + 2.7919j, 2.4448 + 1.1118j, -3 - 2.8639j, -3 - 0.9807j,
    -3 - 2.8717j, -3 + 3j, -2.5992 + 3j, -3 + 3j, 3 + 3j, -0.7811 - 2.0612j,
]  # fmt: skip


LOG_ORDER_4 = [3 - 3j, 2.938 + 0.285j, 3 - 3j, -3 - 3j, 3 + 3j, -2.084 - 1.405j, 3 + 3j, 3 + 2.817j]


@pytest.mark.parametrize("components", [LOG_ORDER_4, LOG_ORDER_6], ids=["order4", "order6"])
def test_log_with_components_on_both_sides_of_its_cut(components):
    """Idempotent components off the negative axis, on both sides of it, halves conditioned
    kappa ~ 50: log (and sqrt and the powers through it) was off by up to ~0.1 here
    (exp(log z) - z ~ 0.04-0.4); both that identity and mpmath check it."""
    parts = mpref.parts_from_components([components])
    z = mc.from_parts(parts)
    with np.errstate(all="ignore"):
        np.testing.assert_allclose(mc.exp(mc.log(z)).parts, parts, rtol=0, atol=1e-9)
        want = mpref.idempotent_value(lambda w, e: mpmath.log(w), parts)
        np.testing.assert_allclose(mc.log(z).parts, want, rtol=0, atol=1e-9)


def test_arctan_at_order_6_with_components_clustered_near_its_cut():
    """Components clustered near -0.54 - 1.85i, off the cut: arctan was off by ~4e-5."""
    centre = -0.54 - 1.85j
    ring = [centre + 0.1 * np.exp(2j * PI * j / 32) * (1 + j % 3) / 3 for j in range(32)]
    parts = mpref.parts_from_components([ring])
    want = mpref.idempotent_value(lambda w, e: mpmath.atan(w), parts)
    np.testing.assert_allclose(mc.arctan(mc.from_parts(parts)).parts, want, rtol=0, atol=1e-11)


def test_erf_of_imaginary_numbers():
    # erf's series about Re z = 0 has every other term exactly 0: it once stopped at the
    # first of them (erf(2.5i) gave 2.82i)
    for y in (2.5, 3.0):
        got = mc.erf(mc.from_parts(np.array([[0.0], [y]]))).parts[:, 0]
        want = complex(mpmath.erf(1j * y))
        np.testing.assert_allclose(got, [want.real, want.imag], rtol=1e-13)
