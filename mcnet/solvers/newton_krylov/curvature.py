"""The curvature operator: products with the batch Hessian H_j or the Gauss-Newton matrix G_j,
damped, in a chosen precision, on all of the batch or a subsample of it."""

from __future__ import annotations

import dataclasses
from typing import Any

from mcnet.solvers.base import check_choice, check_positive
from mcnet.solvers.hessian_free import levenberg_marquardt

KINDS = ("bicomplex", "hvp", "gauss-newton")


@dataclasses.dataclass(frozen=True)
class CurvatureOperator:
    """``kind``: "bicomplex" takes each curvature p^T H p from one bicomplex forward (CSDD2)
    and H p from a complex pass (CSDD); "hvp" takes p^T H p = p.(H p) from the H p pass alone
    (one pass per Krylov iteration instead of two); "gauss-newton" uses G = J^T H_L J, positive
    semi-definite for a convex loss (one complex forward and backward per product).

    ``damping`` lambda > 0 adds lambda I and follows Levenberg-Marquardt on the reduction
    ratio of each step (Martens 2010), never below ``min_damping``. ``dtype`` runs the
    products in float32 (or float64) on a copy of the module while everything else stays in
    the parameters' dtype. ``fraction`` takes the products on the first fraction of each
    (shuffled) batch: subsampled curvature (Byrd et al. 2011).
    """

    kind: str = "bicomplex"
    damping: float = 0.0
    dtype: str | None = None
    fraction: float = 1.0
    min_damping: float = 0.0

    def __post_init__(self) -> None:
        check_choice("curvature", self.kind, KINDS)
        check_positive("damping", self.damping, allow_zero=True)
        if self.dtype is not None:
            check_choice("curvature_dtype", self.dtype, ("float32", "float64"))
        check_positive("curvature_fraction", self.fraction)
        check_positive("min_damping", self.min_damping, allow_zero=True)
        if self.fraction > 1:
            raise ValueError(f"curvature_fraction must be in (0, 1], got {self.fraction!r}")

    # --- state ----------------------------------------------------------------------------
    def init(self) -> dict[str, Any]:
        return {"curvature.damping": self.damping}

    def adapt(self, damping: float, rho: float) -> float:
        """The next damping from the reduction ratio rho of a step, not below
        ``min_damping``."""
        if self.damping == 0:
            return damping
        return max(levenberg_marquardt(damping, rho), self.min_damping)

    # --- products -------------------------------------------------------------------------
    def batch(self, batch):
        """The examples the products see: the batch, or its first ``fraction`` (at least one
        example; batches are drawn shuffled, so these are a random subsample of them)."""
        if self.fraction == 1.0 or batch is None:
            return batch
        inputs, targets = batch
        size = max(1, round(self.fraction * len(inputs)))
        return inputs[:size], targets[:size]

    def fuses_with_gradient(self) -> bool:
        """Whether H dw can come from the gradient's own complex pass (CSDD): an undamped-
        kind Hessian product on the whole batch in the parameters' dtype."""
        return self.kind != "gauss-newton" and self.fraction == 1.0 and self.dtype is None

    def product(self, oracle, w, v, batch, damping: float):
        """(H + lambda I) v, or (G + lambda I) v."""
        product = (
            oracle.gauss_newton_product(w, v, batch, **self._precision())
            if self.kind == "gauss-newton"
            else oracle.hvp(w, v, batch, **self._precision())
        )
        if not damping:
            return product.astype(w.dtype, copy=False)
        damped = v * w.dtype.type(damping)
        damped += product  # a float32 product is widened on the way, with no copy of it
        return damped

    def quadratic_form(self, oracle, w, v, batch) -> float:
        """v^T H v (or v^T G v), undamped."""
        if self.kind == "gauss-newton":
            return dot(v, oracle.gauss_newton_product(w, v, batch, **self._precision()))
        return oracle.curvature(w, v, batch, **self._precision())

    def exact_quadratic_form(self, oracle, w, v, batch) -> float:
        """v^T H v of the batch Hessian itself, whatever this operator's kind: one bicomplex
        forward (CSDD2), in the operator's dtype."""
        return oracle.curvature(w, v, batch, **self._precision())

    def along(self, oracle, w, p, batch, damping: float):
        """What a Krylov iteration needs: (p^T (H + lambda I) p, (H + lambda I) p or None when
        the curvature came from a bicomplex forward and the product is still to be made)."""
        if self.kind == "bicomplex":  # CSDD2
            kappa = oracle.curvature(w, p, batch, **self._precision())
            return (kappa + damping * dot(p, p) if damping else kappa), None
        hp = self.product(oracle, w, p, batch, damping)
        return dot(p, hp), hp

    def _precision(self) -> dict[str, str]:
        """The products' dtype, for the oracle (none asked for by default)."""
        return {} if self.dtype is None else {"dtype": self.dtype}


def dot(a, b) -> float:
    return float(a @ b)
