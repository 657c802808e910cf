"""`warm_up`: compile mcnet's Numba kernels before a property test's deadline starts ticking.

mcnet's elementwise kernels are generated and compiled per order, dtype and layout on first
use (or loaded from Numba's disk cache, which also takes a moment), so the first example of
a hypothesis test at a new order can take seconds and trip hypothesis's default 200 ms
deadline with ``Flaky`` or ``DeadlineExceeded``.  Calling ``warm_up`` once (e.g. in a
session fixture) pays that cost up front.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from mcnet.derivatives import directional
from mcnet.functions import cos, exp, sigmoid, sin, tanh
from mcnet.tensor import Tensor


def warm_up(
    orders: Iterable[int] = (1, 2, 3, 4), dtypes: Iterable = (np.float64, np.float32)
) -> None:
    """Run every fused elementwise function and the product once at each order and dtype,
    along one direction (``mc.derivative``'s layout) and along distinct ones."""
    for dtype in dtypes:
        x = np.linspace(0.25, 0.75, 3, dtype=dtype)
        for order in orders:
            directional(_every_kernel, x, [x] * order)
            directional(_every_kernel, x, [x + j for j in range(order)])


def _every_kernel(t: Tensor) -> Tensor:
    # one call of each function with a Numba kernel, and of the multicomplex product
    return (exp(t) * tanh(t) + sigmoid(t) * sin(t) + cos(t) * t).sum()
