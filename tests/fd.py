"""Finite differences as an independent reference for exact derivatives of an Objective.

``richardson`` and ``finite_difference`` live in ``mcnet.testing`` (re-exported here); these
are the references for an ``Objective`` built on them.  Central differences of a quantity
that mcnet computes exactly by a *lower-order* method (the gradient from the modules'
backward, v^T H v from one bicomplex forward) are a reference for the next order that shares
no code with the multicomplex step: H v is the derivative of the gradient along v,
d^3 f[v, v, v] that of v^T H v.  Richardson
extrapolation over eps, eps/2, eps/4, ... removes the O(eps^2), O(eps^4), ... truncation
terms, so the reference is good to ~1e-11 relative where the function is smooth on
[-eps, eps] (no kink of ReLU, max-pooling or the hinge inside).
"""

from __future__ import annotations

import numpy as np

from mcnet.testing import finite_difference, richardson  # noqa: F401 - re-exported


def hvp(objective, w, v, batch, eps: float = 1e-2, levels: int = 3) -> np.ndarray:
    """H v as the derivative of the exact gradient along v (taken along v / |v|, so that
    eps is a distance in parameter space)."""
    norm = float(np.linalg.norm(v))
    u = v / norm
    return norm * richardson(lambda t: objective.value_and_grad(w + t * u, batch)[1], eps, levels)


def third(objective, w, v, batch, eps: float = 1e-2, levels: int = 3) -> float:
    """d^3 f[v, v, v] as the derivative of the exact curvature v^T H v along v."""
    norm = float(np.linalg.norm(v))
    u = v / norm
    slope = richardson(lambda t: objective.curvature(w + t * u, u, batch), eps, levels)
    return norm**3 * float(slope)


def hessian(objective, w, batch, eps: float = 1e-2, levels: int = 3) -> np.ndarray:
    """The dense Hessian, column j the derivative of the exact gradient along e_j."""
    n = w.size
    columns = np.empty((n, n))
    for j in range(n):
        e = np.zeros(n)
        e[j] = 1.0
        columns[:, j] = hvp(objective, w, e, batch, eps, levels)
    return columns


def assert_close(got, want, rtol: float, what: str = "") -> None:
    """|got - want| <= rtol * (|want| + max |want|) element by element: relative to the
    vector's size, so a wrong small entry still counts."""
    got, want = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
    assert got.shape == want.shape, (got.shape, want.shape)
    scale = np.max(np.abs(want)) if want.size else 0.0
    err = np.abs(got - want)
    bound = rtol * (np.abs(want) + scale)
    worst = float(np.max(err / np.maximum(bound, np.finfo(float).tiny))) if err.size else 0.0
    assert worst <= 1.0, (
        f"{what}: max error {err.max():.3e} (relative to max |want| {scale:.3e}: "
        f"{err.max() / max(scale, 1e-300):.3e}) exceeds rtol {rtol:g} by {worst:.3g}x"
    )


def branches(objective, w, batch) -> list[np.ndarray]:
    """The branch every kink took in f(w): ReLU and ELU signs, max-pooling choices, the
    squared hinge's active margins.  Equal lists at w +- eps v mean that the differences
    never crossed a kink."""
    from mcnet.nn import ELU, MaxPool2d, ReLU, SquaredHingeLoss

    objective.value(w, batch)
    module = objective.module
    if module._modules:
        pairs = list(zip((s.module for s in module.graph().steps), module.graph()._saved))
    else:
        pairs = [(module, module.saved)]
    taken = []
    for layer, saved in pairs:
        if isinstance(layer, ReLU):
            taken.append(np.array(saved))
        elif isinstance(layer, (ELU, MaxPool2d)):
            taken.append(np.array(saved[0]))
    if isinstance(objective.loss, SquaredHingeLoss):
        taken.append(objective.loss.saved[0].real != 0)
    return taken


def same_branches(objective, w, v, batch, eps: float) -> bool:
    """Whether f takes the same branches at w and at w +- eps v / |v| (the points that
    ``hvp`` and ``third`` visit lie in between)."""
    u = v / np.linalg.norm(v)
    here = branches(objective, w, batch)
    for t in (eps, -eps):
        there = branches(objective, w + t * u, batch)
        if any(not np.array_equal(a, b) for a, b in zip(here, there)):
            return False
    return True
