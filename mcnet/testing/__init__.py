"""Helpers for testing derivatives and hand-written backward passes with mcnet.

- ``check_module(module, inputs, ...)``: a gradient check of a module's backward against
  complex-step derivatives of its own forward (gradients, ``H v`` and its symmetry).
- ``assert_derivatives(f, x, derivatives)``: ``mc.derivative`` of an elementwise function
  against analytic derivatives, order by order.
- ``finite_difference(f, x, directions)``: Richardson-extrapolated central differences of
  ``d^k f(x)[v_1, ..., v_k]``, an independent reference; ``richardson(fn, eps)`` the same for
  ``d/dt fn(t)`` at 0.
- ``strategies``: hypothesis strategies ``points``, ``directions``, ``tensors`` (needs the
  ``testing`` extra: ``pip install mcnet[testing]``).  Importing it registers the hypothesis
  profile ``"mcnet"`` (no deadline).
- ``warm_up(orders, dtypes)``: compile the Numba kernels up front.

**The deadline.**  The first call at a new order or dtype compiles Numba kernels (or loads
them from the disk cache), which takes longer than hypothesis's default 200 ms deadline.
Either load the profile, ``hypothesis.settings.load_profile("mcnet")``, or decorate a test
with ``@hypothesis.settings(deadline=None)``, or call ``warm_up()`` once before the tests
(e.g. in a session-scoped fixture).
"""

from __future__ import annotations

import importlib

from mcnet.testing.derivatives import assert_derivatives
from mcnet.testing.differences import finite_difference, richardson
from mcnet.testing.modules import LinearFunctional, check_module
from mcnet.testing.warmup import warm_up

__all__ = [
    "LinearFunctional",
    "assert_derivatives",
    "check_module",
    "finite_difference",
    "richardson",
    "strategies",
    "warm_up",
]


def __getattr__(name: str):
    # imported on first use: it needs hypothesis, which plain mcnet does not
    if name == "strategies":
        return importlib.import_module("mcnet.testing.strategies")
    raise AttributeError(f"module 'mcnet.testing' has no attribute {name!r}")
