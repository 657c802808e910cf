"""Analytic stand-ins for `mcnet.training.Oracle`: the loss, gradient and Hessian written
out by hand, so that solvers are checked against formulas and not against mcnet itself.

A "batch" is a key into ``functions``; ``None`` is the full-data (global) function.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import numpy as np

from mcnet.solvers.base import FirstOrderSolver

Function = tuple[Callable, Callable, Callable]  # f(x), grad(x), hessian(x)


class AnalyticOracle:
    xp = np
    seed = 0
    dtype = np.dtype(np.float64)

    def __init__(self, functions: dict, shapes=None):
        self.functions = functions
        self.shapes = shapes
        self.size = 1  # one "example": gradient sampling is never asked of it
        self.counts: Counter[str] = Counter()

    def _get(self, batch, kind):
        self.counts[kind if batch is not None else "global_" + kind] += 1
        return self.functions[batch]

    def value(self, w, batch=None):
        return float(self._get(batch, "function")[0](w))

    def value_and_grad(self, w, batch=None):
        f, grad, _ = self._get(batch, "gradient")
        return float(f(w)), grad(w)

    def value_grad_and_hvp(self, w, v, batch=None):
        f, grad, hess = self._get(batch, "hvp")
        return float(f(w)), grad(w), hess(w) @ v

    def grad_and_hvp(self, w, v, batch=None):
        return self.value_grad_and_hvp(w, v, batch)[1:]

    def hvp(self, w, v, batch=None):
        return self.value_grad_and_hvp(w, v, batch)[2]

    def curvature(self, w, v, batch=None):
        return float(v @ self._get(batch, "curvature")[2](w) @ v)

    def gauss_newton_product(self, w, v, batch=None):
        return self._get(batch, "gauss_newton")[2](w) @ v


def quadratic(a: np.ndarray, b: np.ndarray, c: float = 0.0) -> Function:
    """f(x) = x^T A x / 2 - b^T x + c."""
    return (lambda x: 0.5 * x @ a @ x - b @ x + c, lambda x: a @ x - b, lambda x: a)


def rosenbrock(scale: float = 100.0) -> Function:
    """f(x, y) = (1 - x)^2 + scale (y - x^2)^2, minimum 0 at (1, 1)."""

    def f(z):
        x, y = z
        return (1 - x) ** 2 + scale * (y - x * x) ** 2

    def grad(z):
        x, y = z
        return np.array([-2 * (1 - x) - 4 * scale * x * (y - x * x), 2 * scale * (y - x * x)])

    def hess(z):
        x, y = z
        return np.array(
            [[2 - 4 * scale * (y - 3 * x * x), -4 * scale * x], [-4 * scale * x, 2 * scale]]
        )

    return f, grad, hess


class PlainSGD(FirstOrderSolver):
    """w - lr g, written here so that tests of the training loop do not depend on the
    baseline solvers."""

    name = "plain-sgd"

    def __init__(self, lr: float) -> None:
        self.lr = lr

    def update(self, grad, state, w):
        return -self.lr * grad, state
