"""`assert_derivatives`: ``mc.derivative`` of an elementwise function against analytic ones."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from mcnet.derivatives import derivative
from mcnet.tensor import Tensor, as_tensor

# The contract of mc.derivative is 1e-11 (float64) and 1e-4 / 1e-3 (float32, orders up to 4
# / above); the margin is for the analytic formulas, evaluated in the same dtype.
_DEFAULT_RTOL = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 1e-3}


def assert_derivatives(
    f: Callable[[Tensor], Tensor],
    x,
    derivatives: Sequence[Callable[[np.ndarray], np.ndarray]],
    rtol: float | None = None,
    *,
    atol: float = 0.0,
) -> dict[int, float]:
    """Check ``mc.derivative(f, x, order=k)`` against ``derivatives[k - 1](x)`` for every k.

    ``f`` is elementwise, built from mcnet functions; each analytic derivative is a callable
    on NumPy arrays (of x's dtype).  A point passes when ``|got - want| <= rtol |want| +
    atol`` (rtol defaults to 1e-10 in float64, 1e-3 in float32), or when both are the same
    infinity or both NaN.  Raises ``AssertionError`` naming the worst point: its order, x,
    the value got and the value expected.  Returns the largest relative error per order.
    """
    x = as_tensor(x)
    if x.order:
        raise ValueError(f"assert_derivatives needs a real point x, got an order-{x.order} tensor")
    points = x.to("cpu").numpy()
    if rtol is None:
        rtol = _DEFAULT_RTOL.get(x.dtype, 1e-10)
    errors: dict[int, float] = {}
    # the largest ratio to the tolerance, and (order, where, got, want, relative error) there
    worst: tuple[float, tuple[int, str, float, float, float] | None] = (0.0, None)
    failing: list[str] = []
    for order, analytic in enumerate(derivatives, start=1):
        got = np.broadcast_to(
            np.asarray(derivative(f, x, order=order), dtype=np.float64), points.shape
        )
        with np.errstate(all="ignore"):  # overflow to infinity is compared like any value
            want = np.broadcast_to(np.asarray(analytic(points), dtype=np.float64), points.shape)
        agree = (got == want) | (np.isnan(got) & np.isnan(want))
        with np.errstate(invalid="ignore", divide="ignore"):
            difference = np.where(agree, 0.0, np.abs(got - want))
            difference = np.where(np.isnan(difference), np.inf, difference)
            relative = difference / np.abs(want)
            ratio = difference / (rtol * np.abs(want) + atol)
        ratio = np.where(difference == 0.0, 0.0, ratio)
        relative = np.where(difference == 0.0, 0.0, relative)
        errors[order] = float(np.max(relative)) if relative.size else 0.0
        bad = int(np.count_nonzero(ratio > 1.0))
        if bad:
            failing.append(f"order {order}: {bad} of {ratio.size} points")
            at = np.unravel_index(np.argmax(ratio), ratio.shape)
            if ratio[at] > worst[0]:
                index = f"{[int(i) for i in at]}" if at else ""
                where = f"x{index} = {float(points[at])!r}"
                worst = (
                    float(ratio[at]),
                    (order, where, float(got[at]), float(want[at]), float(relative[at])),
                )
    if failing:
        assert worst[1] is not None  # a failing point has a ratio above 1
        order, where, g, w, worst_relative = worst[1]
        raise AssertionError(
            f"mc.derivative of {getattr(f, '__name__', 'f')} disagrees with the analytic "
            f"derivative: worst at order {order}, {where}: got {g!r}, expected {w!r} "
            f"(relative error {worst_relative:.3g}, rtol {rtol:g}, atol {atol:g}); "
            f"failing: {'; '.join(failing)}"
        )
    return errors
