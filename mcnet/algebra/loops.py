"""Hand-written Numba loops for the CPU: the parts of elementwise functions (the sigmoid, tanh,
softplus and the sigmoid's backward) that NumPy's ufuncs cannot do in one pass.  The transcendental
functions run as NumPy's SIMD ufuncs on the real parts; the rest is one Numba pass.

Constants are passed in the arrays' own dtype (``one``): a Python float literal inside a
Numba function is a float64, and ``float32 * float64`` would compute in float64.
"""

from __future__ import annotations

import cmath
import math
from typing import Any

import numpy as np
from llvmlite import ir
from numba import int64, njit, types, uint64
from numba.extending import intrinsic, overload

# Options of every hand-written loop (also those of ``mcnet.nn.loops``).
JIT_OPTIONS: dict[str, Any] = {"cache": True, "nogil": True, "error_model": "numpy"}

# Inner loops run over uint64 counters on 1-D row views: with signed indices Numba guards
# every access against negative (wrap-around) indices, which keeps the loops from vectorising.


# --- exp, vectorised ----------------------------------------------------------------------
#
# NumPy's float64 exp is a scalar libm call per element on CPUs without AVX-512 (5 ns), its
# float32 exp a SIMD loop of up to 2.3 ulps.  Here x = k ln 2 + t, |t| <= ln(2) / 2, exp(t) by
# its Taylor polynomial (degree 13 in float64, 7 in float32: truncation below the last bit)
# and 2^k built in the exponent bits of two factors 2^k1 2^k2 (normal numbers, so a
# subnormal result is rounded once).  k comes as a float whose low mantissa bits hold it
# (the rounding constant's trick) and `_power_of_two` moves those bits into the exponent
# field by integer operations on the same register: no float-to-int conversion and no libm
# call, so one loop over the elements vectorises.  Within 1 ulp of mpmath's exp.

_ROUNDING64 = 6755399441055744.0  # 1.5 * 2**52: (y + it) - it rounds y to an integer
_ROUNDING32 = np.float32(12582912.0)  # 1.5 * 2**23


@intrinsic
def _power_of_two(typingctx, rounded):  # pragma: no cover - compiled
    # rounded = k + _ROUNDING (k in its low mantissa bits) -> 2^k, for normal 2^k: the bits
    # plus the exponent bias, shifted into the exponent field (the shift drops the high bits)
    width, mantissa, bias = (32, 23, 127) if rounded == types.float32 else (64, 52, 1023)

    def codegen(context, builder, signature, args):
        bits = ir.IntType(width)
        k = builder.add(builder.bitcast(args[0], bits), ir.Constant(bits, bias))
        return builder.bitcast(builder.shl(k, ir.Constant(bits, mantissa)), args[0].type)

    return rounded(rounded), codegen


def _exp(x):  # pragma: no cover - the body is _exp64 or _exp32, inlined into compiled loops
    raise NotImplementedError


def _exp64(x):  # pragma: no cover - compiled
    xc = x if x > -746.0 else -746.0  # exp(-746) rounds to 0, exp(710) overflows
    xc = xc if xc < 710.0 else 710.0
    k = (xc * 1.4426950408889634 + _ROUNDING64) - _ROUNDING64
    t = (xc - k * 6.93147180369123816490e-01) - k * 1.90821492927058770002e-10
    e = 1.0 / 6227020800.0
    e = e * t + 1.0 / 479001600.0
    e = e * t + 1.0 / 39916800.0
    e = e * t + 1.0 / 3628800.0
    e = e * t + 1.0 / 362880.0
    e = e * t + 1.0 / 40320.0
    e = e * t + 1.0 / 5040.0
    e = e * t + 1.0 / 720.0
    e = e * t + 1.0 / 120.0
    e = e * t + 1.0 / 24.0
    e = e * t + 1.0 / 6.0
    e = e * t + 0.5
    e = e * t + 1.0
    e = e * t + 1.0
    q = e if x == x else x  # NaN stays NaN
    k1 = (k * 0.5 + _ROUNDING64) - _ROUNDING64
    return (q * _power_of_two(k1 + _ROUNDING64)) * _power_of_two((k - k1) + _ROUNDING64)


def _exp32(x):  # pragma: no cover - compiled
    # as _exp64, in float32 throughout (ln 2 split as in Cephes' expf)
    rounding = _ROUNDING32
    xc = x if x > np.float32(-104.0) else np.float32(-104.0)
    xc = xc if xc < np.float32(89.0) else np.float32(89.0)
    k = (xc * np.float32(1.44269504) + rounding) - rounding
    t = (xc - k * np.float32(0.693359375)) - k * np.float32(-2.12194440e-4)
    e = np.float32(1.0 / 5040.0)
    e = e * t + np.float32(1.0 / 720.0)
    e = e * t + np.float32(1.0 / 120.0)
    e = e * t + np.float32(1.0 / 24.0)
    e = e * t + np.float32(1.0 / 6.0)
    e = e * t + np.float32(0.5)
    e = e * t + np.float32(1.0)
    e = e * t + np.float32(1.0)
    q = e if x == x else x
    k1 = (k * np.float32(0.5) + rounding) - rounding
    return (q * _power_of_two(k1 + rounding)) * _power_of_two((k - k1) + rounding)


@overload(_exp, jit_options={"fastmath": {"contract"}})
def _exp_of(x):  # pragma: no cover - compiled
    return _exp32 if x == types.float32 else _exp64


@njit(**JIT_OPTIONS, fastmath={"contract"})
def _exp_loop(a):  # pragma: no cover - compiled
    # in place: with a separate output, the vectoriser's overlap check fails for out = x
    # and the scalar loop runs
    for p in range(uint64(a.shape[0])):
        a[p] = _exp(a[p])


_BITS = {np.dtype(np.float32): np.int32, np.dtype(np.float64): np.int64}
# every bit of a float's integer view but the sign bit: bits & _MAGNITUDE are those of |x|
_MAGNITUDE = {rtype: bits(np.iinfo(bits).max) for rtype, bits in _BITS.items()}


def exp_in_place(a: np.ndarray) -> np.ndarray:
    """a = exp(a) for a real C-contiguous array (float32 and float64 by the loops above);
    returns a."""
    if a.dtype in _BITS and a.flags.c_contiguous:
        _exp_loop(a.reshape(-1))
    else:
        with np.errstate(over="ignore"):  # exp(x) = inf for large x, as the loops give
            np.exp(a, out=a)
    return a


# --- expm1 from exp, vectorised ----------------------------------------------------------
#
# NumPy's expm1 is a scalar libm call per element (11 ns in float32, 10 ns in float64 here),
# five times its float32 exp.  For |x| >= 1, e - 1 loses nothing (|e - 1| >= 1 - 1/e);
# below, the Taylor polynomial of degree 18 (float64) or 11 (float32), whose truncation is
# below half an ulp of |expm1 x| >= 0.63 |x|, by Horner's rule with its coefficients as
# constants (a loop over an array of coefficients per element would not vectorise); within
# 1.2 ulps of mpmath's expm1.  Like `_exp`, a scalar function the loops inline.


def _expm1(x, e):  # pragma: no cover - the body is _expm1_64 or _expm1_32, inlined
    raise NotImplementedError


def _expm1_64(x, e):  # pragma: no cover - compiled
    # e = exp(x); the coefficients 1/k! from k = 18 down, as their float64 roundings
    s = 1.0 / 6402373705728000.0
    s = s * x + 1.0 / 355687428096000.0
    s = s * x + 1.0 / 20922789888000.0
    s = s * x + 1.0 / 1307674368000.0
    s = s * x + 1.0 / 87178291200.0
    s = s * x + 1.0 / 6227020800.0
    s = s * x + 1.0 / 479001600.0
    s = s * x + 1.0 / 39916800.0
    s = s * x + 1.0 / 3628800.0
    s = s * x + 1.0 / 362880.0
    s = s * x + 1.0 / 40320.0
    s = s * x + 1.0 / 5040.0
    s = s * x + 1.0 / 720.0
    s = s * x + 1.0 / 120.0
    s = s * x + 1.0 / 24.0
    s = s * x + 1.0 / 6.0
    s = s * x + 1.0 / 2.0
    s = s * x + 1.0
    return x * s if abs(x) < 1.0 else e - 1.0


def _expm1_32(x, e):  # pragma: no cover - compiled
    # as _expm1_64, degree 11, in float32 throughout
    s = np.float32(1.0 / 39916800.0)
    s = s * x + np.float32(1.0 / 3628800.0)
    s = s * x + np.float32(1.0 / 362880.0)
    s = s * x + np.float32(1.0 / 40320.0)
    s = s * x + np.float32(1.0 / 5040.0)
    s = s * x + np.float32(1.0 / 720.0)
    s = s * x + np.float32(1.0 / 120.0)
    s = s * x + np.float32(1.0 / 24.0)
    s = s * x + np.float32(1.0 / 6.0)
    s = s * x + np.float32(1.0 / 2.0)
    s = s * x + np.float32(1.0)
    return x * s if abs(x) < np.float32(1.0) else e - np.float32(1.0)


@overload(_expm1, jit_options={"fastmath": {"contract"}})
def _expm1_of(x, e):  # pragma: no cover - compiled
    return _expm1_32 if x == types.float32 else _expm1_64


@njit(**JIT_OPTIONS)
def _exp_and_expm1_loop(x, em1):  # pragma: no cover - compiled
    for p in range(uint64(x.shape[0])):
        u = x[p]
        e = _exp(u)
        em1[p] = _expm1(u, e)
        x[p] = e


def exp_and_expm1(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(exp(x), expm1(x)) of a real array, each to full relative accuracy; x is overwritten
    by exp(x) and returned as the first."""
    if x.dtype not in _BITS or not x.flags.c_contiguous:
        em1 = np.expm1(x)
        return exp_in_place(x), em1
    em1 = np.empty_like(x)
    _exp_and_expm1_loop(x.reshape(-1), em1.reshape(-1))
    return x, em1


# --- the sigmoid on the CPU: one Numba pass, vectorised exp (and expm1) inlined ------------
#
# A fused kernel (``kernels``) evaluates exp per element with a scalar libm call and, for
# float32 data, in float64 (its literals are float64).  Here exp and expm1 are the vectorised
# code above, in the data's own precision, called per element inside each loop.


@njit(**JIT_OPTIONS, fastmath={"contract"})
def _sigmoid_real(x, one, out):  # pragma: no cover - compiled
    # 1 / (1 + exp(-x)): exp(-x) = inf for very negative x, and 1 / inf = 0
    for p in range(uint64(x.shape[0])):
        out[p] = one / (one + _exp(-x[p]))


@njit(**JIT_OPTIONS)
def _sigmoid_complex(z, tiny, one, unit, out):  # pragma: no cover - compiled
    # z: complex elements as real pairs [x, y]; e = exp(-|x|).  Tiny |y| (the derivative
    # case): sigmoid(x) + i y sigmoid'(x), the correctly rounded value (the dropped terms are
    # y^2 relative); otherwise exactly, by the complex exp.  The tiny formula goes first over
    # every element, without a branch (it vectorises); the others are then redone.
    n = uint64(z.shape[0] // 2)
    others = 0
    for p in range(n):
        x = z[2 * p]
        y = z[2 * p + 1]
        ep = _exp(-abs(x))
        r = one / (one + ep)
        out[2 * p] = r if x >= 0 else ep * r
        out[2 * p + 1] = y * (ep * r * r)
        others += abs(y) >= tiny
    if others == 0:
        return
    for p in range(n):
        x = z[2 * p]
        y = z[2 * p + 1]
        if abs(y) >= tiny:  # 1 / (1 + exp(-z)) for Re z >= 0, exp(z) / (1 + exp(z)) elsewhere
            zp = x + y * unit if x < 0 else -x - y * unit  # unit: i in the data's dtype
            big = cmath.exp(zp)
            q = one / (one + big)
            w = q if x >= 0 else big * q
            out[2 * p] = w.real
            out[2 * p + 1] = w.imag


@njit(**JIT_OPTIONS)
def _sigmoid_series2(s, tau, one, out):  # pragma: no cover - compiled
    # one direction, order 2: s = (s0, s1, s2); e = exp(-|s0|), em1 = expm1(-|s0|).  The
    # Taylor series [f, f' s1, f' s2 + f'' s1^2]; False (and out unfinished) unless every
    # |s1| <= tau and |s2| <= tau^2 (``symmetric.is_tiny``).  Branch-free, the check counted
    # on the way: the loop vectorises (an early exit or an if would keep it scalar).
    tau2 = tau * tau
    outside = 0
    for p in range(uint64(s.shape[1])):
        x, s1, s2 = s[0, p], s[1, p], s[2, p]
        outside += 1 - ((abs(s1) <= tau) & (abs(s2) <= tau2))  # NaN counts as outside
        u = -abs(x)
        ep = _exp(u)
        r = one / (one + ep)
        d1 = ep * r * r  # sigmoid'(x) = e / (1 + e)^2 for e = exp(-|x|)
        t = _expm1(u, ep) * r  # (e - 1) / (1 + e) = -tanh(|x| / 2)
        out[0, p] = r if x >= 0 else ep * r
        t = t if x >= 0 else -t  # 1 - 2 sigmoid(x) = -tanh(x / 2)
        f1 = s1 * d1
        out[1, p] = f1
        out[2, p] = s1 * (t * f1) + s2 * d1  # sigmoid'' = sigmoid' (1 - 2 sigmoid)
    return outside == 0


@njit(**JIT_OPTIONS)
def _sigmoid_backward(g, y, one, out):  # pragma: no cover - compiled
    for p in range(uint64(out.shape[0])):
        yp = y[p]
        out[p] = g[p] * (yp * (one - yp))


@njit(**JIT_OPTIONS)
def _sigmoid_backward_complex(g, y, one, out):  # pragma: no cover - compiled
    # the same on complex elements seen as real pairs: d = y (1 - y), out = g d
    for p in range(uint64(out.shape[0] // 2)):
        yr = y[2 * p]
        yi = y[2 * p + 1]
        ur = one - yr
        dr = yr * ur + yi * yi
        di = yi * ur - yr * yi
        gr = g[2 * p]
        gi = g[2 * p + 1]
        out[2 * p] = gr * dr - gi * di
        out[2 * p + 1] = gr * di + gi * dr


def flat_in_memory_order(data: np.ndarray):
    """``(C, *shape)`` data as ``(C, L)`` in memory order (a view when the components are
    the outermost axis of a dense buffer), and the axes that lay a result back out."""
    if data.flags.c_contiguous:  # the common case, without sorting the strides
        return data.reshape(len(data), -1), tuple(range(data.ndim))
    rest = sorted(range(1, data.ndim), key=lambda i: -data.strides[i])
    axes = (0, *rest)
    laid_out = data.transpose(axes)
    if not laid_out.flags.c_contiguous:
        axes = tuple(range(data.ndim))
        laid_out = np.ascontiguousarray(data)
    return laid_out.reshape(len(data), -1), axes


def from_flat(flat: np.ndarray, data_shape, axes) -> np.ndarray:
    if axes == tuple(range(len(axes))):  # memory order is the axes' order: no transpose
        return flat.reshape(data_shape)
    laid_out_shape = tuple(data_shape[a] for a in axes)
    return flat.reshape(laid_out_shape).transpose(np.argsort(axes))


# |Im z| below which sigmoid(x + iy) = sigmoid(x) + i y sigmoid'(x) is the correctly rounded
# value: the dropped terms are relative y^2/2 and y^2/6 (|s''/s| and |s'''/s'| are at most
# 1), below half an ulp: 2**-54 in float64, 2**-27 in float32.
_TINY = {np.float32: 2.0**-13, np.float64: 2.0**-27}


def sigmoid(data: np.ndarray) -> np.ndarray | None:
    """The sigmoid of order-0, order-1 or one-direction order-2 component data (C, *shape);
    None where this path does not apply (the caller takes the general one)."""
    real = data.dtype.kind == "f"
    if len(data) not in ((1, 3) if real else (1,)):
        return None
    flat, axes = flat_in_memory_order(data)
    rtype = np.float32 if data.dtype in (np.float32, np.complex64) else np.float64
    one = rtype(1)
    out = np.empty_like(flat)
    if real and len(data) == 1:
        _sigmoid_real(flat.reshape(-1), one, out.reshape(-1))
        return from_flat(out, data.shape, axes)
    if real:  # one direction, order 2
        tau = rtype(2.0**-8 * np.sqrt(np.finfo(rtype).eps))
        if not _sigmoid_series2(flat, tau, one, out):
            return None
        return from_flat(out, data.shape, axes)
    unit = flat.dtype.type(1j)
    _sigmoid_complex(flat[0].view(rtype), rtype(_TINY[rtype]), one, unit, out[0].view(rtype))
    return from_flat(out, data.shape, axes)


# --- tanh on the CPU, order 1: one Numba pass, vectorised exp and expm1 (above) inlined ---
#
# The fused kernel's order-1 tanh makes three scalar libm calls per element (tanh and cosh
# twice); here the exponentials are the vectorised code above.


@njit(**JIT_OPTIONS)
def _tanh_complex(z, tiny, minus_two, one, two, four, unit, out):  # pragma: no cover - compiled
    # z: complex elements as real pairs [x, y]; e = exp(-2|x|), em1 = expm1(-2|x|).  Tiny |y|
    # (the derivative case): tanh(x) + i y sech^2(x), the dropped terms y^2 relative, with
    # tanh|x| = -em1 / (2 + em1) and sech^2 x = 4 e / (1 + e)^2 (no cancellation for any x,
    # no overflow: e <= 1); otherwise exactly, by the complex tanh.  As _sigmoid_complex: the
    # tiny formula everywhere first, branch-free, then the others redone.
    n = uint64(z.shape[0] // 2)
    others = 0
    for p in range(n):
        x = z[2 * p]
        y = z[2 * p + 1]
        u = abs(x) * minus_two
        ep = _exp(u)
        m = _expm1(u, ep)
        t = -m / (two + m)
        d = one + ep
        out[2 * p] = t if x >= 0 else -t
        out[2 * p + 1] = y * (four * ep / (d * d))
        others += abs(y) >= tiny
    if others == 0:
        return
    for p in range(n):
        y = z[2 * p + 1]
        if abs(y) >= tiny:
            w = cmath.tanh(z[2 * p] + y * unit)  # unit: i in the data's dtype
            out[2 * p] = w.real
            out[2 * p + 1] = w.imag


def tanh(data: np.ndarray) -> np.ndarray | None:
    """tanh of order-1 (complex) component data (1, *shape); None elsewhere (the caller
    takes the general path)."""
    if len(data) != 1 or data.dtype.kind != "c":
        return None
    flat, axes = flat_in_memory_order(data)
    rtype = np.float32 if data.dtype == np.complex64 else np.float64
    out = np.empty_like(flat)
    _tanh_complex(
        flat[0].view(rtype),
        rtype(_TINY[rtype]),
        rtype(-2),
        rtype(1),
        rtype(2),
        rtype(4),
        flat.dtype.type(1j),
        out[0].view(rtype),
    )
    return from_flat(out, data.shape, axes)


# --- softplus on the CPU, orders 0 and 1 and one direction at order 2 ---------------------
#
# softplus x = max(x, 0) + log1p(e), e = exp(-|x|) <= 1.  NumPy's log1p is a scalar libm
# call per element (7 ns in float32, five times its SIMD log), so log1p(e) is taken as
# log(u) e / (u - 1), u = 1 + e, with e itself where u rounds to 1: u - 1 is exact, and the
# quotient corrects the rounding of u, leaving a few ulps (Goldberg 1991, theorem 4).


@njit(**JIT_OPTIONS)
def _softplus_parts(x, e, log_u, one, zero, value, slope):  # pragma: no cover - compiled
    # value = softplus(x), slope = sigmoid(x), from e = exp(-|x|) and log_u = log(1 + e)
    for p in range(uint64(x.shape[0])):
        xp = x[p]
        ep = e[p]
        u = one + ep
        tail = log_u[p] * (ep / (u - one)) if u != one else ep
        value[p] = (xp if xp > zero else zero) + tail
        r = one / u
        slope[p] = r if xp >= zero else ep * r


@njit(**JIT_OPTIONS)
def _softplus_complex(y, tiny, value, slope, out):  # pragma: no cover - compiled
    # z = x + i y with tiny |y| (the derivative case): softplus(x) + i y sigmoid(x), the
    # dropped terms y^2 relative; False unless every |y| < tiny (branch-free, counted)
    others = 0
    for p in range(uint64(value.shape[0])):
        yp = y[p]
        out[2 * p] = value[p]
        out[2 * p + 1] = yp * slope[p]
        others += abs(yp) >= tiny  # NaN counts as tiny here: it propagates through the product
    return others == 0


@njit(**JIT_OPTIONS)
def _softplus_series2(s, tau, value, slope, out):  # pragma: no cover - compiled
    # one direction, order 2: [f, f' s1, f' s2 + f'' s1^2], f' = sigmoid, f'' = f' (1 - f');
    # False unless every |s1| <= tau and |s2| <= tau^2 (as _sigmoid_series2)
    tau2 = tau * tau
    outside = 0
    for p in range(uint64(s.shape[1])):
        s1, s2 = s[1, p], s[2, p]
        outside += 1 - ((abs(s1) <= tau) & (abs(s2) <= tau2))
        d1 = slope[p]
        d2 = d1 - d1 * d1
        out[0, p] = value[p]
        out[1, p] = s1 * d1
        out[2, p] = s2 * d1 + s1 * (s1 * d2)
    return outside == 0


def softplus(data: np.ndarray) -> np.ndarray | None:
    """softplus of order-0, order-1 (tiny imaginary parts) or one-direction order-2 (tiny
    s_1, s_2) component data (C, *shape); None elsewhere (the caller takes the general path)."""
    real = data.dtype.kind == "f"
    if len(data) not in ((1, 3) if real else (1,)):
        return None
    flat, axes = flat_in_memory_order(data)
    rtype = np.float32 if data.dtype in (np.float32, np.complex64) else np.float64
    x = flat[0] if real else np.ascontiguousarray(flat[0].real)
    e = np.abs(x)
    np.negative(e, out=e)
    exp_in_place(e)
    log_u = e + rtype(1)
    np.log(log_u, out=log_u)
    value, slope = np.empty_like(x), np.empty_like(x)
    _softplus_parts(x, e, log_u, rtype(1), rtype(0), value, slope)
    if real and len(data) == 1:
        return from_flat(value[None], data.shape, axes)
    out = np.empty_like(flat)
    if real:
        tau = rtype(2.0**-8 * np.sqrt(np.finfo(rtype).eps))
        done = _softplus_series2(flat, tau, value, slope, out)
    else:
        y = np.ascontiguousarray(flat[0].imag)
        done = _softplus_complex(y, rtype(_TINY[rtype]), value, slope, out[0].view(rtype))
    return from_flat(out, data.shape, axes) if done else None


def _one_layout(grad: np.ndarray, y: np.ndarray):
    """(grad, y, axes) as flat ``(1, L)`` arrays in their common memory order, for order-0 or
    order-1 data of one shape, dtype and layout (the one component's stride does not
    matter); None otherwise."""
    if len(grad) != 1 or len(y) != 1 or grad.dtype != y.dtype or grad.shape != y.shape:
        return None
    if grad.strides[1:] != y.strides[1:]:
        return None
    flat_g, axes = flat_in_memory_order(grad)
    flat_y, axes_y = flat_in_memory_order(y)
    return (flat_g, flat_y, axes) if axes == axes_y else None


def sigmoid_backward(grad: np.ndarray, y: np.ndarray) -> np.ndarray | None:
    """grad * (y * (1 - y)) in one pass for order-0 or order-1 data of one layout and dtype;
    None otherwise."""
    laid_out = _one_layout(grad, y)
    if laid_out is None:
        return None
    flat_g, flat_y, axes = laid_out
    one = np.float32(1) if y.dtype in (np.float32, np.complex64) else np.float64(1)
    out = np.empty_like(flat_g)
    if y.dtype.kind == "c":
        real = type(one)
        _sigmoid_backward_complex(flat_g[0].view(real), flat_y[0].view(real), one,
                                  out[0].view(real))  # fmt: skip
    else:
        _sigmoid_backward(flat_g[0], flat_y[0], one, out[0])
    return from_flat(out, grad.shape, axes)


@njit(**JIT_OPTIONS)
def _negative_branch_exp(x):  # pragma: no cover - compiled
    # exp(x) where x <= 0 and exp(0) elsewhere, as mc.elu takes it; NaN - NaN keeps a NaN
    # (x - x, not x * 0: a literal would make float32 arithmetic float64)
    return _exp(x if x <= 0 else x - x)


@njit(**JIT_OPTIONS)
def _elu(x, alpha, one, out, positive):  # pragma: no cover - compiled
    for p in range(uint64(x.shape[0])):
        v = x[p]
        c = v > 0
        positive[p] = c
        out[p] = v if c else alpha * (_negative_branch_exp(v) - one)


@njit(**JIT_OPTIONS)
def _elu_complex(z, tiny, alpha, one, out, positive):  # pragma: no cover - compiled
    # z: complex elements as real pairs [x, y]; m = exp(x) where x <= 0.  On the negative
    # branch alpha (exp(z) - 1) with exp(z) = m (cos y + i sin y) = m (1 + i y) for tiny |y|
    # (the derivative case: the dropped terms are y^2 relative, below half an ulp, as in
    # _sigmoid_complex); that formula goes first over every element, branch-free, and the
    # others are then redone with cos and sin (NumPy's complex exp computes them for every
    # element, where in a derivative pass every y is tiny).
    n = uint64(positive.shape[0])
    others = 0
    for p in range(n):
        x = z[2 * p]
        y = z[2 * p + 1]
        mp = _negative_branch_exp(x)
        keep = x > 0
        positive[p] = keep
        out[2 * p] = x if keep else alpha * (mp - one)
        out[2 * p + 1] = y if keep else alpha * (mp * y)
        others += (abs(y) >= tiny) & ~keep
    if others == 0:
        return
    for p in range(n):
        y = z[2 * p + 1]
        if abs(y) >= tiny and not positive[p]:
            mp = _negative_branch_exp(z[2 * p])
            out[2 * p] = alpha * (mp * math.cos(y) - one)
            out[2 * p + 1] = alpha * (mp * math.sin(y))


@njit(**JIT_OPTIONS)
def _elu_order2(s, alpha, bound, one, multicomplex, out, positive):  # pragma: no cover
    # one direction, order 2: s = (s0, s1, s2), e = exp(s0) where s0 <= 0; s itself where
    # s0 > 0, else alpha (exp(s) - 1).  Nilpotent units: exp(s) = e [1, s1, s2 + s1^2].
    # Multicomplex ones (i1^2 = i2^2 = -1, (i1 i2)^2 = 1): exp(s1 (i1 + i2)) = (c + i1 r)
    # (c + i2 r), c = cos s1, r = sin s1, and exp(s2 i1 i2) = ch + i1 i2 sh, ch = cosh s2,
    # sh = sinh s2, so exp(s) = e [c^2 ch + r^2 sh, c r (ch - sh), r^2 ch + c^2 sh], the four
    # by their series to the 4th and 5th powers.  False (out unfinished) unless every
    # |s1|, |s2| <= bound, where the series' truncation is below a quarter of eps; counted
    # branch-free (as in _sigmoid_series2) so that the loop vectorises.
    outside = 0
    half, sixth = one / 2, one / 6
    inv24, inv120 = one / 24, one / 120
    for p in range(uint64(s.shape[1])):
        x, s1, s2 = s[0, p], s[1, p], s[2, p]
        outside += 1 - ((abs(s1) <= bound) & (abs(s2) <= bound))  # NaN counts as outside
        if multicomplex:
            q1, q2 = s1 * s1, s2 * s2
            c = one - q1 * (half - q1 * inv24)
            r = s1 * (one - q1 * (sixth - q1 * inv120))
            ch = one + q2 * (half + q2 * inv24)
            sh = s2 * (one + q2 * (sixth + q2 * inv120))
            c2, r2 = c * c, r * r
            e0, e1, e2 = c2 * ch + r2 * sh, (c * r) * (ch - sh), r2 * ch + c2 * sh
        else:
            e0, e1, e2 = one, s1, s2 + s1 * s1
        keep = x > 0
        positive[p] = keep
        ep = _negative_branch_exp(x)
        out[0, p] = x if keep else alpha * (ep * e0 - one)
        out[1, p] = s1 if keep else alpha * (ep * e1)
        out[2, p] = s2 if keep else alpha * (ep * e2)
    return outside == 0


# |s1| and |s2| up to which _elu_order2's series are exact to roundoff, by real dtype
_ELU_ORDER2_BOUND = {np.float32: np.float32(2.0**-3), np.float64: 2.0**-8}


@njit(**JIT_OPTIONS)
def _elu_backward(g, positive, y, alpha, out):  # pragma: no cover - compiled
    # complex elements as real pairs: g where positive, else g (y + alpha), by selects (no
    # branch, no complex type: the loop vectorises)
    for p in range(uint64(positive.shape[0])):
        gr, gi = g[2 * p], g[2 * p + 1]
        yr, yi = y[2 * p] + alpha, y[2 * p + 1]
        keep = positive[p]
        out[2 * p] = gr if keep else gr * yr - gi * yi
        out[2 * p + 1] = gi if keep else gr * yi + gi * yr


@njit(**JIT_OPTIONS)
def _elu_backward_real(g, positive, y, alpha, one, out):  # pragma: no cover - compiled
    # g * 1 is g to the bit: a select of the factor, not a branch, so the loop vectorises
    for p in range(uint64(g.shape[0])):
        out[p] = g[p] * (one if positive[p] else y[p] + alpha)


def elu(data: np.ndarray, alpha: float, nilpotent: bool = False,
        ) -> tuple[np.ndarray, np.ndarray] | None:  # fmt: skip
    """ELU of order-0 or order-1 component data ``(1, *shape)`` or one-direction order-2
    data ``(3, *shape)`` (real; with ``nilpotent`` units, else multicomplex ones) of any
    dense layout: one pass for x where Re x > 0, else alpha (exp(x) - 1) (the vectorised
    exp of the real parts' negative branch inlined), and the mask Re x > 0 (``*shape``,
    in the data's layout); None otherwise."""
    if not isinstance(data, np.ndarray) or data.dtype.kind not in "fc":
        return None
    if len(data) not in ((1, 3) if data.dtype.kind == "f" else (1,)):
        return None
    flat, axes = flat_in_memory_order(data)
    rtype = data.real.dtype.type
    out = np.empty_like(flat)
    positive = np.empty(flat.shape[1:], dtype=np.bool_)
    x = flat[0]
    if data.dtype.kind == "c":
        _elu_complex(x.view(rtype), rtype(_TINY[rtype]), rtype(alpha), rtype(1),
                     out[0].view(rtype), positive)  # fmt: skip
    elif len(data) == 3:  # one direction, order 2
        bound = rtype(np.inf) if nilpotent else _ELU_ORDER2_BOUND[rtype]
        if not _elu_order2(flat, rtype(alpha), bound, rtype(1), not nilpotent, out, positive):
            return None
    else:
        _elu(x, rtype(alpha), rtype(1), out[0], positive)
    mask = from_flat(positive[None], (1, *data.shape[1:]), axes)[0]
    return from_flat(out, data.shape, axes), mask


def elu_backward(
    grad: np.ndarray, positive: np.ndarray, y: np.ndarray, alpha: float
) -> np.ndarray | None:
    """grad where ``positive``, else grad * (y + alpha), in one pass for order-0 or order-1
    data of one layout and dtype; None otherwise."""
    laid_out = _one_layout(grad, y)
    if laid_out is None or positive.shape != grad.shape[1:]:
        return None
    flat_g, flat_y, axes = laid_out
    mask = positive.transpose([a - 1 for a in axes[1:]])
    if not mask.flags.c_contiguous:
        return None
    out = np.empty_like(flat_g)
    rtype = y.real.dtype.type
    if y.dtype.kind == "f":
        _elu_backward_real(flat_g[0], mask.reshape(-1), flat_y[0], rtype(alpha), rtype(1), out[0])
    else:
        _elu_backward(flat_g[0].view(rtype), mask.reshape(-1), flat_y[0].view(rtype),
                      rtype(alpha), out[0].view(rtype))  # fmt: skip
    return from_flat(out, grad.shape, axes)


# --- the parts of complex GEMM operands (``gemm``) -------------------------------------------


@njit(**JIT_OPTIONS)
def _split_parts(pairs, real, imag, want_imag, magnitude):  # pragma: no cover - compiled
    # pairs: a C-contiguous complex array's elements as the integer bits of real pairs
    # [x, y]; real (and, with want_imag, imag) get x and y.  Returns the largest bits of
    # |x| and |y| (the sign bit cleared by ``magnitude``): for floats of one sign the bits
    # order as the values do, and NaN and inf sort last.  Integer maxima vectorise, where
    # float ones (which must mind NaN) keep the loop scalar (3x slower in float32).
    largest_x = pairs.dtype.type(0)
    largest_y = pairs.dtype.type(0)
    for p in range(uint64(real.shape[0])):
        x = pairs[2 * p]
        y = pairs[2 * p + 1]
        real[p] = x
        if want_imag:
            imag[p] = y
        largest_x = max(largest_x, x & magnitude)
        largest_y = max(largest_y, y & magnitude)
    return largest_x, largest_y


def split_parts(z: np.ndarray, want_imag: bool = True):
    """(real part, imaginary part or None, max |real part|, max |imaginary part|) of a 2-D
    complex array, the parts as contiguous real arrays of z's layout (C or Fortran order,
    else C), from one pass.  A part that is not finite reads as a maximum of NaN (both)."""
    transposed = not z.flags.c_contiguous and z.flags.f_contiguous
    source = np.ascontiguousarray(z.T if transposed else z)
    rtype = source.real.dtype
    real = np.empty(source.shape, dtype=rtype)
    imag = np.empty(source.shape, dtype=rtype) if want_imag else real
    largest_x, largest_y = _split_pairs(source.reshape(-1), real.reshape(-1), imag.reshape(-1),
                                        want_imag)  # fmt: skip
    if transposed:
        real, imag = real.T, imag.T
    return real, imag if want_imag else None, largest_x, largest_y


def _split_pairs(pairs: np.ndarray, real: np.ndarray, imag: np.ndarray,
                 want_imag: bool) -> tuple[float, float]:  # fmt: skip
    """``_split_parts`` on 1-D C-contiguous arrays: the largest |real part| and |imaginary
    part| as floats, both NaN when a part is not finite."""
    rtype = real.dtype
    bits = _BITS[rtype]
    largest = _split_parts(pairs.view(bits), real.view(bits), imag.view(bits), want_imag,
                           _MAGNITUDE[rtype])  # fmt: skip
    largest_x, largest_y = (float(m) for m in np.array(largest, dtype=bits).view(rtype))
    if not (math.isfinite(largest_x) and math.isfinite(largest_y)):
        return math.nan, math.nan
    return largest_x, largest_y


@njit(**JIT_OPTIONS)
def _complex_step(x, v, h, pairs):  # pragma: no cover - compiled
    # pairs: a complex array's elements as real pairs [x, h v]
    for p in range(uint64(x.shape[0])):
        pairs[2 * p] = x[p]
        pairs[2 * p + 1] = v[p] * h


def complex_step(x: np.ndarray, v: np.ndarray, h: float, out: np.ndarray) -> bool:
    """``out = x + i h v`` in one pass for real arrays x, v and a complex ``out`` of their
    shape, all C-contiguous (two strided NumPy writes take 4x as long in float32); False,
    with nothing written, when the layouts do not allow it.  ``v * h`` is rounded as
    NumPy's ``multiply`` rounds it."""
    if not (
        x.flags.c_contiguous
        and v.flags.c_contiguous
        and out.flags.c_contiguous
        and x.dtype == v.dtype == out.real.dtype
        and x.shape == v.shape == out.shape
    ):
        return False
    _complex_step(x.reshape(-1), v.reshape(-1), x.dtype.type(h),
                  out.reshape(-1).view(x.dtype))  # fmt: skip
    return True


def split_order_one(data: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Complex order-1 component data ``(1, *shape)`` in the one-direction layout ``(2,
    *shape)`` (real part, i-part: the same numbers, ``algebra.symmetric``), its axes in the
    same memory order, with the largest |real part| and |i-part| (both NaN when a part is
    not finite), in one pass."""
    flat, axes = flat_in_memory_order(data)
    out = np.empty((2, flat.shape[1]), dtype=flat.real.dtype)
    largest_real, largest_imag = _split_pairs(flat[0], out[0], out[1], True)
    return from_flat(out, (2, *data.shape[1:]), axes), largest_real, largest_imag


def join_order_one(data: np.ndarray) -> np.ndarray:
    """The inverse of `split_order_one`: one-direction order-1 data ``(2, *shape)`` as
    complex ``(1, *shape)``, in one pass."""
    flat, axes = flat_in_memory_order(data)
    rtype = flat.dtype
    out = np.empty((1, flat.shape[1]), dtype=np.result_type(rtype, np.complex64))
    _complex_step(flat[0], flat[1], rtype.type(1), out[0].view(rtype))  # v * 1 is v
    return from_flat(out, (1, *data.shape[1:]), axes)


# --- where on the CPU: NumPy's where branches per element (about 4 ns each) --------------


@njit(**JIT_OPTIONS)
def _select_scalar(cond, x, y, out):  # pragma: no cover - compiled
    for p in range(uint64(x.shape[0])):
        out[p] = x[p] if cond[p] else y


@njit(**JIT_OPTIONS)
def _select(cond, x, y, out):  # pragma: no cover - compiled
    for p in range(uint64(x.shape[0])):
        out[p] = x[p] if cond[p] else y[p]


# Complex elements are selected as the bits of their real pairs, ANDed with 0 or all ones: a
# select on complex elements (or on strided pairs) does not vectorise, and its branches on
# random signs were most of the time (4.5 ns an element).


@njit(**JIT_OPTIONS)
def _masked_pairs(cond, bits, out_bits):  # pragma: no cover - compiled
    # pair p where cond[p], else +0
    for p in range(uint64(cond.shape[0])):
        keep = -int64(cond[p])
        out_bits[2 * p] = bits[2 * p] & keep
        out_bits[2 * p + 1] = bits[2 * p + 1] & keep


@njit(**JIT_OPTIONS)
def _positive_part(x, zero, out, positive):  # pragma: no cover - compiled
    for p in range(uint64(x.shape[0])):
        v = x[p]
        c = v > zero
        positive[p] = c
        out[p] = v if c else zero


@njit(**JIT_OPTIONS)
def _positive_part_pairs(z, bits, zero, out_bits, positive):  # pragma: no cover - compiled
    # z and bits: the same pairs as floats and as integers; decided on the real part
    for p in range(uint64(positive.shape[0])):
        c = z[2 * p] > zero
        positive[p] = c
        keep = -int64(c)
        out_bits[2 * p] = bits[2 * p] & keep
        out_bits[2 * p + 1] = bits[2 * p + 1] & keep


def _as_bits(a: np.ndarray) -> np.ndarray:
    """The flat real pairs of a C-contiguous complex array, as integers of their size."""
    return a.reshape(-1).view(_BITS[a.real.dtype])


def relu(data) -> tuple[np.ndarray, np.ndarray] | None:
    """ReLU of order-0 or order-1 component data ``(1, *shape)`` in one pass: the result's
    data and the mask Re x > 0 (``*shape``); None unless the data is a C-contiguous NumPy
    array (the caller takes the general path)."""
    if not isinstance(data, np.ndarray) or len(data) != 1 or data.dtype.kind not in "fc":
        return None
    if not data.flags.c_contiguous:
        return None
    out = np.empty_like(data)
    positive = np.empty(data.shape[1:], dtype=np.bool_)
    flat_positive = positive.reshape(-1)
    if data.dtype.kind == "f":
        _positive_part(data.reshape(-1), data.dtype.type(0), out.reshape(-1), flat_positive)
        return out, positive
    rtype = data.real.dtype
    _positive_part_pairs(data.reshape(-1).view(rtype), _as_bits(data), rtype.type(0),
                         _as_bits(out), flat_positive)  # fmt: skip
    return out, positive


def _is_positive_zero(y) -> bool:
    """y is +0 in both parts (all bits zero), not -0."""
    return y == 0 and not np.signbit(np.real(y)) and not np.signbit(np.imag(y))


def select(cond: np.ndarray, x, y) -> np.ndarray | None:
    """``np.where(cond, x, y)`` in one branch-free pass, for C-contiguous NumPy arrays of one
    shape and dtype (y may be a 0-d array or a number); None otherwise."""
    if not isinstance(x, np.ndarray) or x.dtype.kind not in "fc" or x.size < 1024:
        return None
    if cond.shape != x.shape or cond.dtype != np.bool_:
        return None
    if not (x.flags.c_contiguous and cond.flags.c_contiguous):
        return None
    if np.result_type(x, y) != x.dtype:  # NumPy's where would promote
        return None
    out = np.empty_like(x)
    if np.ndim(y) == 0 and x.dtype.kind == "c" and _is_positive_zero(y):
        _masked_pairs(cond.reshape(-1), _as_bits(x), _as_bits(out))
        return out
    if np.ndim(y) == 0:
        _select_scalar(cond.reshape(-1), x.reshape(-1), x.dtype.type(y), out.reshape(-1))
        return out
    if y.shape != x.shape or y.dtype != x.dtype or not y.flags.c_contiguous:
        return None
    _select(cond.reshape(-1), x.reshape(-1), y.reshape(-1), out.reshape(-1))
    return out
