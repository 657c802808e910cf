"""Derivatives of plain functions: exact Taylor mode, and the multicomplex step.

``derivative`` and ``directional`` along one direction evaluate f on ``x + w (e_1 + ... +
e_k)`` with nilpotent units (e_j^2 = 0, ``algebra.symmetric.nilpotent_units``): the
coefficient of e_1 ... e_k is ``f^(k)(x) w^k`` with no truncation error for any w, so w
only scales.  It is a power of two 2**E chosen so that no coefficient over- or underflows,
and every value is certified by a second evaluation at 2**(E + p): powers of two scale
every coefficient exactly, so the two agree to the bit unless something over- or
underflowed (or, for ``derivative``, f mixes elements: p differs between elements).  What
cannot be certified at any scale raises ``DerivativeError``.  float32 points are computed
in float64 and rounded once.

Mixed directions (``directional`` with distinct directions) take the multicomplex step
``f(x + h (i_1 v_1 + ... + i_k v_k))``, whose truncation error is O(h^2), at two steps h and
h / 2**16 that must agree.  ``multicomplex_step`` is that step alone, unchecked, in the
point's own dtype: the paper's method, which the networks use (``Objective``).
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from mcnet.algebra import loops, symmetric
from mcnet.algebra.multicomplex import array_module
from mcnet.errors import DerivativeError
from mcnet.tensor import Tensor, _complex_of, as_tensor, check_memory, tensor

# h**k is kept at 2**-400 (float64) or 2**-48 (float32), h at most 2**-24 (float32).
# Products of two perturbed parts (h**(2k), e.g. i_1 times i_1) then stay normal numbers
# (2**-800 >= 2**-1022, 2**-96 >= 2**-126): subnormal arithmetic is correct but several
# times slower in every kernel and GEMM.  In float32 that floor is close: at order 1,
# h = 2**-48 lets products of two imaginary parts of small activations go subnormal, while
# h = 2**-24 gives the same H v (its O(h**2) truncation is far below float32's roundoff).
# Order 2 keeps 2**-24, small enough for the one-direction Taylor path
# (``algebra.symmetric.is_tiny``).  h itself is small enough that the truncation error is
# below roundoff (orders >= 4 in float32: at roundoff).  h is a power of two, so scaling by
# it is exact.
_TOP_COEFFICIENT_EXPONENT = {np.dtype(np.float64): 400, np.dtype(np.float32): 48}
_SMALLEST_STEP_EXPONENT = {np.dtype(np.float64): 400, np.dtype(np.float32): 24}
_LARGEST_STEP_EXPONENT = {np.dtype(np.float64): 26, np.dtype(np.float32): 12}


def default_step(dtype, order: int) -> float:
    """The default step h of the multicomplex step for the given order: a power of two.

    float64: h = 2**-(400 // k), at most 2**-26; float32: h = 2**-min(24, 48 // k), at most
    2**-12.
    """
    dtype = np.dtype(dtype)
    if dtype not in _TOP_COEFFICIENT_EXPONENT:
        raise TypeError(f"no default step for dtype {dtype}; use float32 or float64")
    if order < 1:
        raise ValueError(f"order must be >= 1, got {order}")
    exponent = min(_TOP_COEFFICIENT_EXPONENT[dtype] // order, _SMALLEST_STEP_EXPONENT[dtype])
    return 2.0 ** -max(exponent, _LARGEST_STEP_EXPONENT[dtype])


# Up to this order a perturbation along one direction is held as k + 1 coefficients
# (algebra.symmetric): products cost (k + 1)**2 base products instead of 4**(k-1) complex
# ones, while functions other than products still expand to the general 2**k layout.
MAX_ONE_DIRECTION_ORDER = 8


def perturb(
    x, directions: Sequence, h: float, one_direction: bool | None = None, out=None
) -> Tensor:
    """The order-k tensor ``x + h (i_1 v_1 + ... + i_k v_k)``, k = len(directions).

    When every direction is the same (and 2 <= k <= 8) the tensor is held in the
    one-direction layout (``Tensor.one_direction``), which computes the same numbers with
    fewer products; ``one_direction=False`` forces the general layout, True requires the
    compact one. ``out``: an array to write the general layout's data into (shape
    ``(2**(k-1),) + x.shape``, complex of x's dtype, on x's device), which the result then
    views: a caller that perturbs points of one size over and over reuses one buffer
    instead of fresh pages, which cost more than filling them.
    """
    x = as_tensor(x)
    if x.order:
        raise ValueError(f"perturb needs a real (order-0) point, got an order-{x.order} tensor")
    k = len(directions)
    xp = array_module(x.data)
    if k == 0:
        return x.copy()
    vs = [_direction(v, x, j) for j, v in enumerate(directions)]
    same = all(v is vs[0] or bool(xp.array_equal(v, vs[0])) for v in vs[1:])
    if one_direction and not same:
        raise ValueError("one_direction=True needs every direction to be the same")
    if one_direction is None:
        one_direction = same and 2 <= k <= MAX_ONE_DIRECTION_ORDER
    if one_direction and out is not None:
        raise ValueError("out is for the general layout; pass one_direction=False with it")
    if one_direction:
        data = xp.empty((k + 1,) + x.shape, dtype=x.dtype)
        data[0], data[2:] = x.data[0], 0
        xp.multiply(vs[0], x.dtype.type(h), out=data[1, ...])
        return Tensor(data)
    check_memory(
        2**k * max(x.size, 1) * x.dtype.itemsize,
        f"perturbing a tensor of shape {x.shape} along {k} directions (order {k})",
    )
    # coefficients written in place (no temporary h v); with one direction the two writes
    # fill the whole array, so it need not be zeroed first
    shape, dtype = (2 ** (k - 1),) + x.shape, _complex_of(x.dtype)
    if out is None:
        data = (xp.empty if k == 1 else xp.zeros)(shape, dtype=dtype)
    elif out.shape != shape or out.dtype != dtype or array_module(out) is not xp:
        raise ValueError(
            f"out must be a {xp.__name__} array of shape {shape} and dtype "
            f"{np.dtype(dtype)}, got {type(out).__name__} {out.shape} {out.dtype}"
        )
    else:
        data = out
        if k > 1:
            data[...] = 0
    if k == 1 and xp is np and loops.complex_step(x.data[0, ...], vs[0], h, data[0, ...]):
        return Tensor(data)
    data.real[0] = x.data[0]
    for j, v in enumerate(vs):
        # i_1's coefficient is the imaginary part of component 0, i_{j+1}'s the real part of 2^(j-1)
        xp.multiply(v, h, out=data.imag[0, ...] if j == 0 else data.real[1 << (j - 1), ...])
    return Tensor(data)


def _direction(v, x: Tensor, j: int):
    xp = array_module(x.data)
    v = v.numpy() if isinstance(v, Tensor) else v
    v = xp.asarray(v, dtype=x.dtype)
    if v.shape != x.shape:
        raise ValueError(f"direction {j} has shape {v.shape}; expected the point's shape {x.shape}")
    return v


def _normalised(vs: list, xp) -> tuple[list, list[int]]:
    """Each direction times the power of two 2**e that brings it to max-norm about 1 (exact;
    multilinearity puts 2**-e back), and the exponents e (0 for zero or non-finite ones).
    A direction given more than once (vᵀHv's [v, v]) is scaled once, and stays one array."""
    scaled, exponents, done = [], [], {}
    for v in vs:
        if id(v) not in done:
            size = float(xp.max(xp.abs(v))) if v.size else 0.0
            e = 0 if size == 0.0 or not math.isfinite(size) else -round(math.log2(size))
            done[id(v)] = (_times_power_of_two(v, e, xp), e)
        scaled.append(done[id(v)][0])
        exponents.append(done[id(v)][1])
    return scaled, exponents


def normal_exponents(dtype) -> tuple[int, int]:
    """(lowest, largest) e for which 2**e is a normal number of ``dtype``."""
    info = np.finfo(dtype)
    return math.frexp(float(info.tiny))[1] - 1, math.frexp(float(info.max))[1] - 1


def _times_power_of_two(v, e: int, xp):
    """v 2**e, exactly: a multiplication while 2**e is a normal number of v's dtype (SIMD,
    where ldexp is a slow loop), else ldexp (2**e alone would over- or underflow)."""
    if e == 0:
        return v
    lowest, largest = normal_exponents(v.dtype)
    if lowest <= e <= largest:
        return v * v.dtype.type(math.ldexp(1.0, e))
    return xp.ldexp(v, e)


def _is_zero(v, xp) -> bool:
    return not bool(xp.any(v))


def multicomplex_step(
    f: Callable[[Tensor], Tensor], x, directions: Sequence, h: float | None = None
):
    """``d^k f(x)[v_1, ..., v_k]`` by one multicomplex step in x's own dtype, unchecked: the
    i_1 ... i_k coefficient of ``f(perturb(x, directions, h))`` over h**k, with each
    direction first scaled by a power of two to max-norm about 1.  Its truncation error is
    O(h**2) relative; ``directional`` checks it, the networks' ``Objective`` uses it as is.
    A zero direction gives zeros (one real evaluation, for f's output shape)."""
    _check_step(h)
    return _to_output(_step(f, as_tensor(x), directions, h))


def _step(f, x: Tensor, directions: Sequence, h):
    """``multicomplex_step`` as an array on x's device."""
    k = len(directions)
    xp = array_module(x.data)
    vs = [_direction(v, x, j) for j, v in enumerate(directions)]
    if k == 0 or any(_is_zero(v, xp) for v in vs):
        value = as_tensor(f(x), like=x).real
        return value if k == 0 else xp.zeros_like(value)
    scaled, exponents = _normalised(vs, xp)
    if h is None:
        h = default_step(x.dtype, k)
    y = as_tensor(f(perturb(x, scaled, h)), like=x)
    top = y.coef(tuple(range(1, k + 1)))
    return xp.ldexp(top / h**k, -sum(exponents))


def directional(f: Callable[[Tensor], Tensor], x, directions: Sequence, h: float | None = None):
    """The k-th mixed directional derivative ``d^k f(x)[v_1, ..., v_k]``, an array of f's
    output shape (a float for scalar f), to the accuracy of the dtype or a
    ``DerivativeError``.

    One direction repeated k times (and k = 1): exact Taylor mode (the module docstring),
    h the first scale tried (rounded to a power of two).  Distinct directions: the
    multicomplex step, checked at h and h / 2**16 (h defaults to ``default_step``).
    """
    x = as_tensor(x)
    _check_point(x)
    _check_step(h)
    k = len(directions)
    if k == 0:
        return _to_output(as_tensor(f(x), like=x).real)
    xp = array_module(x.data)
    point = x.astype(np.float64)
    vs = [_direction(v, point, j) for j, v in enumerate(directions)]
    if any(_is_zero(v, xp) for v in vs):
        return _in_dtype(xp.zeros_like(as_tensor(f(x), like=x).real), x.dtype)
    if all(v is vs[0] or bool(xp.array_equal(v, vs[0])) for v in vs[1:]):
        (v,), (e,) = _normalised(vs[:1], xp)
        try:
            result = _certified(f, point, k, _Scales(v, e, h, point, per_element=False))
        except symmetric.MixedLayoutError:
            result = _checked_step(f, point, vs, h)
    else:
        result = _checked_step(f, point, vs, h)
    return _in_dtype(result, x.dtype)


def derivative(f: Callable[[Tensor], Tensor], x, order: int = 1, h: float | None = None):
    """Elementwise ``d^order f / dx^order`` of an elementwise f at a scalar or array x, by the
    exact Taylor mode (the module docstring), to the accuracy of x's dtype, or ±inf / 0
    where the true value overflows / underflows, or a ``DerivativeError`` naming the points.

    h, if given, is the first scale tried (it cannot make the result less exact).  NaN
    where f(x) itself is NaN (outside f's domain).  An f that is not elementwise (its output
    has another shape, or an element depends on other elements) raises ValueError.
    """
    if isinstance(order, bool) or not isinstance(order, numbers.Integral):
        raise TypeError(f"order must be an integer, got {order!r} ({type(order).__name__})")
    if order < 0:
        raise ValueError(f"order must be >= 0, got {order}")
    _check_step(h)
    x = as_tensor(x)
    _check_point(x)
    if order == 0:
        return _to_output(as_tensor(f(x), like=x).real)
    xp = array_module(x.data)
    point = x.astype(np.float64)
    ones = xp.ones(x.shape, dtype=np.float64)
    try:
        result = _certified(f, point, order, _Scales(ones, 0, h, point, per_element=True))
    except symmetric.MixedLayoutError:
        result = _checked_step(f, point, [ones] * order, h)
    return _in_dtype(result, x.dtype)


# --- the exact Taylor mode ------------------------------------------------------------------

# Step exponents tried after h's, the point's and 0, for values that over- or underflowed:
# the k-th coefficient moves by 2**(k * E).
_FAR = (-64, 64, -512, 512)
_TINY64 = float(np.finfo(np.float64).tiny)


class _Scales:
    """The steps w = v 2**E of one call: E per element (``derivative``: w's elements are
    independent) or one E (``directional``), with the checking step 2**(E + p)."""

    def __init__(self, v, e_v: int, h, point: Tensor, per_element: bool) -> None:
        xp = array_module(point.data)
        self.v, self.e_v, self.per_element, self.xp = v, e_v, per_element, xp
        self.first = 0 if h is None else int(np.clip(round(math.log2(h)), -1000, 1000))
        x = xp.abs(point.data[0])
        if per_element:
            # |x| as a power of two (1 where x is 0 or not finite); p: 1..7, differing
            # between neighbours, so that cross-talk between elements shows
            usable = xp.isfinite(x) & (x > 0)
            self.own = xp.where(usable, xp.frexp(xp.where(usable, x, 1.0))[1] - 1, 0)
            self.check = 1 + (xp.arange(point.size).reshape(point.shape) * 5) % 7
        else:
            biggest = float(xp.max(xp.where(xp.isfinite(x), x, 0.0))) if x.size else 0.0
            self.own = math.frexp(biggest)[1] - 1 if biggest > 0 else 0
            self.check = 3

    def candidates(self):
        """The exponents E to try (w = 2**E times v scaled to max-norm about 1), in order,
        each once: h's (0 by default), the point's, 0, v's own, then the far ones."""
        seen = []
        # -e_v: the step v itself (w >= 1 or <= 1 bounds an underflow or overflow, below)
        for exponent in (self.first, self.own, 0, -self.e_v, *_FAR):
            if not any(bool(self.xp.all(self.xp.asarray(exponent == e))) for e in seen):
                seen.append(exponent)
                yield exponent

    def step(self, exponent):
        return self.xp.ldexp(self.v, exponent)


def _jet(f, point: Tensor, w, k: int):
    """(f(x), s_k) of f(x + w (e_1 + ... + e_k)) with nilpotent units, float64 arrays."""
    with symmetric.nilpotent_units(), np.errstate(all="ignore"):
        y = as_tensor(f(perturb(point, [w] * k, 1.0, one_direction=True)), like=point)
    xp = array_module(point.data)
    if y.order == 0:  # f does not depend on its argument
        return y.data[0], xp.zeros_like(y.data[0])
    if not y.one_direction:
        raise symmetric.MixedLayoutError("f returned a multicomplex (general-layout) tensor")
    return y.data[0], y.data[k]


def _certified(f, point: Tensor, k: int, scales: _Scales):
    """The k-th derivatives certified by pairs of evaluations over the scales' candidates.

    An element no pair certifies is still decided where a scale bounds it: a coefficient
    below the smallest normal number at a step w >= 1 means |f^(k) v^k| < that number (an
    underflow: 0, or the tiny value found), an infinite one at a step w <= 1 means it
    overflows (±inf).  NaN where f(x) is NaN; anything else raises ``DerivativeError``."""
    xp = scales.xp
    # arrays of the value's shape (on its device), made at the first candidate
    result: Any
    unresolved: Any
    inf_sign: Any
    small: Any
    small_found: Any
    result = unresolved = value = inf_sign = small = small_found = None
    tried = []
    with np.errstate(all="ignore"):
        for number, exponent in enumerate(scales.candidates()):
            tried.append(exponent)
            value, first = _jet(f, point, scales.step(exponent), k)
            _, second = _jet(f, point, scales.step(exponent + scales.check), k)
            if result is None:
                if scales.per_element and value.shape != point.shape:
                    raise _not_elementwise(point.shape, value.shape)
                result = xp.full(value.shape, np.nan)
                unresolved = xp.ones(value.shape, dtype=bool)
                inf_sign = xp.full(value.shape, np.nan)
                small = xp.zeros(value.shape)
                small_found = xp.zeros(value.shape, dtype=bool)
            step_exponent = exponent + scales.e_v  # w = 2**step_exponent (times v)
            d = xp.ldexp(first, -k * step_exponent)
            d_check = xp.ldexp(second, -k * (step_exponent + scales.check))
            redo = unresolved & _normal(first, xp) & ~_normal(second, xp)
            if bool(xp.any(redo)):  # the check's larger step over- or underflowed: a smaller
                _, third = _jet(f, point, scales.step(exponent - scales.check), k)
                second = xp.where(redo, third, second)
                d_check = xp.where(
                    redo, xp.ldexp(third, -k * (step_exponent - scales.check)), d_check
                )
            normal = _normal(first, xp) & _normal(second, xp)
            agree = (d == d_check) | (xp.abs(d - d_check) <= 1e-13 * xp.abs(d))
            if (
                scales.per_element
                and number == 0
                and bool(
                    xp.any(
                        (normal & ~agree)
                        | _zero_against_large(first, second, xp)
                        | _zero_against_large(second, first, xp)
                    )
                )
            ):
                raise _not_elementwise(point.shape, value.shape, mixes=True)
            accept = unresolved & normal & agree
            result = xp.where(accept, d, result)
            unresolved &= ~accept
            # bounds: tiny at w >= 1 (underflow), infinite at w <= 1 (overflow)
            tiny = (xp.abs(first) < _TINY64) & (step_exponent >= 0)
            small = xp.where(tiny & (xp.abs(d) >= xp.abs(small)), d, small)
            small_found |= tiny
            infinite = xp.isinf(first) & (step_exponent <= 0)
            sign = xp.sign(first)
            inf_sign = xp.where(infinite & xp.isnan(inf_sign), sign, inf_sign)
            inf_sign = xp.where(infinite & (sign != inf_sign), 0, inf_sign)
            if not bool(xp.any(unresolved)):
                break
        outside = xp.isnan(value)  # f(x) itself is undefined there: so are its derivatives
        overflow = unresolved & ~outside & (xp.abs(inf_sign) == 1) & ~small_found
        underflow = unresolved & ~outside & small_found & xp.isnan(inf_sign)
        result = xp.where(outside, np.nan, result)
        result = xp.where(overflow, inf_sign * np.inf, result)
        result = xp.where(underflow, small, result)
    failed = unresolved & ~outside & ~overflow & ~underflow
    if bool(xp.any(failed)):
        raise _refusal(point, k, failed, tried)
    return result


def _zero_against_large(a, b, xp):
    """a exactly 0 where b is far above underflow: rescaling an elementwise f's step by
    2**(k p) cannot do that (t - mean(t) cancels at one scale only)."""
    return (a == 0) & xp.isfinite(b) & (xp.abs(b) > _FAR_ABOVE_UNDERFLOW)


_FAR_ABOVE_UNDERFLOW = 2.0**-900


def _normal(s, xp):
    """Finite and at least the smallest normal number: every bit of the coefficient kept."""
    return xp.isfinite(s) & (xp.abs(s) >= _TINY64)


def _not_elementwise(shape, output_shape, mixes: bool = False) -> ValueError:
    what = (
        "an element of f's output depends on other elements of its input"
        if mixes
        else f"f maps shape {shape} to shape {output_shape}"
    )
    return ValueError(
        f"mc.derivative needs an elementwise f, but {what}; use mc.grad for the gradient of "
        "a scalar function, mc.directional for a derivative along a direction"
    )


def _refusal(point: Tensor, k: int, failed, tried: list) -> DerivativeError:
    xp = array_module(point.data)
    where = _to_output(xp.argwhere(failed))[:5]
    places = ", ".join(str(tuple(int(i) for i in w)) for w in where)
    count = int(xp.count_nonzero(failed))
    points = (
        f"x = {float(point.data[0].reshape(-1)[0]):.6g}"
        if point.size == 1
        else (f"{count} output element(s), at indices {places}{', ...' if count > 5 else ''}")
    )
    low = min(int(xp.min(xp.asarray(e))) for e in tried)
    high = max(int(xp.max(xp.asarray(e))) for e in tried)
    return DerivativeError(
        f"the order-{k} derivative cannot be computed to the dtype's accuracy at {points}: "
        "its Taylor coefficient over- or underflowed, or came out NaN, at every step 2**E "
        f"tried (E from {low} to {high}) although f(x) there is a number (inf - inf or "
        "0 * inf inside f?)"
    )


# --- mixed directions: the multicomplex step, checked ---------------------------------------

_CHECK_RATIO = 2.0**-16
_SMALLEST_POWER = 900  # h**k below 2**-900: products of perturbed parts underflow
# Above this order the general layout's 2**k components make a call costly: time grows
# about 4x per order (4**(k-1) complex products per product).
_LARGE_ORDER = 8


def _checked_step(f, point: Tensor, directions: list, h):
    """The multicomplex step at h and h / 2**16 in float64: their truncation errors differ by
    2**32, so agreement to 1e-12 certifies the smaller step's value; otherwise a smaller
    pair is tried while h**k stays a normal number."""
    k = len(directions)
    xp = array_module(point.data)
    if k > _LARGE_ORDER:
        nbytes = 2**k * max(point.size, 1) * 8
        warnings.warn(
            f"order-{k} mixed derivative: the multicomplex step holds {nbytes:,} bytes per "
            f"intermediate array and costs about {4 ** (k - _LARGE_ORDER):,}x an order-8 "
            "call (4x per order)",
            RuntimeWarning,
            stacklevel=3,
        )
    h = default_step(np.float64, k) if h is None else h
    first = h
    with np.errstate(all="ignore"):
        previous = _step(f, point, directions, h)
        while (math.log2(h) + math.log2(_CHECK_RATIO)) * k > -_SMALLEST_POWER:
            h *= _CHECK_RATIO
            current = _step(f, point, directions, h)
            agree = (current == previous) | (xp.abs(current - previous) <= 1e-12 * xp.abs(current))
            if bool(xp.all(agree | xp.isnan(current))):
                return current
            previous = current
    raise DerivativeError(
        f"the order-{k} mixed derivative cannot be computed to the dtype's accuracy: the "
        f"multicomplex step from h = {first:.3g} did not converge before h**{k} would fall "
        f"below 2**-{_SMALLEST_POWER} (truncation error, or underflow)"
    )


# --- checks and conversions ---------------------------------------------------------------


def _check_point(x: Tensor) -> None:
    if x.order:
        raise ValueError(
            f"a derivative needs a real (order-0) point, got an order-{x.order} tensor"
        )


def _check_step(h) -> None:
    if h is None:
        return
    if isinstance(h, bool) or not isinstance(h, numbers.Real):
        raise TypeError(f"h must be a positive finite number, got {h!r} ({type(h).__name__})")
    if not math.isfinite(h) or h <= 0:
        raise ValueError(f"h must be a positive finite number, got {h!r}")


def _in_dtype(a, dtype):
    """A float64 result rounded once to the point's dtype (overflow gives inf)."""
    with np.errstate(over="ignore", under="ignore"):
        return _to_output(array_module(a).asarray(a).astype(dtype))


def _to_output(a):
    a = a if array_module(a) is np else a.get()
    return float(a) if np.ndim(a) == 0 else a


__all__ = ["default_step", "derivative", "directional", "multicomplex_step", "perturb", "tensor"]
