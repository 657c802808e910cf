"""Function transforms of plain functions: grad, jvp, hvp, jacobian, hessian, jet.

Every number here is a directional derivative taken by ``mc.directional`` (its exact Taylor
mode along one direction, its checked multicomplex step for mixed ones), so each is exact to
roundoff for any ``f`` built from mcnet operations, elementwise or not, and nothing is taped.
It is forward mode: a transform costs passes of ``f`` at multicomplex points, n = x.size:

==============  ==========================================================================
``grad``        1 real pass (the scalar check) + n complex passes, one per coordinate
``jvp``         1 real + 1 complex pass
``hvp``         1 real + n bicomplex passes, ``d²f[e_j, v]`` for every coordinate j
``jacobian``    1 real + n complex passes
``hessian``     1 real + n (n + 1) / 2 bicomplex passes (the n diagonal ones along a single
                direction, in the cheaper one-direction layout)
``jet``         1 real + ``mc.directional`` along v at each order 1 ... ``order``
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
import numbers
from collections.abc import Callable

import numpy as np

from mcnet.derivatives import directional
from mcnet.tensor import Tensor, as_tensor

__all__ = ["grad", "hessian", "hvp", "jacobian", "jet", "jvp"]


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
    ``(order + 1, *f(x).shape)``.

    Row j is ``mc.directional(f, x, [v] * j)``: the exact Taylor mode, certified (or refused)
    at its own order, so every row meets ``mc.directional``'s contract.  One pass of the
    top order would carry the lower rows too, but with nilpotent units scaled for the top
    order a lower row can under- or overflow where its own scale would not (x**3 at 1e-50:
    its first derivative 3e-100 next to a step chosen for the fourth).
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
    rows = [value]
    for j in range(1, order + 1):
        rows.append(np.asarray(directional(f, x, [v] * j), dtype=x.dtype))
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


def _as_output(a: np.ndarray):
    """A NumPy array, or a NumPy scalar for shape ()."""
    return a[()] if a.ndim == 0 else a
