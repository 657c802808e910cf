"""Exact directional derivatives by the multicomplex step.

``f(x + h (i_1 v_1 + ... + i_k v_k))`` has ``h**k d^k f(x)[v_1, ..., v_k]`` as its
``i_1 ... i_k`` coefficient, with no subtraction anywhere, so h can be tiny: the truncation
error is O(h**2) relative and vanishes below roundoff.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence

import numpy as np

from mcnet.algebra.multicomplex import array_module
from mcnet.tensor import Tensor, _complex_of, as_tensor, check_memory, tensor

# h**k is kept at 2**-400 (float64) or 2**-48 (float32), h at most 2**-24 (float32).
# Products of two perturbed parts (h**(2k), e.g. i_1 times i_1) then stay normal numbers
# (2**-800 >= 2**-1022, 2**-96 >= 2**-126): subnormal arithmetic is correct but measured
# 2.5-4x slower (mcnet's elementwise kernels, NumPy's complex ops, OpenBLAS's GEMMs).  In
# float32 that floor is close: with h = 2**-48 at order 1 the products of two imaginary parts
# of small activations went subnormal and a LeNet-5 H v took 52 ms instead of 45 with
# h = 2**-24, which gives the same H v (its O(h**2) = 2**-48 truncation is far below float32's
# roundoff).  Order 2 keeps 2**-24, small enough for the one-direction Taylor path
# (``algebra.symmetric.is_tiny``).  h itself is small enough that the truncation error is
# below roundoff (orders >= 4 in float32: at roundoff).  h is a power of two, so scaling by
# it is exact.
_TOP_COEFFICIENT_EXPONENT = {np.dtype(np.float64): 400, np.dtype(np.float32): 48}
_SMALLEST_STEP_EXPONENT = {np.dtype(np.float64): 400, np.dtype(np.float32): 24}
_LARGEST_STEP_EXPONENT = {np.dtype(np.float64): 26, np.dtype(np.float32): 12}


def default_step(dtype, order: int) -> float:
    """The default step h for derivatives of the given order: a power of two.

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


def perturb(x, directions: Sequence, h: float, one_direction: bool | None = None,
            out=None) -> Tensor:
    """The order-k tensor ``x + h (i_1 v_1 + ... + i_k v_k)``, k = len(directions).

    When every direction is the same (and 2 <= k <= 8) the tensor is held in the
    one-direction layout (``Tensor.one_direction``), which computes the same numbers with
    fewer products; ``one_direction=False`` forces the general layout, True requires the
    compact one. ``out``: an array to write the general layout's data into (shape
    ``(2**(k-1),) + x.shape``, complex of x's dtype, on x's device), which the result then
    views: a caller that perturbs points of one size over and over reuses one buffer
    instead of fresh pages (a 45 MB vector took 16 ms fresh, 6.5 ms reused).
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
        data = xp.zeros((k + 1,) + x.shape, dtype=x.dtype)
        data[0], data[1] = x.data[0], h * vs[0]
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
        raise ValueError(f"out must be a {xp.__name__} array of shape {shape} and dtype "
                         f"{np.dtype(dtype)}, got {type(out).__name__} {out.shape} {out.dtype}")
    else:
        data = out
        if k > 1:
            data[...] = 0
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


def directional(f: Callable[[Tensor], Tensor], x, directions: Sequence, h: float | None = None):
    """The k-th mixed directional derivative ``d^k f(x)[v_1, ..., v_k]``.

    Each direction is first scaled by a power of two to max-norm about 1 (multilinearity
    puts the scale back exactly), so the default step suits any direction.  Returns an
    array of f's output shape, or a float for scalar f.
    """
    x = as_tensor(x)
    k = len(directions)
    if k == 0:
        return _to_output(as_tensor(f(x)).real)
    _check_step(h)
    xp = array_module(x.data)
    scaled, exponent = [], 0
    for j, v in enumerate(directions):
        v = _direction(v, x, j)
        size = float(xp.max(xp.abs(v))) if v.size else 0.0
        if size == 0.0 or not math.isfinite(size):
            scaled.append(v)
            continue
        # ldexp, not v * 2.0**e: 2**e overflows a float for subnormal directions
        e = -round(math.log2(size))
        scaled.append(xp.ldexp(v, e))
        exponent -= e
    if h is None:
        h = default_step(x.dtype, k)
    y = as_tensor(f(perturb(x, scaled, h)), like=x)
    top = y.coef(tuple(range(1, k + 1)))
    return _to_output(xp.ldexp(top / h**k, exponent))


def derivative(f: Callable[[Tensor], Tensor], x, order: int = 1, h: float | None = None):
    """Elementwise ``d^order f / dx^order`` of an elementwise f at a scalar or array x.

    Where f(x) itself is infinite the derivative is an infinity (its sign from the step's
    result, or from f(x) where that is NaN: ``exp`` at 800 overflows at every order); where
    f(x) is NaN (``log`` of a negative number) it is NaN.  A step taken from such a point
    would otherwise read a meaningless finite number off the imaginary parts (``log`` at 0
    gave 4e120, the arctangent of the step over the step).
    """
    if isinstance(order, bool) or not isinstance(order, numbers.Integral):
        raise TypeError(f"order must be an integer, got {order!r} ({type(order).__name__})")
    if order < 0:
        raise ValueError(f"order must be >= 0, got {order}")
    _check_step(h)
    x = as_tensor(x)
    xp = array_module(x.data)
    ones = xp.ones(x.shape, dtype=x.dtype)
    result = directional(f, x, [ones] * order, h)
    if order == 0:
        return result
    with np.errstate(all="ignore"):
        value = as_tensor(f(x), like=x)
    if value.order or value.shape != x.shape:
        return result  # not an elementwise f: nothing to compare with
    value = value.data[0]
    if bool(xp.all(xp.isfinite(value))):
        return result
    d = xp.asarray(result, dtype=x.dtype)
    sign = xp.where(xp.isnan(d), xp.sign(value), xp.sign(d))
    fixed = xp.where(xp.isinf(value), xp.copysign(xp.asarray(np.inf, dtype=x.dtype), sign), d)
    fixed = xp.where(xp.isnan(value), xp.asarray(np.nan, dtype=x.dtype), fixed)
    return _to_output(fixed)


def _check_step(h) -> None:
    if h is None:
        return
    if isinstance(h, bool) or not isinstance(h, numbers.Real):
        raise TypeError(f"h must be a positive finite number, got {h!r} ({type(h).__name__})")
    if not (math.isfinite(h) and h > 0):
        raise ValueError(f"h must be a positive finite number, got {h!r}")


def _to_output(a):
    a = a if array_module(a) is np else a.get()
    return float(a) if np.ndim(a) == 0 else a


__all__ = ["default_step", "derivative", "directional", "perturb", "tensor"]
