"""Step rules of Newton-Krylov: the gamma of w + gamma dw, from trials of the batch loss.

Each rule is called as ``rule(trial_loss, loss, slope, curvature, dtype) -> (gamma,
adjustments)``: ``trial_loss(gamma)`` is f_j(w + gamma dw) (each gamma evaluated once),
``loss`` = f_j(w), ``slope`` = dw.g_j and ``curvature`` = dw^T H_j dw (undamped).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np

from mcnet.solvers.base import (
    check_choice,
    check_count,
    check_flag,
    check_in_range,
    check_positive,
)

TrialLoss = Callable[[float], float]


@dataclasses.dataclass(frozen=True)
class TaylorRatio:
    """Lines 33-46: gamma such that the Taylor ratio
    eta(gamma) = |(f(w + gamma dw) - f(w) - E_Q) / (f(w + gamma dw) - f(w))|,
    E_Q = gamma dw.g_j + gamma^2 dw^T H_j dw / 2, lies in [eta/2, eta].

    As printed, gamma = 1 is kept unless eta(1) > eta/2 (so on an exact quadratic the full
    step is taken); otherwise gamma is halved (eta too large) or stretched x1.5 (too small),
    at most ``max_adjustments`` times. A trial that does not decrease f counts as eta = inf.
    Where E_Q is below the roundoff of f (64 ulps), eta is not measurable -- near a minimum
    f(w + dw) - f(w) is pure cancellation -- and gamma = 1 is taken unless f rose by more than
    that roundoff. When no gamma lands in the band: ``fallback="best"`` takes the trial that
    lowered f most, ``"paper"`` (or no trial lowered f) the printed ``fallback_step`` 1e-6.
    ``stretch=True`` also grows gamma while eta(gamma) < eta/2 (the text's "stretch").
    """

    eta: float = 0.05
    max_adjustments: int = 10
    fallback_step: float = 1e-6
    fallback: str = "best"
    stretch: bool = False

    def __post_init__(self) -> None:
        check_in_range("eta", self.eta, 1e-12, 1.0)
        check_count("max_adjustments", self.max_adjustments, 0)
        check_positive("fallback_step", self.fallback_step)
        check_choice("fallback", self.fallback, ("best", "paper"))
        check_flag("stretch", self.stretch)

    def __call__(
        self, trial_loss: TrialLoss, loss: float, slope: float, curvature: float, dtype
    ) -> tuple[float, int]:
        noise = roundoff(loss, dtype)
        decreases: dict[float, float] = {}  # gamma -> f_j(w + gamma dw) - f_j(w) < 0

        def taylor_ratio(gamma: float) -> float:
            trial = trial_loss(gamma)
            decrease = trial - loss
            if decrease < 0:
                decreases[gamma] = decrease
            model = gamma * slope + 0.5 * gamma * gamma * curvature
            if not math.isfinite(trial):
                return math.inf
            if abs(model) <= noise:
                # Near a minimum the change of f drowns in its roundoff and eta is noise;
                # the quadratic model is then exact to what f can resolve: accept.
                return 0.0 if decrease <= noise else math.inf
            if decrease >= 0:
                return math.inf  # no decrease: shrink
            return abs((decrease - model) / decrease)

        gamma, adjustments = 1.0, 0
        ratio = taylor_ratio(gamma)
        if ratio <= 0.5 * self.eta:
            if not self.stretch:
                return gamma, adjustments
            # grow gamma while the model stays trustworthy, keeping the last gamma whose
            # ratio did not exceed eta
            while adjustments < self.max_adjustments and ratio < 0.5 * self.eta:
                adjustments += 1
                ratio = taylor_ratio(1.5 * gamma)
                if ratio > self.eta:
                    break
                gamma *= 1.5
            return gamma, adjustments
        while not 0.5 * self.eta <= ratio <= self.eta:
            if adjustments == self.max_adjustments:
                if decreases and self.fallback == "best":
                    # no gamma met the ratio: the trial that lowered f_j most, not a step of
                    # 1e-6 that would also shrink the next warm start a millionfold
                    return min(decreases, key=decreases.__getitem__), adjustments
                return self.fallback_step, adjustments
            gamma *= 0.5 if ratio > self.eta else 1.5
            adjustments += 1
            ratio = taylor_ratio(gamma)
        return gamma, adjustments


@dataclasses.dataclass(frozen=True)
class Armijo:
    """Backtracking from gamma = 1 (x ``tau``) until f(w + gamma dw) <= f(w) + c gamma dw.g_j,
    allowing for the roundoff of f; ``fallback_step`` after ``max_backtracks``."""

    c: float = 0.01
    tau: float = 0.8
    max_backtracks: int = 60
    fallback_step: float = 1e-6

    def __post_init__(self) -> None:
        check_in_range("armijo_c", self.c, 0.0, 1.0)
        check_in_range("armijo_tau", self.tau, 1e-6, 1.0)
        check_count("max_backtracks", self.max_backtracks, 0)
        check_positive("fallback_step", self.fallback_step)

    def __call__(
        self, trial_loss: TrialLoss, loss: float, slope: float, curvature: float, dtype
    ) -> tuple[float, int]:
        noise = roundoff(loss, dtype)
        gamma, adjustments = 1.0, 0
        while True:
            trial = trial_loss(gamma)
            # the roundoff of f is allowed for, or no step is accepted near a minimum
            if math.isfinite(trial) and trial <= loss + self.c * gamma * slope + noise:
                return gamma, adjustments
            if adjustments == self.max_backtracks:
                return self.fallback_step, adjustments
            gamma *= self.tau
            adjustments += 1


@dataclasses.dataclass(frozen=True)
class LevenbergMarquardt:
    """The full step gamma = 1: the damping lambda of the curvature operator, adapted by the
    reduction ratio of each step, alone controls the step length (Martens 2010). A trial
    that is not finite is refused: gamma = ``fallback_step``."""

    fallback_step: float = 1e-6

    def __post_init__(self) -> None:
        check_positive("fallback_step", self.fallback_step)

    def __call__(
        self, trial_loss: TrialLoss, loss: float, slope: float, curvature: float, dtype
    ) -> tuple[float, int]:
        return (1.0, 0) if math.isfinite(trial_loss(1.0)) else (self.fallback_step, 0)


def roundoff(loss: float, dtype) -> float:
    """The size of the rounding errors in a computed loss value (64 ulps of it)."""
    return 64 * float(np.finfo(dtype).eps) * abs(loss)
