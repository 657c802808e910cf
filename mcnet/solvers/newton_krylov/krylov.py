"""The Krylov solver of Newton-Krylov: warm-started CG on (H_j + lambda I) dw = -g_j with its
stop rule, step-length rule, diagonal preconditioner and early termination."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numba
import numpy as np

from mcnet.solvers.base import (
    check_choice,
    check_count,
    check_flag,
    check_in_range,
    check_positive,
)
from mcnet.solvers.newton_krylov.curvature import CurvatureOperator, dot


@dataclasses.dataclass
class KrylovResult:
    direction: Any  # dw
    curvature: float | None  # dw^T (H_j + lambda I) dw, None where unknown
    iterations: int
    reasons: list[str]


@dataclasses.dataclass(frozen=True)
class ConjugateGradient:
    """Lines 12-28 of Algorithm 1.

    - ``alpha="standard"``: alpha = r.z / kappa, textbook CG, so that on an SPD quadratic the
      loop solves H dw = -g; ``"paper"``: ||r|| / kappa as printed.
    - ``stop="tolerance"``: ||r|| <= ``tolerance`` ||g_j||; ``"forcing"``: the truncated-Newton
      forcing term ||r|| <= min(0.5, sqrt(||g_j||)) ||g_j|| (Nocedal & Wright, Algorithm 7.1).
    - ``early_stop``: stop at the first direction of non-positive curvature (kappa = 0 always
      stops: it would divide by zero).
    - ``flat_curvature="scaled"``: a Rayleigh quotient kappa / ||p||^2 below 1e-8 becomes
      0.01 (kappa = 0.01 ||p||^2, the units of p^T H p); ``"paper"``: kappa < 1e-8 becomes
      0.01 ||p|| as printed, which also fires on healthy curvature whenever p is small.
    - ``steepest_descent``: when CG stops before its first step, dw is the batch's steepest
      descent -g_j (see `solve`); ``"scaled"`` gives it the length of a Newton step in the
      metric |H| (g.g / |g^T H g|), ``"unit"`` leaves it as -g_j; ``"paper"`` is the printed
      loop, which returns the warm start unchanged (and -g_j only without one).
    - ``preconditioner="rms"``: CG in the metric diag(sqrt(v) + eps), v RMSprop's
      bias-corrected second moment of the batch gradients (decay ``preconditioner_beta``).
    """

    max_iterations: int = 20
    tolerance: float = 1e-10
    stop: str = "tolerance"
    alpha: str = "standard"
    early_stop: bool = True
    flat_curvature: str = "scaled"
    steepest_descent: str = "scaled"
    preconditioner: str = "none"
    preconditioner_beta: float = 0.99

    def __post_init__(self) -> None:
        check_count("max_krylov", self.max_iterations)
        check_positive("krylov_tol", self.tolerance, allow_zero=True)
        check_choice("krylov_stop", self.stop, ("tolerance", "forcing"))
        check_choice("cg_alpha", self.alpha, ("standard", "paper"))
        check_flag("early_stop", self.early_stop)
        check_choice("flat_curvature", self.flat_curvature, ("scaled", "paper"))
        check_choice("steepest_descent", self.steepest_descent, ("scaled", "unit", "paper"))
        check_choice("preconditioner", self.preconditioner, ("none", "rms"))
        check_in_range("preconditioner_beta", self.preconditioner_beta, 0.0, 1.0)

    # --- the preconditioner's state -------------------------------------------------------
    def init(self, xp, w) -> dict[str, Any]:
        if self.preconditioner == "none":
            return {}
        return {"preconditioner.second_moment": xp.zeros_like(w)}

    def precondition(self, state, g_batch, iteration: int, xp, dtype):
        """(the state's new entries, the inverse diagonal preconditioner or None)."""
        if self.preconditioner == "none":
            return {}, None
        # RMSprop's second moment of the batch gradients, bias-corrected: CG then runs in the
        # metric diag(sqrt(v) + eps), the scaling Adam and RMSprop step in
        beta = self.preconditioner_beta
        moment = state["preconditioner.second_moment"] * beta + g_batch * g_batch * (1 - beta)
        corrected = moment / (1 - beta**iteration)
        return {"preconditioner.second_moment": moment}, 1 / (xp.sqrt(corrected) + dtype.type(1e-8))

    # --- the loop -------------------------------------------------------------------------
    def solve(
        self,
        oracle,
        w,
        batch,
        operator: CurvatureOperator,
        g_batch,
        dw,
        h_dw,
        damping: float = 0.0,
        inverse_preconditioner=None,
    ) -> KrylovResult:
        """CG from the warm start ``dw`` (``h_dw`` = (H_j + lambda I) dw), with early
        termination; preconditioned CG when ``inverse_preconditioner``, a diagonal, is given.
        """
        r = -(g_batch + h_dw)
        z = r if inverse_preconditioner is None else r * inverse_preconditioner
        # dw, r and p are this loop's own arrays, updated in place (dw starts as the warm
        # start, which the state keeps; p as z, which is r itself unpreconditioned)
        dw, p = dw.copy(), z.copy()
        rz = dot(r, z)
        rr = dot(r, r)
        g_norm = math.sqrt(dot(g_batch, g_batch))
        if self.stop == "forcing":
            tolerance = min(0.5, math.sqrt(g_norm)) * g_norm
        else:
            tolerance = self.tolerance * g_norm
        first_curvature = None
        reason = f"max_krylov={self.max_iterations} reached"
        iterations = 0
        while iterations < self.max_iterations:
            if math.sqrt(rr) <= tolerance:
                reason = "converged"
                break
            kappa, hp = operator.along(oracle, w, p, batch, damping)
            if first_curvature is None:
                first_curvature = kappa
            if not math.isfinite(kappa):
                reason = "non-finite curvature"
                break
            if kappa <= 0 and (self.early_stop or kappa == 0):
                reason = "non-positive curvature"
                break
            kappa = self.flat_substitute(kappa, p)
            alpha = rz / kappa if self.alpha == "standard" else math.sqrt(rr) / kappa
            if hp is None:
                hp = operator.product(oracle, w, p, batch, damping)  # CSDD
            _cg_update(dw, r, p, hp, w.dtype.type(alpha))  # dw += alpha p, r -= alpha H p
            z = r if inverse_preconditioner is None else r * inverse_preconditioner
            rz_next = dot(r, z)
            _next_direction(p, z, w.dtype.type(rz_next / rz))  # p = z + beta p
            rz, rr = rz_next, rz_next if inverse_preconditioner is None else dot(r, r)
            iterations += 1
        keep = iterations > 0 or reason == "converged" or self.steepest_descent == "paper"
        if keep and bool((dw != 0).any()):
            # CG keeps r = -(g_j + H_j dw), so dw^T H_j dw = -dw.(r + g_j) costs no pass.
            return KrylovResult(dw, -dot(dw, r + g_batch), iterations, [reason])
        cold = not bool((dw != 0).any())  # no Krylov step was taken: dw is the warm start
        descent, curvature = self._steepest_descent(
            oracle,
            w,
            batch,
            operator,
            g_batch,
            damping,
            inverse_preconditioner,
            first_curvature if cold else None,
        )
        return KrylovResult(descent, curvature, iterations, [reason, "steepest descent"])

    def _steepest_descent(
        self, oracle, w, batch, operator, g_batch, damping, inverse_preconditioner, curvature
    ):
        """CG stopped before its first step. The warm start (the previous batch's step) has
        learnt nothing from this batch and, kept, would be re-scaled from batch to batch until
        it vanished: the step is the batch's (preconditioned) steepest descent, as in
        truncated Newton (Nocedal & Wright, Algorithm 7.1). ``curvature`` is its damped
        curvature where the loop measured it (a cold start), else None."""
        descent = -g_batch if inverse_preconditioner is None else -g_batch * inverse_preconditioner
        if self.steepest_descent == "paper":
            return descent, curvature  # the printed loop had no warm start here: a cold one
        if self.steepest_descent == "scaled":
            if curvature is None:
                curvature = operator.quadratic_form(oracle, w, descent, batch) + damping * dot(
                    descent, descent
                )
            if math.isfinite(curvature) and curvature != 0:
                # the length of a Newton step along -g_j in the metric |H| (saddle-free
                # Newton: Dauphin et al. 2014), so that the step rule starts from a step
                # whose size matches the curvature, whatever its sign
                scale = dot(descent, descent) / abs(curvature)
                descent, curvature = descent * w.dtype.type(scale), curvature * scale * scale
        if curvature is not None and not math.isfinite(curvature):
            curvature = None
        return descent, curvature

    def flat_substitute(self, kappa: float, p) -> float:
        """Lines 18-19: a temporary curvature where the measured one is nearly zero."""
        if kappa <= 0:
            return kappa  # early_stop=False: plain CG goes on with the negative curvature
        if self.flat_curvature == "paper":
            return 0.01 * math.sqrt(dot(p, p)) if kappa < 1e-8 else kappa
        pp = dot(p, p)
        return 0.01 * pp if kappa < 1e-8 * pp else kappa


# CG's vector updates in one pass each, in place, with the roundings of the NumPy expressions
# they replace (a * x rounded, then the sum; no fused multiply-add), so that a large model's
# Krylov iteration is not dominated by temporaries.
def _cg_update(dw, r, p, hp, alpha) -> None:
    """dw += alpha p and r -= alpha hp, in place."""
    if _loopable(dw, r, p, hp):
        _cg_update_loop(dw, r, p, hp, alpha)
    else:  # CuPy, or mixed dtypes
        dw += alpha * p
        r -= alpha * hp


def _next_direction(p, z, beta) -> None:
    """p = z + beta p, in place."""
    if _loopable(p, z):
        _next_direction_loop(p, z, beta)
    else:
        p *= beta
        p += z


def _loopable(*arrays) -> bool:
    first = arrays[0]
    return all(
        isinstance(a, np.ndarray)
        and a.dtype == first.dtype
        and a.ndim == 1
        and a.flags.c_contiguous
        for a in arrays
    )


@numba.njit(cache=True, nogil=True)
def _cg_update_loop(dw, r, p, hp, alpha):  # pragma: no cover - compiled
    for i in range(dw.size):
        dw[i] += alpha * p[i]
        r[i] -= alpha * hp[i]


@numba.njit(cache=True, nogil=True)
def _next_direction_loop(p, z, beta):  # pragma: no cover - compiled
    for i in range(p.size):
        p[i] = z[i] + beta * p[i]
