"""Function transforms of plain functions: grad, jvp, hvp, jacobian, hessian, jet.

Every number here is a multicomplex-step directional derivative taken by
``mc.directional`` (its step, its scaling of the directions, its checks), so each is exact to
roundoff for any ``f`` built from mcnet operations, elementwise or not, and nothing is taped.
It is forward mode: a transform costs passes of ``f`` at multicomplex points, n = x.size:

==============  ==========================================================================
``grad``        1 real pass (the scalar check) + n complex passes, one per coordinate
``jvp``         1 real + 1 complex pass
``hvp``         1 real + n bicomplex passes, ``d²f[e_j, v]`` for every coordinate j
``jacobian``    1 real + n complex passes
``hessian``     1 real + n (n + 1) / 2 bicomplex passes (the n diagonal ones along a single
                direction, in the cheaper one-direction layout)
``jet``         1 real + 1 pass of order ``order`` along v
==============  ==========================================================================

A complex pass of ``f`` costs a few real ones, so ``grad`` costs O(n) evaluations of ``f``
where reverse mode would cost O(1): for a network's loss take the gradient and ``H v``
from the modules' backward (``mc.Objective``) instead, which is one pass whatever n is.

The value ``f(x)`` is always taken from the real pass: the real part of a perturbed pass
carries an O(h²) term (``-k h² d²f[v, v] / 2`` at order k), below roundoff unless f(x)
itself is that small.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable

import numpy as np

from mcnet.algebra.multicomplex import array_module
from mcnet.derivatives import directional
from mcnet.tensor import Tensor, as_tensor

__all__ = ["grad", "hessian", "hvp", "jacobian", "jet", "jvp"]

# The truncation a row of a jet may carry: float64's roundoff; in float32 the default steps
# put the top order's own truncation at roundoff already, and a hundredth of float32's
# 1e-4 accuracy is kept instead.
_JET_TOLERANCE = {np.dtype(np.float64): float(np.finfo(np.float64).eps),
                  np.dtype(np.float32): 1e-6}


def grad(f: Callable[..., Tensor]) -> Callable[..., np.ndarray]:
    """The function ``x -> ∇f(x)`` (an array of x's shape) of a scalar-valued ``f``.

    Further arguments of the returned function are passed on to ``f`` and are not
    differentiated: ``grad(loss)(w, data)`` is the gradient in ``w``.
    """

    @functools.wraps(f)
    def gradient(x, *args, **kwargs) -> np.ndarray:
        x = _point(x, "grad")
        g = functools.partial(_call, f, args, kwargs) if args or kwargs else f
        _scalar_value(g, x, "grad")
        partials = [directional(g, x, [e]) for e in _basis(x)]
        return _as_output(np.reshape(np.asarray(partials, dtype=x.dtype), x.shape))

    return gradient


def jvp(f: Callable[[Tensor], Tensor], x, v) -> tuple[np.ndarray, np.ndarray]:
    """``(f(x), J v)``: the value and the derivative of ``f`` along ``v``, both of f's
    output shape."""
    x = _point(x, "jvp")
    v = _tangent(v, x, "jvp")
    return _value(f, x), _as_output(np.asarray(directional(f, x, [v]), dtype=x.dtype))


def hvp(f: Callable[[Tensor], Tensor], x, v) -> np.ndarray:
    """``H v`` of a scalar-valued ``f`` at ``x`` (x's shape): entry j is ``d²f[e_j, v]``."""
    x = _point(x, "hvp")
    v = _tangent(v, x, "hvp")
    _scalar_value(f, x, "hvp")
    columns = [directional(f, x, [e, v]) for e in _basis(x)]
    return _as_output(np.reshape(np.asarray(columns, dtype=x.dtype), x.shape))


def jacobian(f: Callable[[Tensor], Tensor], x) -> np.ndarray:
    """The Jacobian of ``f`` at ``x``, an array of shape ``(*f(x).shape, *x.shape)``."""
    x = _point(x, "jacobian")
    out_shape = np.shape(_value(f, x))
    columns = [np.asarray(directional(f, x, [e]), dtype=x.dtype) for e in _basis(x)]
    if not columns:
        return np.zeros(out_shape + x.shape, dtype=x.dtype)
    return _as_output(np.stack(columns, axis=-1).reshape(out_shape + x.shape))


def hessian(f: Callable[[Tensor], Tensor], x) -> np.ndarray:
    """The Hessian of a scalar-valued ``f`` at ``x``, of shape ``(*x.shape, *x.shape)``;
    symmetric by construction (each mixed partial is computed once)."""
    x = _point(x, "hessian")
    _scalar_value(f, x, "hessian")
    basis = list(_basis(x))
    n = len(basis)
    h = np.empty((n, n), dtype=x.dtype)
    for i in range(n):
        for j in range(i, n):
            h[i, j] = h[j, i] = directional(f, x, [basis[i], basis[j]])
    return _as_output(h.reshape(x.shape + x.shape))


def jet(f: Callable[[Tensor], Tensor], x, v, order: int) -> np.ndarray:
    """``f(x), df[v], d²f[v, v], ..., d^order f[v, ..., v]`` stacked: shape
    ``(order + 1, *f(x).shape)``, the derivatives all from one pass of order ``order``.

    At ``x + s (i_1 + ... + i_order) v`` the coefficient of any product of j units is
    ``s**j d^j f[v, ..., v]`` plus a truncation of relative size about ``order * s² *
    d^(j+2) f / d^j f`` (s is ``mc.directional``'s step for the top order: 2**-50 at order 8
    in float64, 2**-200 at order 2), far below roundoff for ordinary functions, so every row
    is read off the one pass.  Rows below ``order - 1`` are checked against that bound with
    the pass's own higher rows and, where it fails, retaken by ``mc.directional`` at their
    own order; row ``order - 1`` (needing the unknown ``d^(order+1) f``) and the top row
    carry the top order's truncation as ``mc.directional`` does.
    """
    if isinstance(order, bool) or not isinstance(order, numbers.Integral):
        raise TypeError(f"order must be an integer, got {order!r} ({type(order).__name__})")
    if order < 0:
        raise ValueError(f"order must be >= 0, got {order}")
    x = _point(x, "jet")
    v = _tangent(v, x, "jet")
    if not np.all(np.isfinite(v)):
        raise ValueError("mc.jet needs a finite direction v; it holds NaN or infinity")
    value = np.asarray(_value(f, x), dtype=x.dtype)
    if order == 0 or not np.any(v):
        # derivatives along the zero direction are zero, whatever the order
        return np.stack([value] + [np.zeros_like(value)] * order)
    evaluations = []

    def recorded(point: Tensor) -> Tensor:
        y = f(point)
        evaluations.append((point, y))
        return y

    directional(recorded, x, [v] * order)
    # The step is the one mc.directional chose (with its scaling of v), read back from
    # the point where it evaluated f: the i_1 coefficient there is s v.
    point, y = evaluations[-1]
    y = as_tensor(y, like=point)
    largest = np.unravel_index(np.argmax(np.abs(v)), v.shape)
    step = float(_host(point.coef((1,)))[largest]) / float(v[largest])
    # s = fraction * 2**exponent: dividing by the power of two is exact and cannot overflow
    fraction, exponent = math.frexp(step)
    rows = [value]
    for j in range(1, order + 1):
        coefficient = _host(y.coef(tuple(range(1, j + 1))))
        with np.errstate(over="ignore"):  # a derivative beyond the dtype's range is infinite
            rows.append(np.ldexp(coefficient / fraction**j, -exponent * j).astype(x.dtype))
    # Row j carries -s² ((order - j) / 2 + j / 6) d^(j+2) f[v, ...] from the units that
    # square to -1; where the pass's own row j + 2 says that this exceeds the tolerance of
    # row j (derivatives that grow very fast, as x**3 at x = 1e-100), row j is taken by
    # mc.directional at its own step instead.
    tolerance = _JET_TOLERANCE[np.dtype(x.dtype)]
    for j in range(order - 2, 0, -1):
        with np.errstate(over="ignore", invalid="ignore"):
            truncation = np.ldexp(np.abs(rows[j + 2]) * fraction**2, 2 * exponent)
            truncation = truncation * ((order - j) / 2 + j / 6)
        if np.any(truncation > tolerance * np.abs(rows[j])):
            rows[j] = np.asarray(directional(f, x, [v] * j), dtype=x.dtype)
    return np.stack([np.broadcast_to(r, value.shape) for r in rows])


# --- helpers --------------------------------------------------------------------------------
def _call(f, args, kwargs, x):
    return f(x, *args, **kwargs)


def _point(x, name: str) -> Tensor:
    x = as_tensor(x)
    if x.order:
        raise ValueError(f"mc.{name} needs a real point x (order 0), got an order-{x.order} tensor")
    return x


def _tangent(v, x: Tensor, name: str) -> np.ndarray:
    v = np.asarray(v.numpy() if isinstance(v, Tensor) else v, dtype=x.dtype)
    if v.shape != x.shape:
        raise ValueError(f"mc.{name}: v has shape {v.shape}; expected x's shape {x.shape}")
    return v


def _basis(x: Tensor):
    """The unit arrays e_j of x's shape, in C order (fresh arrays: a pair of them may be
    passed to one call)."""
    for j in range(x.size):
        e = np.zeros(x.size, dtype=x.dtype)
        e[j] = 1
        yield e.reshape(x.shape)


def _value(f, x: Tensor):
    return _as_output(np.asarray(directional(f, x, []), dtype=x.dtype))


def _scalar_value(f, x: Tensor, name: str) -> None:
    shape = np.shape(_value(f, x))
    if shape != ():
        raise ValueError(
            f"mc.{name} needs a scalar-valued f, but f(x) has shape {shape}; "
            "use mc.jacobian (or mc.jvp) for a function with array values"
        )


def _host(a) -> np.ndarray:
    return np.asarray(a) if array_module(a) is np else a.get()


def _as_output(a: np.ndarray):
    """A NumPy array, or a NumPy scalar for shape ()."""
    return a[()] if a.ndim == 0 else a
