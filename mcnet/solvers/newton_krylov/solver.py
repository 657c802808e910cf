"""`NewtonKrylov`: the stochastic Newton-Krylov method of Shen et al., "Complex-step
derivatives ... Newton-Krylov" (Algorithm 1), composed of four parts.

One iteration on a minibatch B_j, with g the global gradient:

1. **Pre-batch screening** (lines 4-8): skip B_j if its gradient opposes g (g_j . g < 0).
2. **Warm-started Krylov loop** (lines 10-28, `ConjugateGradient` on a `CurvatureOperator`):
   CG on H_j dw = -g_j from dw = the previous step. One complex pass at w + i h dw gives g_j
   and H_j dw together (line 11, CSDD); each iteration takes kappa = p^T H_j p from one
   bicomplex forward (CSDD2) and stops at kappa <= 0 (early termination).
3. **Post-batch screening** (lines 29-31): keep dw a descent direction for g.
4. **Step sizing** (lines 33-46, a step rule: `TaylorRatio` as printed, `Armijo` or
   `LevenbergMarquardt`).
5. Update g (line 48, a `GlobalGradient` estimator: full, refreshed, sampled or running).

The state is one flat dict with prefixed keys: ``gradient.*``, ``krylov.warm_start``,
``curvature.damping``, ``preconditioner.*`` and ``iteration``.

Where the printed algorithm needs a decision (docs/newton_krylov.md has the reasoning):

- line 21: alpha = r^T r / kappa, standard CG (``cg_alpha="paper"``: ||r|| / kappa).
- lines 18-19: the near-zero test is on the Rayleigh quotient (``flat_curvature``).
- line 15: kappa <= 0 terminates. If CG stops before its first step, the warm start is
  dropped and dw is the batch's steepest descent, scaled to a Newton step in |H|
  (``steepest_descent``): keeping the warm start there froze training on ReLU networks.
- lines 29-30: an ascent direction for g is reflected in the hyperplane orthogonal to g,
  dw <- dw - 2 (dw.g / g.g) g (``post_screening="paper"``: (1 + cos) dw as printed).
- line 35: see `TaylorRatio`; with no gamma in the band the best trial is taken
  (``fallback="paper"``: 1e-6).
- line 10: the warm start is the step taken, gamma dw (``warm_start``).
- E_Q's dw^T H_j dw comes from CG's residual at no cost; f in the Taylor ratio is f_j.
- between lines 31 and 33 (not printed): an output channel the loss is invariant to the
  scale of (a row of a weight, or a filter, followed by batch normalisation: its batch
  gradient is orthogonal to it) has its part of dw shortened to at most
  ``scale_invariant_limit`` of its norm. Such a step turns the channel instead of moving it,
  the Gauss-Newton matrix is flat along it, and CG's step was several times its norm: along
  it the loss of a BatchNorm CNN on digits rose where the model predicted its largest fall
  (docs/newton_krylov.md). Then (``scale_invariant_curvature``) each tensor of such rows has
  its part of dw shortened to the minimiser of the exact quadratic model along it (one
  bicomplex forward, CSDD2): the Gauss-Newton matrix leaves out batch norm's own second
  derivative, which dominates along such rows after a sigmoid.

After an epoch (``epoch_rollback``, ``epoch_backtracks``, not in the printed algorithm):
`mcnet.fit` passes the full training loss to `end_epoch`; an epoch that raised it is cut back
to the first of 1/2, 1/4, 1/8 of its way below its start, or undone (docs/newton_krylov.md).

Every option of the constructor is a setting of a part (see `parts`) or of the loop itself
(``warm_start``, ``pre_screening``, ``post_screening``, ``damping_ratio``,
``scale_invariant_limit``, ``scale_invariant_curvature``, ``scale_invariant_max_krylov``,
``epoch_rollback``, ``epoch_backtracks``). The defaults are Algorithm 1 on the damped
Gauss-Newton matrix G_j + lambda I (lambda_0 = 1e-2, following Levenberg-Marquardt) at
eta = 0.5: with H_j, CG meets non-positive curvature at its first or second direction in
nearly every iteration on ReLU networks, and training there ran 2-12x behind Adam; on
G_j + lambda I the paper's band (eta < 0.2) cut good steps to 1/8-1/4
(docs/newton_krylov.md). lambda follows the reduction ratio of the step taken, gamma dw
(``damping_ratio="taken"``), not of the full step dw (``"full"``, Martens 2010): where the
loss curves faster than its quadratic model the Taylor rule cuts gamma below 1 step after
step, the full step's ratio stays below 1/4, and lambda rose x1.5 a step to 168 on a
BatchNorm sigmoid MLP, whose steps then became gradient steps too short to leave a plateau.
On a batch whose gradient shows batch norm's scale-invariant rows CG stops at 5 iterations
(``scale_invariant_max_krylov``): the Gauss-Newton matrix leaves out batch norm's own second
derivative, and longer solves of its model left four batch-norm problems of the suite above
twice Adam's loss. `NewtonKrylovHessian` (``newton-krylov-hessian``) is Algorithm 1 on H_j
itself, CSDD and CSDD2, at the paper's eta = 0.05. The named variants are other
compositions of the same parts.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

from mcnet.algebra.multicomplex import array_module
from mcnet.solvers.base import (
    Solver,
    State,
    StepInfo,
    check_choice,
    check_count,
    check_flag,
    check_fraction,
    check_positive,
    variant_of,
)
from mcnet.solvers.newton_krylov.curvature import CurvatureOperator, dot
from mcnet.solvers.newton_krylov.gradient import GlobalGradient
from mcnet.solvers.newton_krylov.krylov import ConjugateGradient
from mcnet.solvers.newton_krylov.scale_invariance import (
    channel_rows,
    limit_scale_invariant_steps,
    scale_invariant_tensors,
)
from mcnet.solvers.newton_krylov.step_rules import Armijo, TaylorRatio


class NewtonKrylov(Solver):
    """Algorithm 1 of Shen et al. (the paper this project reproduces), as four parts, on the
    damped Gauss-Newton matrix at eta = 0.5 by default (``curvature="bicomplex"``,
    ``damping=0``, ``eta=0.05``: on the Hessian, as printed)."""

    name = "newton-krylov"

    def __init__(
        self,
        eta: float = 0.5,
        max_krylov: int = 20,
        krylov_tol: float = 1e-10,
        early_stop: bool = True,
        step: str = "taylor",
        max_adjustments: int = 10,
        fallback_step: float = 1e-6,
        fallback: str = "best",
        armijo_c: float = 0.01,
        armijo_tau: float = 0.8,
        max_backtracks: int = 60,
        flat_curvature: str = "scaled",
        steepest_descent: str = "scaled",
        warm_start: str = "step",
        curvature: str = "gauss-newton",
        refresh_every: int = 1,
        gradient_sample: int | None = None,
        global_gradient: str = "full",
        stretch: bool = False,
        preconditioner: str = "none",
        preconditioner_beta: float = 0.99,
        krylov_stop: str = "tolerance",
        cg_alpha: str = "standard",
        pre_screening: bool = True,
        post_screening: str = "reflect",
        damping: float = 1e-2,
        damping_ratio: str = "taken",
        min_damping: float = 0.0,
        curvature_fraction: float = 1.0,
        curvature_dtype: str | None = None,
        scale_invariant_limit: float | None = 0.25,
        scale_invariant_curvature: bool = True,
        scale_invariant_max_krylov: int | None = 5,
        epoch_rollback: float | None = 0.5,
        epoch_backtracks: int = 3,
    ) -> None:
        options = dict(locals())
        del options["self"]
        self.step_rule = check_choice("step", step, ("taylor", "armijo"))  # `step` is a method
        del options["step"]
        self.__dict__.update(options)  # the options as given, for config() and the records
        self.warm_start = check_choice("warm_start", warm_start, ("step", "direction", "none"))
        self.damping_ratio = check_choice("damping_ratio", damping_ratio, ("full", "taken"))
        self.pre_screening = check_flag("pre_screening", pre_screening)
        self.post_screening = check_choice("post_screening", post_screening, ("reflect", "paper"))
        self.scale_invariant_curvature = check_flag(
            "scale_invariant_curvature", scale_invariant_curvature
        )
        self.epoch_rollback = (
            None if epoch_rollback is None else check_fraction("epoch_rollback", epoch_rollback)
        )
        if self.epoch_rollback == 0:
            raise ValueError("epoch_rollback must be in (0, 1] or None, got 0")
        # without a rollback there is nothing to backtrack: epoch_rollback=None turns both off
        self.epoch_backtracks = check_count("epoch_backtracks", epoch_backtracks, minimum=0)
        self.scale_invariant_limit = (
            None
            if scale_invariant_limit is None
            else check_positive("scale_invariant_limit", scale_invariant_limit)
        )
        self.scale_invariant_max_krylov = (
            None
            if scale_invariant_max_krylov is None
            else check_count("scale_invariant_max_krylov", scale_invariant_max_krylov)
        )
        self.operator = CurvatureOperator(
            curvature,
            float(damping),
            curvature_dtype,
            float(curvature_fraction),
            float(min_damping),
        )
        self.krylov = ConjugateGradient(
            max_krylov,
            krylov_tol,
            krylov_stop,
            cg_alpha,
            early_stop,
            flat_curvature,
            steepest_descent,
            preconditioner,
            preconditioner_beta,
        )
        # CG on batches that show scale-invariant rows (`_krylov_for`)
        self.scale_invariant_krylov = (
            self.krylov
            if self.scale_invariant_max_krylov is None
            else dataclasses.replace(self.krylov, max_iterations=self.scale_invariant_max_krylov)
        )
        taylor = TaylorRatio(eta, max_adjustments, fallback_step, fallback, stretch)
        armijo = Armijo(armijo_c, armijo_tau, max_backtracks, fallback_step)
        self.rule = taylor if step == "taylor" else armijo
        self.gradient = GlobalGradient(global_gradient, refresh_every, gradient_sample)

    @property
    def parts(self) -> dict[str, Any]:
        """The four parts this solver is composed of."""
        return {
            "curvature": self.operator,
            "krylov": self.krylov,
            "step_rule": self.rule,
            "global_gradient": self.gradient,
        }

    def config(self) -> dict[str, Any]:
        config = super().config()
        config["step"] = self.step_rule
        return config

    # --- state ----------------------------------------------------------------------------
    def init(self, oracle, w) -> State:
        """Line 1: the global gradient at the starting point; no warm start yet."""
        return {
            **self.gradient.init(oracle, w),
            "krylov.warm_start": oracle.xp.zeros_like(w),
            **self.operator.init(),
            **self.krylov.init(oracle.xp, w),
            "iteration": 0,
            **self._rollback_init(w),
        }

    def _rollback_init(self, w) -> State:
        if self.epoch_rollback is None:
            return {}
        return {"rollback.w": w.copy(), "rollback.loss": math.inf, "rollback.step_scale": 1.0}

    @property
    def reads_epoch_loss(self) -> bool:
        return self.epoch_rollback is not None

    def end_epoch(
        self,
        w,
        state: State,
        train_loss: float,
        loss_at: Callable[[Any], float] | None = None,
    ) -> tuple[Any, State, str]:
        """With ``epoch_rollback=f``: an epoch that raised the full training loss is undone.
        With ``epoch_backtracks=k``, first the points 1/2, 1/4, ... 1/2^k of the way from the
        previous epoch's end to ``w`` are tried (``loss_at``), and the first below the previous
        loss is kept; when none is, training goes on from the previous epoch's end. Either
        way there is no warm start, a measured global gradient is measured again at the point
        training goes on from (it was of the point left), and every later step is scaled by f
        once more; each epoch that lowers the loss takes one factor f back (up to 1), so
        rollbacks in a row shorten the steps until an epoch succeeds. Minibatch Newton steps
        fit their own batch; late in training they overshoot the full loss, which epochs of
        such steps then raise."""
        if self.epoch_rollback is None:
            return w, state, ""
        previous = float(state["rollback.loss"])
        scale = float(state["rollback.step_scale"])
        if train_loss <= previous:  # the first call compares with inf
            lowered = {
                **state,
                "rollback.w": w.copy(),
                "rollback.loss": train_loss,
                "rollback.step_scale": min(1.0, scale / self.epoch_rollback),
            }
            return w, lowered, ""
        scale *= self.epoch_rollback
        restored = {
            **state,
            **self.gradient.moved(),
            "krylov.warm_start": array_module(w).zeros_like(w),
            "rollback.step_scale": scale,
        }
        reason = f"rolled back: the training loss rose from {previous:.6g} to {train_loss:.6g}"
        if self.epoch_rollback < 1:
            reason += f"; later steps scaled by {scale:g}"
        start = state["rollback.w"]
        if loss_at is not None:
            for halvings in range(1, self.epoch_backtracks + 1):
                fraction = 0.5**halvings
                candidate = start + fraction * (w - start)
                loss = loss_at(candidate)
                if loss < previous:
                    kept = {**restored, "rollback.w": candidate.copy(), "rollback.loss": loss}
                    reason += f"; back to {fraction:g} of the epoch's way, where it is {loss:.6g}"
                    return candidate, kept, reason
        return start.copy(), restored, reason

    # --- one iteration --------------------------------------------------------------------
    def step(self, oracle, w, batch, state: State) -> tuple[Any, State, StepInfo]:
        iteration = state["iteration"] + 1
        state = {**state, **self.gradient.current(oracle, w, state, iteration)}
        dw = state["krylov.warm_start"] if self.warm_start != "none" else oracle.xp.zeros_like(w)
        damping = float(state["curvature.damping"])
        warm = bool((dw != 0).any())
        curvature_batch = self.operator.batch(batch)
        if warm and self.operator.fuses_with_gradient():
            # lines 4 and 11 in one complex pass: the batch gradient and H_j dw together
            loss, g_batch, h_dw = oracle.value_grad_and_hvp(w, dw, batch)
            h_dw = h_dw + w.dtype.type(damping) * dw
        else:  # a separate product, if any, after the screening below: a skipped batch needs none
            loss, g_batch = oracle.value_and_grad(w, batch)
            h_dw = None if warm else oracle.xp.zeros_like(w)
        g = self.gradient.with_batch(state["gradient.global"], g_batch, batch, oracle)
        preconditioner_state, inverse_preconditioner = self.krylov.precondition(
            state, g_batch, iteration, oracle.xp, w.dtype
        )
        if self.pre_screening and dot(g_batch, g) < 0:  # pre-batch screening
            skipped = {
                **state,
                "iteration": iteration,
                "gradient.global": g,
                **preconditioner_state,
            }
            return (
                w,
                skipped,
                StepInfo(
                    loss=loss,
                    step_size=0.0,
                    skipped=True,
                    reason="pre-screened: batch gradient opposes g",
                ),
            )

        if h_dw is None:
            h_dw = self.operator.product(oracle, w, dw, curvature_batch, damping)
        rows = channel_rows(getattr(oracle, "shapes", None), w.shape[0])
        invariant = (
            scale_invariant_tensors(w, g_batch, rows)
            if self.scale_invariant_curvature or self.scale_invariant_max_krylov is not None
            else []
        )
        result = self._krylov_for(invariant).solve(
            oracle,
            w,
            curvature_batch,
            self.operator,
            g_batch,
            dw,
            h_dw,
            damping,
            inverse_preconditioner,
        )
        dw, dw_curvature, reasons = result.direction, result.curvature, result.reasons
        if not bool((dw != 0).any()):  # g_j = 0: nothing to do on this batch
            return (
                w,
                {**state, "iteration": iteration, **preconditioner_state},
                StepInfo(
                    loss=loss,
                    step_size=0.0,
                    krylov_iterations=result.iterations,
                    reason="zero gradient",
                ),
            )

        dw_dot_g = dot(dw, g)
        if dw_dot_g > 0:  # post-batch screening: reflect dw so that dw . g < 0
            if self.post_screening == "reflect":
                dw = dw - (2.0 * dw_dot_g / dot(g, g)) * g
            else:  # as printed: (1 + cos(dw, g)) dw, still an ascent direction for g
                cosine = dw_dot_g / math.sqrt(dot(dw, dw) * dot(g, g))
                dw = dw * w.dtype.type(1.0 + cosine)
            dw_curvature = None
            reasons.append("post-screened")
        if self.scale_invariant_limit or self.scale_invariant_curvature:
            dw, shortened = self._shorten_scale_invariant_rows(
                oracle, w, dw, g_batch, curvature_batch, rows, invariant, reasons
            )
            if shortened:
                dw_curvature = None
        if dw_curvature is None:
            dw_curvature = self.operator.quadratic_form(oracle, w, dw, curvature_batch)
        else:
            dw_curvature -= damping * dot(dw, dw)  # the undamped model's

        trials: dict[float, float] = {}  # gamma -> f_j(w + gamma dw), each computed once

        def trial_loss(gamma: float) -> float:
            if gamma not in trials:
                trials[gamma] = oracle.value(w + dw * w.dtype.type(gamma), batch)
            return trials[gamma]

        gamma, adjustments = self.rule(trial_loss, loss, dot(dw, g_batch), dw_curvature, w.dtype)
        fell_back = gamma == self.rule.fallback_step
        if self.operator.damping > 0:  # Levenberg-Marquardt on a step's reduction ratio
            # rho of the step the rule took (at the fallback step: of the full step, a failure)
            at = gamma if self.damping_ratio == "taken" and not fell_back else 1.0
            predicted = at * dot(dw, g_batch) + 0.5 * at * at * dw_curvature
            rho = (trial_loss(at) - loss) / predicted if predicted < 0 else math.nan
            damping = self.operator.adapt(damping, rho)
        if fell_back:
            reasons.append("step-size fallback")
        gamma *= float(state.get("rollback.step_scale", 1.0))
        step = dw * w.dtype.type(gamma)
        w_new = w + step
        if not bool((w_new != w).any()):
            reasons.append("stalled: the step is below the roundoff of w")
        new_state = {
            **self.gradient.after_step(oracle, w_new, g, state, iteration),
            "krylov.warm_start": {"step": step, "direction": dw, "none": oracle.xp.zeros_like(w)}[
                self.warm_start
            ],
            "curvature.damping": damping,
            **preconditioner_state,
            "iteration": iteration,
            **{k: v for k, v in state.items() if k.startswith("rollback.")},
        }
        info = StepInfo(
            loss=loss,
            step_size=gamma,
            krylov_iterations=result.iterations,
            adjustments=adjustments,
            reason="; ".join(reasons),
        )
        return w_new, new_state, info

    def _krylov_for(self, invariant: list[slice]) -> ConjugateGradient:
        """The Krylov part for this batch: at most ``scale_invariant_max_krylov`` iterations
        where the batch gradient shows a tensor of scale-invariant rows (``invariant``, batch
        norm), whose own second derivative the Gauss-Newton matrix leaves out, so that a
        longer solve of that model goes further in a wrong direction."""
        return self.scale_invariant_krylov if invariant else self.krylov

    def _shorten_scale_invariant_rows(
        self, oracle, w, dw, g_batch, batch, rows, invariant: list[slice], reasons: list[str]
    ) -> tuple[Any, bool]:
        """dw with its scale-invariant rows' part shortened: each row to at most
        ``scale_invariant_limit`` of its norm, then (``scale_invariant_curvature``) the part
        d_t of each tensor of such rows to the minimiser of the loss's exact quadratic model
        along it, gamma_t = -d_t.g_j / d_t^T H_j d_t (at most 1), from one bicomplex forward
        per tensor. The Gauss-Newton matrix leaves out batch norm's own second derivative,
        which is large along such rows (on a sigmoid BN MLP, d_t^T H_j d_t was 75 times
        d_t^T G_j d_t), so CG turns them much further than the loss allows. ``rows``: the
        parameters' `channel_rows`; ``invariant``: their `scale_invariant_tensors`."""
        shortened = False
        if self.scale_invariant_limit:
            dw, limited = limit_scale_invariant_steps(
                dw, w, g_batch, rows, self.scale_invariant_limit
            )
            if limited:
                shortened = True
                reasons.append("scale-invariant channels limited")
        if self.scale_invariant_curvature:
            fitted = 0
            for tensor in invariant:
                part = oracle.xp.zeros_like(dw)
                part[tensor] = dw[tensor]
                slope = dot(part, g_batch)
                curvature = self.operator.exact_quadratic_form(oracle, w, part, batch)
                if curvature > 0 and -slope < curvature:  # the minimiser lies short of 1
                    if not shortened:
                        dw = dw.copy()
                    dw[tensor] *= w.dtype.type(max(-slope / curvature, 0.0))
                    shortened = True
                    fitted += 1
            if fitted:
                reasons.append("scale-invariant channels fitted to exact curvature")
        return dw, shortened


@variant_of(
    NewtonKrylov,
    curvature="bicomplex",
    damping=0.0,
    eta=0.05,
    scale_invariant_limit=None,
    scale_invariant_curvature=False,
    scale_invariant_max_krylov=None,
    epoch_rollback=None,
    epoch_backtracks=0,
)
class NewtonKrylovHessian(NewtonKrylov):
    """Algorithm 1 on the batch Hessian H_j, as printed: H_j p from a complex pass (CSDD),
    each kappa = p^T H_j p from a bicomplex forward (CSDD2), CG ended at the first direction of
    non-positive curvature, eta = 0.05, no epoch rollback. The base of the ablations."""

    name = "newton-krylov-hessian"


@variant_of(NewtonKrylovHessian, curvature="hvp", global_gradient="running", krylov_stop="forcing")
class NewtonKrylovCheap(NewtonKrylovHessian):
    """Algorithm 1 on H_j with cheap iterations: kappa = p.(H p) from the H p pass the next line
    needs anyway (``curvature="hvp"``: one network pass per Krylov iteration instead of two),
    the running global gradient (no full-data pass per step) and CG truncated at the forcing
    term (no iterations spent solving a batch's Newton system past what its noise warrants).
    Chosen on scikit-learn's digits (`benchmarks/bench_nk_variants.py`)."""

    name = "newton-krylov-cheap"


@variant_of(NewtonKrylov, damping=1e-3, eta=0.2)
class NewtonKrylovGaussNewton(NewtonKrylov):
    """Algorithm 1 on the damped Gauss-Newton matrix G + lambda I, lambda following
    Levenberg-Marquardt from 1e-3, with eta = 0.2, the top of the range the paper
    recommends: `NewtonKrylov`'s defaults but for lambda_0 (chosen on digits before the
    suite existed; benchmarks/experiments). G = J^T H_L J is positive semi-definite for a
    convex loss, so CG does not stop at a first direction of negative curvature."""

    name = "newton-krylov-gn"


@variant_of(
    NewtonKrylov,
    eta=0.5,
    max_krylov=15,
    scale_invariant_max_krylov=5,
    global_gradient="running",
    gradient_sample=128,
    curvature_dtype="float32",
    damping=1e-2,
    scale_invariant_limit=0.15,
    pre_screening=False,
)
class NewtonKrylovFast(NewtonKrylov):
    """The recommended setting: `NewtonKrylov` (eta = 0.5, damping from 1e-2 following the
    reduction ratio of the step taken) with cheap iterations -- at most 15 Krylov
    iterations, 5 on a batch whose gradient shows batch norm's scale-invariant rows, as in
    `NewtonKrylov` (the Gauss-Newton model leaves out batch norm's own second derivative,
    so a longer solve goes further in a wrong direction there), the global gradient
    accumulated from the batch gradients (started from a 128-example sample) and the
    Gauss-Newton products in float32 while the gradient, the loss trials and the step stay
    in the parameters' dtype, scale-invariant channels turned by at most 0.15 of their norm
    per step (then fitted to the exact curvature, as in `NewtonKrylov`), every batch stepped
    on (``pre_screening=False``: against the running gradient, 192 of 1366 development steps
    were skipped as opposing it), and an epoch that raised the full training loss undone
    (``epoch_rollback=0.5``, ``epoch_backtracks=3``: `mcnet.fit` goes on from the first of
    the points 1/2, 1/4, 1/8 of the epoch's way below the previous epoch's end, else from
    that end, with steps halved until an epoch lowers the loss). One setting for every
    problem: the scale-invariant limit and the rollback chosen on the development problems
    of `benchmarks/nk_suite.py`, eta, the damping and the Krylov limits on its seen halves
    (the settings tried, and the rules they were judged by: `benchmarks/results/nk_suite.md`)."""

    name = "newton-krylov-fast"
