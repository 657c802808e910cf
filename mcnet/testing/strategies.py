"""Hypothesis strategies for mcnet: points of a domain, directions, multicomplex tensors.

Importing this module registers the hypothesis profile ``"mcnet"``: no deadline (the first
call at a new order compiles Numba kernels, far beyond hypothesis's default 200 ms) and no
``too_slow`` health check.  Load it with ``hypothesis.settings.load_profile("mcnet")``, or
call ``mcnet.testing.warm_up()`` before the tests.

Example::

    from hypothesis import given
    from mcnet.testing import strategies as mst

    @given(x=mst.points(domain=(0.0, 10.0), shape=(5,)))
    def test_log(x):
        mc.testing.assert_derivatives(mc.log, x, [lambda x: 1 / x, lambda x: -1 / x**2])
"""

from __future__ import annotations

import math
from typing import Literal, cast

import numpy as np

try:
    from hypothesis import HealthCheck, settings
    from hypothesis import strategies as st
    from hypothesis.extra import numpy as hnp
except ImportError as error:  # pragma: no cover - only without the extra
    raise ImportError(
        "mcnet.testing.strategies needs hypothesis: pip install mcnet[testing]"
    ) from error

from mcnet.tensor import from_parts

__all__ = ["directions", "parts", "points", "tensors"]

settings.register_profile("mcnet", deadline=None, suppress_health_check=[HealthCheck.too_slow])

Shape = int | tuple[int, ...]


def points(domain: tuple[float, float] = (-1.0, 1.0), dtype=np.float64, shape: Shape = ()):
    """Points of the open interval ``domain = (lo, hi)`` (an infinite end is unbounded):
    NumPy scalars of ``dtype`` for ``shape=()``, else arrays of that shape.  No NaN,
    infinity or subnormal number; the ends are excluded, so ``(0, inf)`` suits ``log``."""
    dtype = _float_dtype(dtype)
    lo, hi = (float(end) for end in domain)
    if not lo < hi:
        raise ValueError(f"domain must be (lo, hi) with lo < hi, got {domain}")
    elements = st.floats(
        min_value=None if lo == -math.inf else _representable(lo, dtype, up=True),
        max_value=None if hi == math.inf else _representable(hi, dtype, up=False),
        exclude_min=lo != -math.inf,
        exclude_max=hi != math.inf,
        allow_nan=False,
        allow_infinity=False,
        allow_subnormal=False,
        width=8 * dtype.itemsize,
    )
    if _shape(shape) == ():
        return elements.map(dtype.type)
    return hnp.arrays(dtype, _shape(shape), elements=elements)


def directions(shape: Shape, k: int, dtype=np.float64):
    """Lists of ``k`` direction arrays of ``shape``, entries in [-1, 1] (as for
    ``mc.directional(f, x, directions)``)."""
    dtype = _float_dtype(dtype)
    vectors = hnp.arrays(dtype, _shape(shape), elements=_unit_floats(dtype))
    return st.lists(vectors, min_size=k, max_size=k)


@st.composite
def parts(
    draw,
    order: int,
    shape: Shape,
    dtype=np.float64,
    *,
    scale: float = 2.0,
    ratio: float | None = None,
):
    """Coefficient arrays ``(2**order, *shape)`` in the layout of ``Tensor.parts``.

    Without ``ratio``: every coefficient in [-scale, scale].  With ``ratio``: the real part
    in [0.5, 3] dominates, the imaginary coefficients summing to at most ``ratio`` times it,
    so every idempotent component of the number lies in the right half plane, off the
    branch cuts of ``log``, ``sqrt`` and ``power``.
    """
    dtype, shape = _float_dtype(dtype), _shape(shape)
    unit = _unit_floats(np.dtype(np.float64))
    if ratio is None:
        return (scale * draw(hnp.arrays(np.float64, (2**order, *shape), elements=unit))).astype(
            dtype
        )
    real = draw(hnp.arrays(np.float64, shape, elements=st.floats(0.5, 3.0)))
    if order == 0:
        return real[None].astype(dtype)
    rest = draw(hnp.arrays(np.float64, (2**order - 1, *shape), elements=unit))
    total = np.abs(rest).sum(axis=0)
    # rescaled only where the budget is exceeded, so small draws stay as drawn
    budget = ratio * real
    rest = rest * np.where(total > budget, budget / np.where(total > 0, total, 1.0), 1.0)
    return np.concatenate([real[None], rest]).astype(dtype)


def tensors(
    order: int, shape: Shape, dtype=np.float64, *, scale: float = 2.0, ratio: float | None = None
):
    """mcnet Tensors of the given order with the coefficients of ``parts``."""
    return parts(order, shape, dtype, scale=scale, ratio=ratio).map(from_parts)


def _unit_floats(dtype: np.dtype):
    return st.floats(
        -1.0,
        1.0,
        allow_nan=False,
        allow_subnormal=False,
        width=cast(Literal[16, 32, 64], 8 * dtype.itemsize),
    )  # a float's bits


def _float_dtype(dtype) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    return dtype


def _shape(shape: Shape) -> tuple[int, ...]:
    return (shape,) if isinstance(shape, int) else tuple(shape)


def _representable(bound: float, dtype: np.dtype, up: bool) -> float:
    """``bound`` rounded into the interval to a number of ``dtype`` (hypothesis wants bounds
    that the element width represents exactly)."""
    rounded = dtype.type(bound)
    if (up and rounded < bound) or (not up and rounded > bound):
        rounded = np.nextafter(rounded, dtype.type(math.inf if up else -math.inf))
    return float(rounded)
