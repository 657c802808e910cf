"""Finite differences with Richardson extrapolation: a reference that shares no code with the
multicomplex step.

The mixed central difference ``sum_s (s_1 ... s_k) f(x + eps sum_j s_j v_j) / (2 eps)**k``
over the signs s in {-1, 1}**k keeps only the terms of f's Taylor series in which every
direction appears an odd number of times: it is ``d^k f(x)[v_1, ..., v_k]`` plus a series
in eps², so Richardson's rule over eps, eps/2, eps/4, ... removes the O(eps²), O(eps⁴), ...
terms.  The truncation is then O(eps**(2 levels)) and the roundoff about 2**(k levels)
machine-eps |f| / eps**k; the default eps balances the two, for an accuracy of ~1e-11
(first order) to ~1e-9 (fourth) relative where f is smooth on the stencil (no kink of ReLU,
max-pooling or a hinge within eps of x).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from mcnet.tensor import Tensor


def richardson(fn: Callable[[float], object], eps: float, levels: int = 3):
    """``d/dt fn(t)`` at ``t = 0`` (``fn`` returns a float or an array) from central
    differences at eps, eps/2, ..., eps/2**(levels-1), extrapolated."""
    return _extrapolate(lambda e: (np.asarray(fn(e)) - np.asarray(fn(-e))) / (2 * e), eps, levels)


def finite_difference(
    f: Callable,
    x,
    directions: Sequence,
    eps: float | None = None,
    levels: int = 3,
):
    """``d^k f(x)[v_1, ..., v_k]`` (k = len(directions)) by Richardson-extrapolated mixed
    central differences: 2**k levels evaluations of ``f`` at real points.

    ``f`` is evaluated at NumPy arrays of float64 whatever x's dtype, to be a reference: a
    function of mcnet operations (as for ``mc.directional``) or a plain NumPy function.
    Each direction is scaled to max-norm 1 (multilinearity puts the scale back), so ``eps``
    is a distance along it; the default ``eps = 2.2e-16 ** (1 / (2 levels + k))`` balances
    truncation against roundoff for a function that varies on a scale of 1.  Returns f's
    output shape, or a float.
    """
    x = np.asarray(x.numpy() if isinstance(x, Tensor) else x, dtype=np.float64)
    units, scale = [], 1.0
    for j, v in enumerate(directions):
        v = np.asarray(v, dtype=np.float64)
        if v.shape != x.shape:
            raise ValueError(f"direction {j} has shape {v.shape}; expected x's shape {x.shape}")
        size = float(np.max(np.abs(v))) if v.size else 0.0
        if size == 0.0:
            return _value(f, x) * 0.0
        units.append(v / size)
        scale *= size
    k = len(units)
    if k == 0:
        return _value(f, x)
    if eps is None:
        eps = float(np.finfo(np.float64).eps) ** (1.0 / (2 * levels + k))

    def mixed_difference(e: float):
        total = 0.0
        for signs in itertools.product((1.0, -1.0), repeat=k):
            point = x + e * sum(s * u for s, u in zip(signs, units))
            total = total + math.prod(signs) * _value(f, point)
        return total / (2 * e) ** k

    return _extrapolate(mixed_difference, eps, levels) * scale


def _extrapolate(quotient: Callable[[float], Any], eps: float, levels: int) -> float | np.ndarray:
    """Richardson's rule on a difference quotient whose error is a series in eps²."""
    if levels < 1:
        raise ValueError(f"levels must be >= 1, got {levels}")
    table = [quotient(eps / 2**j) for j in range(levels)]
    for m in range(1, levels):
        factor = 4.0**m
        table = [(factor * table[j + 1] - table[j]) / (factor - 1) for j in range(len(table) - 1)]
    result = table[0]
    return float(result) if np.ndim(result) == 0 else np.asarray(result)


def _value(f: Callable, point: np.ndarray):
    # a NumPy array suits both a function of mcnet operations (which take arrays) and a
    # plain NumPy implementation to compare with
    y = f(point)
    value = y.numpy() if isinstance(y, Tensor) else np.asarray(y, dtype=np.float64)
    return float(value) if value.ndim == 0 else np.array(value, dtype=np.float64)
