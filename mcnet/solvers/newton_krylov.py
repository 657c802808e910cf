"""`NewtonKrylov`: the stochastic Newton-Krylov method of Shen et al. (Algorithm 1).

One iteration on a minibatch B_j, with g the global (full-data) gradient:

1. **Pre-batch screening** (lines 4-8): skip B_j if its gradient opposes g (g_j . g < 0).
2. **Warm-started Krylov loop** (lines 10-28): CG on H_j dw = -g_j from dw = the previous
   step. One complex pass at w + i h dw gives g_j and H_j dw together (line 11, CSDD). Each
   iteration takes the curvature kappa = p^T H_j p from one bicomplex forward (CSDD2) and
   stops as soon as kappa <= 0 (early termination); 0 < kappa "too small" gets a temporary
   curvature instead (the paper's momentum).
3. **Post-batch screening** (lines 29-31): keep dw a descent direction for g.
4. **Taylor-ratio step sizing** (lines 33-46): shrink (x0.5) or stretch (x1.5) the step gamma
   until eta = |(f(w + gamma dw) - f(w) - E_Q) / (f(w + gamma dw) - f(w))| lies in
   [eta/2, eta], E_Q = gamma dw.g_j + gamma^2 dw^T H_j dw / 2; bounded, with gamma = 1e-6 as
   the fallback.
5. Recompute g at the new point (line 48).

Where the printed algorithm needs a decision (shared/NUMERICS.md), this module does:

- line 21: alpha = r^T r / kappa, standard CG (the printed ||r||/kappa is not CG); so on an
  SPD quadratic with ``max_krylov >= n`` the loop *is* CG and solves H dw = -g.
- lines 18-19: the "near-zero curvature" test and the substitute are taken relative to p:
  kappa < 1e-8 ||p||^2 (a Rayleigh quotient below 1e-8) becomes kappa = 0.01 ||p||^2, which
  has the units of p^T H p. The printed rule (kappa < 1e-8 becomes 0.01 ||p||, units of p)
  also fires on healthy curvature whenever p is small, e.g. near the end of every CG solve;
  it stays available as ``flat_curvature="paper"``.
- line 15: kappa <= 0 terminates (kappa == 0 would divide by zero). If the very first
  direction already has non-positive curvature and there is no warm start, dw would be zero;
  dw is then that first direction, the batch's steepest descent, and the step rule sizes it.
- lines 29-30: the printed scaling (1 + cos) dw keeps dw.g > 0. The stated intent is that dw
  becomes a descent direction for g; dw is reflected in the hyperplane orthogonal to g,
  dw <- dw - 2 (dw.g / g.g) g, which keeps ||dw|| and the part of dw orthogonal to g and
  gives dw.g < 0 (the same magnitude, reversed).
- line 35: the step is adjusted only when eta > eta/2 at gamma = 1, as printed; so on an
  exact quadratic (eta at roundoff) the full step gamma = 1 is taken. A trial that does not
  decrease the batch loss counts as eta = inf (shrink). Where the predicted change E_Q is
  below the roundoff of f (64 ulps), eta is not measurable -- near a minimum
  f(w + dw) - f(w) is pure cancellation -- and gamma = 1 is taken unless f rose by more
  than that roundoff; without this the rule falls back to 1e-6 exactly where Newton
  converges quadratically.
- line 36's initial test size s is unused by the printed loop and is left out.
- line 10: the warm start is the step actually taken, gamma dw (``warm_start="step"``);
  ``"direction"`` uses dw, ``"none"`` starts from zero.
- E_Q needs dw^T H_j dw: CG keeps r = -(g_j + H_j dw), so dw^T H_j dw = -dw.(r + g_j) costs
  no pass; only a post-screened dw (changed along g) needs one more bicomplex forward.
- f in the Taylor ratio is the batch loss f_j, the function whose gradient and Hessian the
  loop used.

Ablations of the supplement are options: ``early_stop=False``, ``step="armijo"``
(backtracking with c = 0.01, tau = 0.8), and a global gradient refreshed every
``refresh_every`` steps or estimated on ``gradient_sample`` examples, or
``global_gradient="running"``: after the first, an exponential average of the batch
gradients with weight batch size / n (about one epoch's worth), which needs no full-data
pass at all. ``krylov_stop="forcing"`` ends CG at the truncated-Newton forcing term
||r|| <= min(0.5, sqrt(||g_j||)) ||g_j|| (Nocedal & Wright, Algorithm 7.1) instead of
``krylov_tol``. ``cg_alpha="paper"`` and ``post_screening="paper"`` are lines 21 and 29-30 as
printed, for the ablation. ``curvature="hvp"``
takes kappa = p.(H p) from the H p pass the next line needs anyway (one pass per Krylov
iteration instead of two). ``curvature="gauss-newton"`` runs CG on the Gauss-Newton
matrix G = J^T H_L J (one complex forward and backward per product, positive semi-definite
for a convex loss) and ``damping=lambda`` on G + lambda I (or H + lambda I), lambda then
following Levenberg-Marquardt on the reduction ratio rho = (f_j(w + dw) - f_j(w)) / q(dw) of
the full step, q the undamped quadratic model. ``curvature_fraction=f`` takes the Krylov
loop's products on the first f of each batch (subsampled curvature, Byrd et al. 2011) while
the gradient, the step rule and rho see the whole batch. ``curvature_dtype="float32"`` runs
those products (and the step rule's p^T G p) in float32 on a float32 copy of the module
while the gradient, the loss trials and the Krylov vectors stay in the parameters' float64:
the mixed precision of Hessian-free training on GPUs (Martens 2010); a product's relative
error is then about 1e-7, the damping's scale or below. The defaults are Algorithm 1;
`NewtonKrylovCheap` (``newton-krylov-cheap``) is the variant with the cheap-iteration
options and the forcing stop on, `NewtonKrylovGaussNewton` (``newton-krylov-gn``) Algorithm 1
on the damped Gauss-Newton matrix with eta = 0.2, and `NewtonKrylovFast`
(``newton-krylov-fast``) that with 10 Krylov iterations, the running global gradient and
float32 products.
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np

from mcnet.solvers.base import (
    Solver,
    State,
    StepInfo,
    check_choice,
    check_count,
    check_flag,
    check_in_range,
    check_positive,
    variant_of,
)
from mcnet.solvers.hessian_free import levenberg_marquardt


class NewtonKrylov(Solver):
    """Algorithm 1 of Shen et al., "Complex-step derivatives ... Newton-Krylov" (the seed)."""

    name = "newton-krylov"

    def __init__(
        self,
        eta: float = 0.05,
        max_krylov: int = 20,
        krylov_tol: float = 1e-10,
        early_stop: bool = True,
        step: str = "taylor",
        max_adjustments: int = 10,
        fallback_step: float = 1e-6,
        armijo_c: float = 0.01,
        armijo_tau: float = 0.8,
        max_backtracks: int = 60,
        flat_curvature: str = "scaled",
        warm_start: str = "step",
        curvature: str = "bicomplex",
        refresh_every: int = 1,
        gradient_sample: int | None = None,
        global_gradient: str = "full",
        stretch: bool = False,
        preconditioner: str = "none",
        preconditioner_beta: float = 0.99,
        krylov_stop: str = "tolerance",
        cg_alpha: str = "standard",
        post_screening: str = "reflect",
        damping: float = 0.0,
        curvature_fraction: float = 1.0,
        curvature_dtype: str | None = None,
    ) -> None:
        self.eta = check_in_range("eta", eta, 1e-12, 1.0)
        self.max_krylov = check_count("max_krylov", max_krylov)
        self.krylov_tol = check_positive("krylov_tol", krylov_tol, allow_zero=True)
        self.early_stop = check_flag("early_stop", early_stop)
        self.stretch = check_flag("stretch", stretch)
        self.preconditioner = check_choice("preconditioner", preconditioner, ("none", "rms"))
        self.preconditioner_beta = check_in_range("preconditioner_beta", preconditioner_beta,
                                                  0.0, 1.0)
        self.max_adjustments = check_count("max_adjustments", max_adjustments, 0)
        self.fallback_step = check_positive("fallback_step", fallback_step)
        self.armijo_c = check_in_range("armijo_c", armijo_c, 0.0, 1.0)
        self.armijo_tau = check_in_range("armijo_tau", armijo_tau, 1e-6, 1.0)
        self.max_backtracks = check_count("max_backtracks", max_backtracks, 0)
        self.flat_curvature = check_choice("flat_curvature", flat_curvature, ("scaled", "paper"))
        self.warm_start = check_choice("warm_start", warm_start, ("step", "direction", "none"))
        self.curvature = check_choice("curvature", curvature,
                                      ("bicomplex", "hvp", "gauss-newton"))
        self.damping = check_positive("damping", damping, allow_zero=True)
        self.refresh_every = check_count("refresh_every", refresh_every)
        if gradient_sample is not None:
            gradient_sample = check_count("gradient_sample", gradient_sample)
        self.gradient_sample = gradient_sample
        self.curvature_fraction = check_positive("curvature_fraction", curvature_fraction)
        if self.curvature_fraction > 1:
            raise ValueError(f"curvature_fraction must be in (0, 1], got {curvature_fraction!r}")
        if curvature_dtype is not None:
            curvature_dtype = check_choice("curvature_dtype", curvature_dtype,
                                           ("float32", "float64"))
        self.curvature_dtype = curvature_dtype
        self.global_gradient = check_choice("global_gradient", global_gradient,
                                            ("full", "running"))
        self.step_rule = check_choice("step", step, ("taylor", "armijo"))  # `step` is a method
        self.krylov_stop = check_choice("krylov_stop", krylov_stop, ("tolerance", "forcing"))
        self.cg_alpha = check_choice("cg_alpha", cg_alpha, ("standard", "paper"))
        self.post_screening = check_choice("post_screening", post_screening,
                                           ("reflect", "paper"))

    def config(self) -> dict[str, Any]:
        config = super().config()
        config["step"] = self.step_rule
        return config

    # --- state ------------------------------------------------------------------------------
    def init(self, oracle, w) -> State:
        """Line 1: the global gradient at the starting point; no warm start yet."""
        global_grad = self._global_gradient(oracle, w, iteration=0)
        return {
            "global_grad": global_grad,
            "warm_start": oracle.xp.zeros_like(w),
            "steps_since_refresh": 0,
            "iteration": 0,
            "damping": self.damping,
        } | ({"second_moment": oracle.xp.zeros_like(w)} if self.preconditioner == "rms" else {})

    def _global_gradient(self, oracle, w, iteration: int):
        if self.gradient_sample is None or self.gradient_sample >= oracle.size:
            return oracle.value_and_grad(w)[1]
        rng = np.random.default_rng([oracle.seed, iteration])
        rows = np.sort(rng.choice(oracle.size, self.gradient_sample, replace=False))
        inputs, targets = oracle.data
        return oracle.value_and_grad(w, (inputs[rows], targets[rows]))[1]

    # --- one iteration ----------------------------------------------------------------------
    def step(self, oracle, w, batch, state: State) -> tuple[Any, State, StepInfo]:
        g = state["global_grad"]
        iteration = state["iteration"] + 1
        dw = state["warm_start"] if self.warm_start != "none" else oracle.xp.zeros_like(w)
        # Lines 4 and 11 in one complex pass: the batch gradient and H_j dw together.
        damping = float(state.get("damping", self.damping))
        warm = bool((dw != 0).any())
        curvature_batch = self._curvature_batch(batch)
        if (warm and self.curvature != "gauss-newton" and curvature_batch is batch
                and self.curvature_dtype is None):
            loss, g_batch, h_dw = oracle.value_grad_and_hvp(w, dw, batch)
            h_dw = h_dw + w.dtype.type(damping) * dw
        else:  # a separate product, if any, after the screening below: a skipped batch needs none
            loss, g_batch = oracle.value_and_grad(w, batch)
            h_dw = None if warm else oracle.xp.zeros_like(w)
        if self.global_gradient == "running":
            # about one epoch of batch gradients, exponentially weighted: no full-data pass
            weight = w.dtype.type(min(1.0, len(batch[0]) / oracle.size) if batch else 1.0)
            g = g * (1 - weight) + g_batch * weight
        moment = {}
        inverse_preconditioner = None
        if self.preconditioner == "rms":
            # RMSprop's second moment of the batch gradients, bias-corrected: CG then runs
            # in the metric diag(sqrt(v) + eps), the scaling Adam and RMSprop step in
            beta = self.preconditioner_beta
            moment["second_moment"] = state["second_moment"] * beta + g_batch * g_batch * (
                1 - beta)
            corrected = moment["second_moment"] / (1 - beta**iteration)
            inverse_preconditioner = 1 / (oracle.xp.sqrt(corrected) + w.dtype.type(1e-8))
        if _dot(g_batch, g) < 0:  # pre-batch screening
            skipped = dict(state, iteration=iteration, global_grad=g, **moment)
            return w, skipped, StepInfo(loss=loss, step_size=0.0, skipped=True,
                                        reason="pre-screened: batch gradient opposes g")

        if h_dw is None:
            h_dw = self._product(oracle, w, dw, curvature_batch, damping)
        dw, dw_curvature, krylov, reasons = self._krylov(
            oracle, w, curvature_batch, g_batch, dw, h_dw, inverse_preconditioner, damping)
        if not bool((dw != 0).any()):  # g_j = 0: nothing to do on this batch
            return w, dict(state, iteration=iteration, **moment), StepInfo(
                loss=loss, step_size=0.0, krylov_iterations=krylov, reason="zero gradient")

        dw_dot_g = _dot(dw, g)
        if dw_dot_g > 0:  # post-batch screening: reflect dw so that dw . g < 0
            if self.post_screening == "reflect":
                dw = dw - (2.0 * dw_dot_g / _dot(g, g)) * g
            else:  # as printed: (1 + cos(dw, g)) dw, still an ascent direction for g
                cosine = dw_dot_g / math.sqrt(_dot(dw, dw) * _dot(g, g))
                dw = dw * w.dtype.type(1.0 + cosine)
            dw_curvature = None
            reasons.append("post-screened")
        if dw_curvature is None:
            dw_curvature = self._curvature_of(oracle, w, dw, curvature_batch)
        else:
            dw_curvature -= damping * _dot(dw, dw)  # the undamped model's

        trials: dict[float, float] = {}  # gamma -> f_j(w + gamma dw), each computed once

        def trial_loss(gamma: float) -> float:
            if gamma not in trials:
                trials[gamma] = oracle.value(w + dw * w.dtype.type(gamma), batch)
            return trials[gamma]

        if self.step_rule == "taylor":
            gamma, adjustments = self._taylor_step(trial_loss, w, loss, g_batch, dw,
                                                   dw_curvature)
        else:
            gamma, adjustments = self._armijo_step(trial_loss, w, loss, g_batch, dw)
        if self.damping > 0:  # Levenberg-Marquardt on the full step's reduction ratio
            predicted = _dot(dw, g_batch) + 0.5 * dw_curvature
            rho = (trial_loss(1.0) - loss) / predicted if predicted < 0 else math.nan
            damping = levenberg_marquardt(damping, rho)
        step = dw * w.dtype.type(gamma)
        w_new = w + step

        steps_since_refresh = state["steps_since_refresh"] + 1
        if steps_since_refresh >= self.refresh_every and self.global_gradient == "full":
            # line 48
            g, steps_since_refresh = self._global_gradient(oracle, w_new, iteration), 0
        new_state = {
            "global_grad": g,
            "warm_start": {"step": step, "direction": dw, "none": oracle.xp.zeros_like(w)}[
                self.warm_start],
            "steps_since_refresh": steps_since_refresh,
            "iteration": iteration,
            "damping": damping,
            **moment,
        }
        info = StepInfo(loss=loss, step_size=gamma, krylov_iterations=krylov,
                        adjustments=adjustments, reason="; ".join(reasons))
        return w_new, new_state, info

    def _curvature_batch(self, batch):
        """The examples the curvature products see: the batch, or its first
        ``curvature_fraction`` (at least one example; batches are drawn shuffled, so these
        are a random subsample of them)."""
        if self.curvature_fraction == 1.0 or batch is None:
            return batch
        inputs, targets = batch
        size = max(1, round(self.curvature_fraction * len(inputs)))
        return inputs[:size], targets[:size]

    def _product(self, oracle, w, v, batch, damping: float):
        """(H + lambda I) v from a complex pass, or (G + lambda I) v for the Gauss-Newton
        curvature."""
        product = (oracle.gauss_newton_product(w, v, batch, **self._precision())
                   if self.curvature == "gauss-newton"
                   else oracle.hvp(w, v, batch, **self._precision()))
        if not damping:
            return product.astype(w.dtype, copy=False)
        damped = v * w.dtype.type(damping)
        damped += product  # a float32 product is widened on the way, with no copy of it
        return damped

    def _precision(self) -> dict[str, str]:
        """The curvature products' dtype, for the oracle (none asked for by default)."""
        return {} if self.curvature_dtype is None else {"dtype": self.curvature_dtype}

    def _curvature_of(self, oracle, w, v, batch) -> float:
        """v^T H v (or v^T G v for the Gauss-Newton curvature), undamped."""
        if self.curvature == "gauss-newton":
            return _dot(v, oracle.gauss_newton_product(w, v, batch, **self._precision()))
        return oracle.curvature(w, v, batch, **self._precision())

    def _krylov(self, oracle, w, batch, g_batch, dw, h_dw, inverse_preconditioner=None,
                damping: float = 0.0):
        """Lines 12-28: CG on H_j dw = -g_j from the warm start, with early termination
        (preconditioned CG when ``inverse_preconditioner``, a diagonal, is given).
        Returns (dw, dw^T H_j dw or None where unknown, iterations, reasons)."""
        r = -(g_batch + h_dw)
        z = r if inverse_preconditioner is None else r * inverse_preconditioner
        # dw, r and p are this loop's own arrays, updated in place (dw starts as the warm
        # start, which the state keeps; p as z, which is r itself unpreconditioned)
        dw, p = dw.copy(), z.copy()
        rz = _dot(r, z)
        rr = _dot(r, r)
        g_norm = math.sqrt(_dot(g_batch, g_batch))
        if self.krylov_stop == "forcing":  # truncated Newton: ||r|| <= min(0.5, sqrt||g||) ||g||
            tolerance = min(0.5, math.sqrt(g_norm)) * g_norm
        else:
            tolerance = self.krylov_tol * g_norm
        first_curvature = None
        reason = f"max_krylov={self.max_krylov} reached"
        iterations = 0
        while iterations < self.max_krylov:
            if math.sqrt(rr) <= tolerance:
                reason = "converged"
                break
            if self.curvature == "bicomplex":  # CSDD2
                kappa = oracle.curvature(w, p, batch, **self._precision())
                kappa, hp = kappa + damping * _dot(p, p) if damping else kappa, None
            else:
                hp = self._product(oracle, w, p, batch, damping)
                kappa = _dot(p, hp)
            if first_curvature is None:
                first_curvature = kappa
            if not math.isfinite(kappa):
                reason = "non-finite curvature"
                break
            if kappa <= 0 and (self.early_stop or kappa == 0):
                reason = "non-positive curvature"
                break
            kappa = self._flat_substitute(kappa, p)
            # line 21 prints ||r|| / kappa; standard CG (the default) is r.z / kappa
            alpha = rz / kappa if self.cg_alpha == "standard" else math.sqrt(rr) / kappa
            if hp is None:
                hp = self._product(oracle, w, p, batch, damping)  # CSDD
            _cg_update(dw, r, p, hp, w.dtype.type(alpha))  # dw += alpha p, r -= alpha H p
            z = r if inverse_preconditioner is None else r * inverse_preconditioner
            rz_next = _dot(r, z)
            _next_direction(p, z, w.dtype.type(rz_next / rz))  # p = z + beta p
            rz, rr = rz_next, rz_next if inverse_preconditioner is None else _dot(r, r)
            iterations += 1
        if bool((dw != 0).any()):
            # CG keeps r = -(g_j + H_j dw), so dw^T H_j dw = -dw.(r + g_j) costs no pass.
            return dw, -_dot(dw, r + g_batch), iterations, [reason]
        # No step at all: dw is the first direction, the batch's (preconditioned) steepest
        # descent, whose curvature the loop has just measured (if it got that far).
        first_direction = -(g_batch + h_dw)
        if inverse_preconditioner is not None:
            first_direction = first_direction * inverse_preconditioner
        curvature = first_curvature if iterations == 0 and first_curvature is not None else None
        if curvature is not None and not math.isfinite(curvature):
            curvature = None
        return first_direction, curvature, iterations, [reason, "steepest descent"]

    def _flat_substitute(self, kappa: float, p) -> float:
        """Lines 18-19: a temporary curvature where the measured one is nearly zero."""
        if kappa <= 0:
            return kappa  # early_stop=False: plain CG goes on with the negative curvature
        if self.flat_curvature == "paper":
            return 0.01 * math.sqrt(_dot(p, p)) if kappa < 1e-8 else kappa
        pp = _dot(p, p)
        return 0.01 * pp if kappa < 1e-8 * pp else kappa

    def _taylor_step(self, trial_loss, w, loss, g_batch, dw, dw_curvature):
        """Lines 33-46: gamma with eta in [eta/2, eta], bounded; gamma = fallback otherwise."""
        slope = _dot(dw, g_batch)
        noise = _roundoff(loss, w.dtype)

        def taylor_ratio(gamma: float) -> float:
            trial = trial_loss(gamma)
            decrease = trial - loss
            model = gamma * slope + 0.5 * gamma * gamma * dw_curvature
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
            # The text's "stretch": grow gamma while the model stays trustworthy, keeping
            # the last gamma whose ratio did not exceed eta.
            while adjustments < self.max_adjustments and ratio < 0.5 * self.eta:
                adjustments += 1
                ratio = taylor_ratio(1.5 * gamma)
                if ratio > self.eta:
                    break
                gamma *= 1.5
            return gamma, adjustments
        while not 0.5 * self.eta <= ratio <= self.eta:
            if adjustments == self.max_adjustments:
                return self.fallback_step, adjustments
            gamma *= 0.5 if ratio > self.eta else 1.5
            adjustments += 1
            ratio = taylor_ratio(gamma)
        return gamma, adjustments

    def _armijo_step(self, trial_loss, w, loss, g_batch, dw):
        """Backtracking from gamma = 1 until f(w + gamma dw) <= f(w) + c gamma dw.g_j."""
        slope = _dot(dw, g_batch)
        noise = _roundoff(loss, w.dtype)
        gamma, adjustments = 1.0, 0
        while True:
            trial = trial_loss(gamma)
            # the roundoff of f is allowed for, or no step is accepted near a minimum
            if math.isfinite(trial) and trial <= loss + self.armijo_c * gamma * slope + noise:
                return gamma, adjustments
            if adjustments == self.max_backtracks:
                return self.fallback_step, adjustments
            gamma *= self.armijo_tau
            adjustments += 1


def _roundoff(loss: float, dtype) -> float:
    """The size of the rounding errors in a computed loss value (64 ulps of it)."""
    return 64 * float(np.finfo(dtype).eps) * abs(loss)


def _dot(a, b) -> float:
    return float(a @ b)


# CG's vector updates in one pass each, in place, with the roundings of the NumPy expressions
# they replace (a * x rounded, then the sum; no fused multiply-add): on the autoencoder's 2.8
# million parameters 8 ms a Krylov iteration against 24 for dw + a p, r - a Hp, z + b p.
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
    return all(isinstance(a, np.ndarray) and a.dtype == first.dtype and a.ndim == 1
               and a.flags.c_contiguous for a in arrays)


@numba.njit(cache=True, nogil=True)
def _cg_update_loop(dw, r, p, hp, alpha):  # pragma: no cover - compiled
    for i in range(dw.size):
        dw[i] += alpha * p[i]
        r[i] -= alpha * hp[i]


@numba.njit(cache=True, nogil=True)
def _next_direction_loop(p, z, beta):  # pragma: no cover - compiled
    for i in range(p.size):
        p[i] = z[i] + beta * p[i]


@variant_of(NewtonKrylov, curvature="hvp", global_gradient="running", krylov_stop="forcing")
class NewtonKrylovCheap(NewtonKrylov):
    """Algorithm 1 with cheap iterations: kappa = p.(H p) from the H p pass the next line
    needs anyway (``curvature="hvp"``: one network pass per Krylov iteration instead of two),
    the global gradient accumulated from the epoch's batch gradients
    (``global_gradient="running"``: no full-data pass per step) and CG truncated at the
    forcing term ||r|| <= min(0.5, sqrt(||g_j||)) ||g_j|| (``krylov_stop="forcing"``: no
    iterations spent solving a batch's Newton system past what its noise warrants).

    The combination was chosen on scikit-learn's digits (`benchmarks/bench_nk_variants.py`:
    the lowest loss of the variants measured on all three problems there, and among the
    cheapest) and is measured on MNIST in `benchmarks/experiments/`. Its other options and
    their defaults are `NewtonKrylov`'s."""

    name = "newton-krylov-cheap"


@variant_of(NewtonKrylov, curvature="gauss-newton", damping=1e-3, eta=0.2)
class NewtonKrylovGaussNewton(NewtonKrylov):
    """Algorithm 1 on the damped Gauss-Newton matrix G + lambda I instead of H_j
    (``curvature="gauss-newton"``, ``damping=1e-3``), with eta = 0.2, the top of the range
    the seed recommends (0.01 < eta < 0.2), instead of 0.05.

    G = J^T H_L J is positive semi-definite for a convex loss, so on a network CG no longer
    stops at the first direction of negative curvature (Algorithm 1 does, within 4-5
    iterations, in every iteration on the MNIST networks measured); lambda follows
    Levenberg-Marquardt (Martens 2010): x 3/2 when the full step's reduction ratio on the
    batch is below 1/4, x 2/3 above 3/4. Screening, the warm start, the Taylor-ratio step
    rule and the global gradient are Algorithm 1's. One setting for every problem, chosen
    from the runs in `benchmarks/experiments/` (every setting tried is listed there); on
    the squared-hinge SVM at batches of 128 and 1,024 it diverges (with gamma = 1 every
    step the warm-started steps grow from batch to batch: |dw| 1.6 -> 20 over the first 25
    at batch 128), as Algorithm 1 with eta = 0.2 does on digits; the full batch, the SVM's
    best, converges."""

    name = "newton-krylov-gn"


@variant_of(NewtonKrylov, curvature="gauss-newton", damping=1e-3, eta=0.2, max_krylov=10,
            global_gradient="running", gradient_sample=128, curvature_dtype="float32")
class NewtonKrylovFast(NewtonKrylov):
    """`NewtonKrylovGaussNewton` with cheap iterations: at most 10 Krylov iterations instead
    of 20, the global gradient accumulated from the batch gradients (``"running"``, started
    from a 128-example sample) instead of a full-data pass per step, and the Gauss-Newton
    products in float32 (``curvature_dtype``) while the gradient, the loss trials and the
    step stay in float64. One setting for every problem, measured on the six MNIST problems
    in `benchmarks/experiments/` against every baseline at its best learning rate, at equal
    epochs and at equal wall time (the settings tried on the way are listed there)."""

    name = "newton-krylov-fast"
