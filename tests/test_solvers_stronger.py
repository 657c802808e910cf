"""The stronger baselines of issue 12 -- Schedule-Free AdamW, Sophia-H, AdaHessian and
Shampoo with grafting -- against independent re-implementations of their reference
pseudo-code (facebookresearch/schedule_free, the Sophia paper's Algorithm 3, the AdaHessian
authors' optimizer, Distributed Shampoo's grafting), Hutchinson's estimator on known
Hessians, descent on a quadratic, Rosenbrock and a small MLP, and the state protocol."""

from __future__ import annotations

import copy
import io
import math

import numpy as np
import pytest
import scipy.linalg
from hypothesis import given
from hypothesis import strategies as st
from test_solvers_baselines import (
    GOAL,
    PROBLEMS,
    FakeOracle,
    GradientSequence,
    Quadratic,
    mlp_problem,
    spd_matrix,
    trajectory,
)

import mcnet as mc
from mcnet import nn
from mcnet.solvers import AdaHessian, ScheduleFreeAdamW, Shampoo, Sophia, make
from mcnet.solvers.adahessian import spatial_average
from mcnet.solvers.sophia import hutchinson_diagonal, rademacher_probe
from mcnet.training import Oracle

seeds = st.integers(0, 2**32 - 1)


def mixed_gradients(rng, steps: int, n: int):
    """Gradients of mixed magnitudes with an exact zero: exercises eps and accumulators."""
    grads = rng.standard_normal((steps, n)) * np.exp(rng.uniform(-3, 3, (steps, 1)))
    grads[3, 0] = 0.0
    return grads


def assert_trajectories_close(ours, theirs, rtol: float = 1e-12) -> None:
    ours, theirs = np.array(ours), np.array(theirs)
    # relative to the trajectory's scale: a coordinate crossing zero has no relative accuracy
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=rtol * np.abs(theirs).max())


def probe(seed: int, step: int, n: int):
    """The documented probe convention: Rademacher from default_rng([seed, step])."""
    return 2.0 * np.random.default_rng([seed, step]).integers(0, 2, size=n) - 1.0


class CurvatureSequence(FakeOracle):
    """Hands out a fixed gradient and Hessian per call, whatever w is (loss 0); H u from the
    step's Hessian. ``seed`` seeds the solver's probes."""

    def __init__(self, grads, hessians, shapes=None, seed: int = 0) -> None:
        super().__init__(grads.shape[1])
        if shapes is not None:
            self.shapes = shapes
        self.grads, self.hessians, self.seed, self.calls = grads, hessians, seed, 0

    def value_and_grad(self, w, batch=None):
        g = self.grads[self.calls].copy()
        self.calls += 1
        return 0.0, g

    def value_grad_and_hvp(self, w, v, batch=None):
        g, h = self.grads[self.calls].copy(), self.hessians[self.calls]
        self.calls += 1
        return 0.0, g, h @ v


def symmetric_indefinite(rng, steps: int, n: int):
    a = rng.standard_normal((steps, n, n))
    return (a + a.transpose(0, 2, 1)) * 0.5 * np.exp(rng.uniform(-2, 2, (steps, 1, 1)))


# --- Schedule-Free AdamW --------------------------------------------------------------------


def schedule_free_reference(
    w, grads, lr, betas, eps, weight_decay, warmup_steps, r, weight_lr_power
):
    """AdamWScheduleFreeReference.step, written out: explicit x, y, z (Defazio et al. 2024,
    Algorithm 1 with Adam's second moment). Returns the y and x trajectories."""
    beta1, beta2 = betas
    z, x, y, v = w.copy(), w.copy(), w.copy(), np.zeros_like(w)
    lr_max, weight_sum, ys, xs = -1.0, 0.0, [], []
    for k, g in enumerate(grads):
        sched = (k + 1) / warmup_steps if k < warmup_steps else 1.0
        lr_k = lr * sched * math.sqrt(1 - beta2 ** (k + 1))
        lr_max = max(lr_k, lr_max)
        weight = ((k + 1) ** r) * (lr_max**weight_lr_power)
        weight_sum = weight_sum + weight
        ckp1 = weight / weight_sum
        if weight_decay != 0:
            z = z - lr_k * weight_decay * y
        v = beta2 * v + (1 - beta2) * g * g
        z = z - lr_k * g / (np.sqrt(v) + eps)
        x = (1 - ckp1) * x + ckp1 * z
        y = beta1 * x + (1 - beta1) * z
        ys.append(y)
        xs.append(x)
    return ys, xs


def schedule_free_in_place(
    w, grads, lr, betas, eps, weight_decay, warmup_steps, r, weight_lr_power
):
    """AdamWScheduleFree.step (the fast form): only y and z are kept; eval() recovers x as
    lerp(y, z, 1 - 1/beta1). Returns the y and x trajectories."""
    beta1, beta2 = betas
    y, z, v = w.copy(), w.copy(), np.zeros_like(w)
    lr_max, weight_sum, ys, xs = -1.0, 0.0, [], []
    for k, g in enumerate(grads):
        sched = (k + 1) / warmup_steps if k < warmup_steps else 1.0
        lr_k = lr * sched * math.sqrt(1 - beta2 ** (k + 1))
        lr_max = max(lr_k, lr_max)
        weight = ((k + 1) ** r) * (lr_max**weight_lr_power)
        weight_sum += weight
        ckp1 = weight / weight_sum
        v = beta2 * v + (1 - beta2) * g * g
        normalized = g / (np.sqrt(v) + eps)
        if weight_decay != 0:
            normalized = normalized + weight_decay * y
        y = y + ckp1 * (z - y)
        y = y + lr_k * (beta1 * (1 - ckp1) - 1) * normalized
        z = z - lr_k * normalized
        ys.append(y)
        xs.append(y + (1 - 1 / beta1) * (z - y))
    return ys, xs


def schedule_free_run(solver, grads, w0):
    oracle = GradientSequence(grads)
    state, ys, xs, w = solver.init(oracle, w0), [], [], w0
    for _ in grads:
        w, state, _ = solver.step(oracle, w, None, state)
        ys.append(w)
        xs.append(solver.evaluation_point(state, w))
    return ys, xs


schedule_free_hyper = dict(
    lr=st.floats(1e-4, 1.0),
    beta1=st.floats(0.0, 0.99),
    beta2=st.floats(0.5, 0.9999),
    eps=st.sampled_from([1e-8, 1e-3]),
    weight_decay=st.sampled_from([0.0, 1e-3, 0.1]),
    warmup_steps=st.integers(0, 5),
    r=st.sampled_from([0.0, 1.0]),
    weight_lr_power=st.sampled_from([0.0, 2.0]),
)


def _schedule_free_case(
    seed, lr, beta1, beta2, eps, weight_decay, warmup_steps, r, weight_lr_power
):
    rng = np.random.default_rng(seed)
    grads, w0 = mixed_gradients(rng, 12, 7), rng.standard_normal(7)
    hyper = dict(lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay,
                 warmup_steps=warmup_steps, r=r, weight_lr_power=weight_lr_power)  # fmt: skip
    return grads, w0, hyper


@given(seed=seeds, **schedule_free_hyper)
def test_schedule_free_matches_the_reference_pseudocode(seed, **hyper):
    grads, w0, hyper = _schedule_free_case(seed, **hyper)
    ys, xs = schedule_free_run(ScheduleFreeAdamW(**hyper), grads, w0)
    ref_ys, ref_xs = schedule_free_reference(w0, grads, **hyper)
    assert_trajectories_close(ys, ref_ys)
    assert_trajectories_close(xs, ref_xs)


@given(seed=seeds, **dict(schedule_free_hyper, beta1=st.floats(0.5, 0.99)))
def test_schedule_free_matches_the_in_place_form_and_its_eval_point(seed, **hyper):
    """The fast reference keeps y and z only; its eval() point is our evaluation_point.
    (beta1 >= 0.5: its recovery of x divides by beta1.)"""
    grads, w0, hyper = _schedule_free_case(seed, **hyper)
    ys, xs = schedule_free_run(ScheduleFreeAdamW(**hyper), grads, w0)
    ref_ys, ref_xs = schedule_free_in_place(w0, grads, **hyper)
    assert_trajectories_close(ys, ref_ys, rtol=1e-11)
    assert_trajectories_close(xs, ref_xs, rtol=1e-11)


def test_schedule_free_evaluation_point_is_the_average_and_starts_at_w0():
    oracle, w0, batch = mlp_problem(samples=128)
    solver = ScheduleFreeAdamW(1e-2)
    state = solver.init(oracle, w0)
    np.testing.assert_array_equal(solver.evaluation_point(state, w0), w0)
    w = w0
    for _ in range(3):
        w, state, _ = solver.step(oracle, w, batch, state)
    x = solver.evaluation_point(state, w)
    assert x is state["x"] and not np.array_equal(x, w)
    # y = b1 x + (1 - b1) z: the gradient point lies between the average and the base
    np.testing.assert_allclose(w, 0.9 * x + 0.1 * state["z"], rtol=1e-14, atol=1e-15)


def test_fit_with_schedule_free_evaluates_and_keeps_x_and_checkpoints_y(tmp_path):
    from pathlib import Path

    from mcnet.training import checkpoint

    images, labels = mc.datasets.digits()
    data = (images[:256].reshape(256, 64), labels[:256])
    nn.manual_seed(0)
    net = nn.models.mlp([64, 16, 10], "tanh")
    history = mc.fit(
        net,
        nn.CrossEntropyLoss(),
        data,
        ScheduleFreeAdamW(0.05),
        epochs=1,
        batch_size=64,
        checkpoint=tmp_path,
        progress=False,
    )
    y, state, _ = checkpoint.load(Path(tmp_path), np)
    kept = nn.parameters_to_vector(net)
    np.testing.assert_array_equal(kept, state["x"])  # the module holds the average x ...
    assert not np.array_equal(kept, y)  # ... the checkpoint the gradient point y to go on
    loss = mc.training.evaluate(net, nn.CrossEntropyLoss(), data)[0]
    assert history.train_loss[-1] == loss


# --- Hutchinson's estimator -----------------------------------------------------------------


def test_rademacher_probe_is_reproducible_signs_in_the_dtype_of_w():
    oracle = Quadratic(np.eye(50), np.zeros(50))
    oracle.seed = 7
    w = np.zeros(50, dtype=np.float32)
    u = rademacher_probe(oracle, 3, w)
    assert u.dtype == np.float32 and set(np.unique(u)) == {-1.0, 1.0}
    np.testing.assert_array_equal(u, rademacher_probe(oracle, 3, w))
    np.testing.assert_array_equal(u, probe(7, 3, 50))
    assert not np.array_equal(u, rademacher_probe(oracle, 4, w))
    oracle.seed = 8
    assert not np.array_equal(u, rademacher_probe(oracle, 3, w))


@given(seed=seeds, step=st.integers(1, 10**6))
def test_hutchinson_is_exactly_the_diagonal_of_a_diagonal_hessian(seed, step):
    rng = np.random.default_rng(seed)
    d = rng.standard_normal(9) * np.exp(rng.uniform(-5, 5, 9))  # both signs, many scales
    oracle = Quadratic(np.diag(d), rng.standard_normal(9))
    oracle.seed = seed
    w = rng.standard_normal(9)
    loss, grad, estimate = hutchinson_diagonal(oracle, w, None, step)
    np.testing.assert_array_equal(estimate, d)
    np.testing.assert_array_equal(grad, oracle.grad(w))
    assert loss == oracle.value(w)


def test_hutchinson_averages_to_the_diagonal_of_a_full_hessian():
    """E[u (H u)] = diag(H): over all 2^n sign patterns the off-diagonal terms cancel
    exactly; over the solver's seeded probes the mean converges at the 1/sqrt(N) rate."""
    rng = np.random.default_rng(0)
    n = 5
    a = spd_matrix(rng, n, 10.0) - 2.0 * np.eye(n)
    signs = np.array(np.meshgrid(*[[-1.0, 1.0]] * n)).reshape(n, -1).T
    np.testing.assert_allclose(
        np.mean([u * (a @ u) for u in signs], axis=0), np.diag(a), atol=1e-14
    )
    oracle = Quadratic(a, np.zeros(n))
    draws = 4000
    mean = np.mean(
        [hutchinson_diagonal(oracle, np.zeros(n), None, t)[2] for t in range(1, draws + 1)], axis=0
    )
    spread = np.sqrt((a**2).sum(axis=1) - np.diag(a) ** 2)  # std of u_i (H u)_i
    assert np.all(np.abs(mean - np.diag(a)) < 5 * spread / np.sqrt(draws))


# --- Sophia-H -------------------------------------------------------------------------------


def sophia_reference(w, grads, hessians, seed, lr, betas, rho, weight_decay, eps, update_every):
    """Sophia, Algorithm 3 of Liu et al. with the Hutchinson estimator, coordinate by
    coordinate: h refreshed on steps t with t mod k = 1 (k = 1: every step) before the
    step, then theta -= lr lambda theta and theta -= lr clip(m / max(gamma h, eps), 1)."""
    beta1, beta2 = betas
    n = len(w)
    theta, m, h, out = [float(v) for v in w], [0.0] * n, [0.0] * n, []
    for t in range(1, len(grads) + 1):
        g = grads[t - 1]
        if (t - 1) % update_every == 0:
            u = probe(seed, t, n)
            hu = hessians[t - 1] @ u
            h = [beta2 * h[i] + (1 - beta2) * u[i] * hu[i] for i in range(n)]
        m = [beta1 * m[i] + (1 - beta1) * g[i] for i in range(n)]
        theta = [theta[i] - lr * weight_decay * theta[i] for i in range(n)]
        for i in range(n):
            ratio = m[i] / max(rho * h[i], eps)
            theta[i] -= lr * max(min(ratio, 1.0), -1.0)
        out.append(np.array(theta))
    return out


@given(
    seed=seeds,
    lr=st.floats(1e-4, 1.0),
    beta1=st.floats(0.0, 0.99),
    beta2=st.floats(0.5, 0.999),
    rho=st.sampled_from([0.01, 0.04, 1.0]),
    weight_decay=st.sampled_from([0.0, 0.1]),
    eps=st.sampled_from([1e-12, 1e-3]),
    update_every=st.integers(1, 4),
)
def test_sophia_matches_the_paper_pseudocode(
    seed, lr, beta1, beta2, rho, weight_decay, eps, update_every
):
    rng = np.random.default_rng(seed)
    steps, n = 12, 7
    # indefinite Hessians: the estimate takes both signs, so max(rho h, eps) is exercised
    grads, hessians = mixed_gradients(rng, steps, n), symmetric_indefinite(rng, steps, n)
    w0 = rng.standard_normal(n)
    hyper = dict(lr=lr, betas=(beta1, beta2), rho=rho, weight_decay=weight_decay, eps=eps,
                 update_every=update_every)  # fmt: skip
    oracle = CurvatureSequence(grads, hessians, seed=seed % 1000)
    ours = trajectory(Sophia(**hyper), oracle, w0, steps)
    assert_trajectories_close(ours, sophia_reference(w0, grads, hessians, seed % 1000, **hyper))


def test_sophia_takes_a_sign_step_where_the_curvature_estimate_is_negative():
    """The paper's max(rho h, eps) (not the released code's rho h + 1e-15, which would
    step uphill by |m| / |rho h|): a coordinate of negative curvature moves by lr against
    the gradient; one of large positive curvature by the Newton-like m / (rho h)."""
    oracle = Quadratic(np.diag([-1.0, 1e4]), np.zeros(2))
    solver = Sophia(lr=0.1, rho=1.0, weight_decay=0.0, update_every=1)
    w0 = np.array([0.5, 0.1])  # m / (rho h) = 3.5 w0 on the second coordinate: unclipped
    w1, state, _ = solver.step(oracle, w0, None, solver.init(oracle, w0))
    g = oracle.grad(w0)
    h = (1 - 0.99) * np.array([-1.0, 1e4])
    np.testing.assert_array_equal(state["hessian"], h)
    m = (1 - 0.965) * g
    # negative h: a sign step of size lr, downhill (f = -x^2/2 along it: away from 0)
    assert m[0] < 0 and w1[0] == w0[0] + 0.1
    assert 0 < m[1] / h[1] < 1
    assert w1[1] == pytest.approx(w0[1] - 0.1 * m[1] / h[1], rel=1e-14)


def test_sophia_refreshes_the_estimate_every_update_every_steps_with_one_hvp():
    oracle, w0, batch = mlp_problem(samples=128)
    solver = Sophia(lr=1e-2, update_every=3)
    state, w = solver.init(oracle, w0), w0
    kinds = []
    for _ in range(7):
        before = dict(oracle.counts)
        w, new, _ = solver.step(oracle, w, batch, state)
        kinds.append(
            {k: v - before.get(k, 0) for k, v in oracle.counts.items() if v - before.get(k, 0)}
        )
        refreshed = not np.array_equal(new["hessian"], state["hessian"])
        assert refreshed == (new["t"] in (1, 4, 7))
        state = new
    assert kinds == [{"hvp": 1} if t in (1, 4, 7) else {"gradient": 1} for t in range(1, 8)]


# --- AdaHessian -----------------------------------------------------------------------------

ADAHESSIAN_SHAPES = [(2, 3, 2, 2), (2,), (3, 4)]  # a conv kernel, a bias, a matrix: 38 numbers


def adahessian_reference(
    w, grads, hessians, seed, lr, betas, eps, weight_decay, hessian_power, update_every
):
    """The authors' Adahessian.step (get_trace: |Hv|, conv kernels averaged over dims
    (2, 3)), with davda54's update_each: the last estimate reused in between."""
    beta1, beta2 = betas
    theta, m, v, out = w.copy(), np.zeros_like(w), np.zeros_like(w), []
    trace = None
    for t in range(1, len(grads) + 1):
        if (t - 1) % update_every == 0:
            hv = hessians[t - 1] @ probe(seed, t, len(w))
            kernel = np.abs(hv[:24]).reshape(2, 3, 2, 2).mean(axis=(2, 3), keepdims=True)
            trace = np.concatenate([np.broadcast_to(kernel, (2, 3, 2, 2)).ravel(), np.abs(hv[24:])])
        m = beta1 * m + (1 - beta1) * grads[t - 1]
        v = beta2 * v + (1 - beta2) * trace * trace
        bias_correction1 = 1 - beta1**t
        bias_correction2 = 1 - beta2**t
        k = hessian_power
        denom = (np.sqrt(v) ** k) / math.sqrt(bias_correction2) ** k + eps
        theta = theta - lr * (m / bias_correction1 / denom + weight_decay * theta)
        out.append(theta)
    return out


@given(
    seed=seeds,
    lr=st.floats(1e-4, 1.0),
    beta1=st.floats(0.0, 0.99),
    beta2=st.floats(0.5, 0.9999),
    eps=st.sampled_from([1e-4, 1e-8]),
    weight_decay=st.sampled_from([0.0, 1e-2]),
    hessian_power=st.sampled_from([1.0, 0.5, 0.0]),
    update_every=st.integers(1, 3),
)
def test_adahessian_matches_the_authors_pseudocode(
    seed, lr, beta1, beta2, eps, weight_decay, hessian_power, update_every
):
    rng = np.random.default_rng(seed)
    steps, n = 8, 38
    grads, hessians = mixed_gradients(rng, steps, n), symmetric_indefinite(rng, steps, n)
    w0 = rng.standard_normal(n)
    hyper = dict(lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay,
                 hessian_power=hessian_power, update_every=update_every)  # fmt: skip
    oracle = CurvatureSequence(grads, hessians, shapes=ADAHESSIAN_SHAPES, seed=3)
    ours = trajectory(AdaHessian(**hyper), oracle, w0, steps)
    assert_trajectories_close(ours, adahessian_reference(w0, grads, hessians, 3, **hyper))


def test_spatial_average_of_a_conv_kernel_on_a_real_network():
    """On a Conv2d network the estimate is constant over each (kh, kw) window and equals
    the window's mean |H u|; the other parameters keep |H u| entry by entry."""
    nn.manual_seed(0)
    images, labels = mc.datasets.digits()
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Tanh(), nn.Flatten(), nn.Linear(72, 10))
    data = (images[:32].reshape(32, 1, 8, 8), labels[:32])
    oracle = Oracle(mc.Objective(net, nn.CrossEntropyLoss()), data)
    w = oracle.initial_point()
    assert oracle.shapes[0] == (2, 1, 3, 3)
    hu = oracle.hvp(w, rademacher_probe(oracle, 1, w), data)
    diag = spatial_average(hu, oracle.shapes)
    kernel = diag[:18].reshape(2, 1, 9)
    np.testing.assert_allclose(
        kernel,
        np.abs(hu[:18]).reshape(2, 1, 9).mean(axis=2, keepdims=True) * np.ones((1, 1, 9)),
        rtol=1e-15,
    )
    np.testing.assert_array_equal(diag[18:], np.abs(hu[18:]))
    solver = AdaHessian(lr=0.05)
    state = solver.init(oracle, w)
    w1, state, _ = solver.step(oracle, w, data, state)
    np.testing.assert_allclose(state["hessian_diag"], diag, rtol=1e-12)


# --- Shampoo with grafting ------------------------------------------------------------------

SHAMPOO_SHAPES = [(3, 4), (3,), (2, 2, 2)]


def grafted_shampoo_reference(w, grads, lr, eps, momentum, graft, graft_eps, graft_beta2, start):
    """Gupta et al.'s Shampoo with Distributed Shampoo's grafting, for SHAMPOO_SHAPES:
    each block's direction scaled to the grafted method's block norm; the grafted
    method alone before ``start``; heavy-ball momentum on the grafted direction."""
    root = lambda m: np.real(scipy.linalg.sqrtm(scipy.linalg.sqrtm(np.linalg.inv(m))))  # noqa: E731
    blocks = [(0, 12, (3, 4)), (12, 3, None), (15, 8, (2, 4))]
    stats = {
        0: (eps * np.eye(3), eps * np.eye(4)),
        1: np.full(3, eps),
        2: (eps * np.eye(2), eps * np.eye(4)),
    }
    accumulator, buf, theta, out = np.zeros_like(w), np.zeros_like(w), w.copy(), []
    for t, g in enumerate(grads, start=1):
        if graft == "adagrad":
            accumulator = accumulator + g * g
            grafted = g / (np.sqrt(accumulator) + graft_eps)
        else:
            accumulator = graft_beta2 * accumulator + (1 - graft_beta2) * g * g
            second = accumulator / (1 - graft_beta2**t) if graft == "adam" else accumulator
            grafted = g / (np.sqrt(second) + graft_eps)
        direction = []
        for i, (offset, size, matrix) in enumerate(blocks):
            gb = g[offset : offset + size]
            if matrix is None:
                stats[i] = stats[i] + gb * gb
                d = gb / np.sqrt(stats[i])
            else:
                gm = gb.reshape(matrix)
                left, right = stats[i]
                stats[i] = (left + gm @ gm.T, right + gm.T @ gm)
                d = (root(stats[i][0]) @ gm @ root(stats[i][1])).ravel()
            graft_block = grafted[offset : offset + size]
            if t < start:
                d = graft_block
            else:
                d = d * np.linalg.norm(graft_block) / (np.linalg.norm(d) + 1e-16)
            direction.append(d)
        buf = momentum * buf + np.concatenate(direction)
        theta = theta - lr * buf
        out.append(theta)
    return out


@given(
    seed=seeds,
    lr=st.floats(1e-3, 1.0),
    eps=st.sampled_from([1e-4, 1e-1]),
    momentum=st.sampled_from([0.0, 0.5]),
    graft=st.sampled_from(["adagrad", "rmsprop", "adam"]),
    graft_eps=st.sampled_from([1e-10, 1e-3]),
    graft_beta2=st.sampled_from([0.9, 0.99]),
    start=st.integers(1, 4),
)
def test_grafted_shampoo_matches_the_reference(
    seed, lr, eps, momentum, graft, graft_eps, graft_beta2, start
):
    rng = np.random.default_rng(seed)
    grads, w0 = mixed_gradients(rng, 5, 23), rng.standard_normal(23)
    oracle = GradientSequence(grads)
    oracle.shapes = SHAMPOO_SHAPES
    solver = Shampoo(
        lr,
        eps=eps,
        momentum=momentum,
        graft=graft,
        graft_eps=graft_eps,
        graft_beta2=graft_beta2,
        start_preconditioning_step=start,
    )
    ours = trajectory(solver, oracle, w0, 5)
    theirs = grafted_shampoo_reference(
        w0, grads, lr, eps, momentum, graft, graft_eps, graft_beta2, start
    )
    assert_trajectories_close(ours, theirs, rtol=1e-9)


def test_grafted_step_has_each_layers_grafted_norm_and_shampoos_direction():
    rng = np.random.default_rng(5)
    grad, w0 = rng.standard_normal(23), rng.standard_normal(23)
    oracle = GradientSequence(grad[None])
    oracle.shapes = SHAMPOO_SHAPES
    plain = Shampoo(0.3)
    d_plain = plain.step(oracle, w0, None, plain.init(oracle, w0))[0] - w0
    oracle.calls = 0
    grafted = Shampoo(0.3, graft="adagrad")
    d = grafted.step(oracle, w0, None, grafted.init(oracle, w0))[0] - w0
    adagrad_direction = grad / (np.abs(grad) + 1e-10)  # the first AdaGrad step: signs
    for offset, size in [(0, 12), (12, 3), (15, 8)]:
        block, plain_block = d[offset : offset + size], d_plain[offset : offset + size]
        assert np.linalg.norm(block) == pytest.approx(
            0.3 * np.linalg.norm(adagrad_direction[offset : offset + size]), rel=1e-12
        )
        cosine = block @ plain_block / np.linalg.norm(block) / np.linalg.norm(plain_block)
        assert cosine == pytest.approx(1.0, rel=1e-12)


def test_shampoo_without_graft_has_the_same_state_and_step_as_before():
    rng = np.random.default_rng(6)
    oracle = GradientSequence(rng.standard_normal((3, 23)))
    oracle.shapes = SHAMPOO_SHAPES
    solver = Shampoo(0.2, momentum=0.5)
    assert solver.config()["graft"] == "none"
    state = solver.init(oracle, np.zeros(23))
    assert "graft_accumulator" not in state
    assert sorted(state) == sorted(
        ["t", "momentum_buffer", "L0", "R0", "L0_root", "R0_root", "L1", "L2", "R2",
         "L2_root", "R2_root"])  # fmt: skip


def test_shampoo_roots_wait_for_the_start_of_preconditioning():
    rng = np.random.default_rng(7)
    oracle = GradientSequence(rng.standard_normal((4, 6)))
    oracle.shapes = [(2, 3)]
    solver = Shampoo(graft="rmsprop", start_preconditioning_step=3, update_every=10)
    w, state = np.zeros(6), solver.init(oracle, np.zeros(6))
    states = []
    for _ in range(4):
        w, state, _ = solver.step(oracle, w, None, state)
        states.append(state)
    initial = solver.init(oracle, np.zeros(6))["L0_root"]
    np.testing.assert_array_equal(states[1]["L0_root"], initial)  # steps 1, 2: not needed
    root = states[2]["L0_root"]  # step 3: computed from that step's statistics ...
    np.testing.assert_allclose(
        np.linalg.matrix_power(root, 4) @ states[2]["L0"], np.eye(2), atol=1e-9
    )
    assert states[3]["L0_root"] is root  # ... and kept until step 11


# --- every new solver: descent, state protocol, hyperparameters -----------------------------

TABLE = {
    "quadratic": {
        "schedule-free-adamw": (ScheduleFreeAdamW(0.1), 100),
        "sophia-h": (Sophia(0.05, weight_decay=0.0, update_every=2), 100),
        "adahessian": (AdaHessian(), 100),
        "shampoo-grafted": (Shampoo(0.5, graft="rmsprop"), 100),
    },
    "rosenbrock": {
        "schedule-free-adamw": (ScheduleFreeAdamW(0.05), 300),
        "sophia-h": (Sophia(0.05, weight_decay=0.0, update_every=1), 300),
        "adahessian": (AdaHessian(0.5), 300),
        "shampoo-grafted": (Shampoo(0.05, graft="rmsprop"), 300),
    },
    "mlp": {
        "schedule-free-adamw": (ScheduleFreeAdamW(0.02), 10),
        "sophia-h": (Sophia(0.01), 10),
        "adahessian": (AdaHessian(), 10),
        "shampoo-grafted": (Shampoo(0.01, graft="rmsprop", update_every=5), 10),
    },
}


@pytest.mark.parametrize("solver_name", list(TABLE["quadratic"]))
@pytest.mark.parametrize("problem", list(PROBLEMS))
def test_solver_decreases_loss(problem, solver_name):
    oracle, w0, batch = PROBLEMS[problem]()
    solver, steps = TABLE[problem][solver_name]
    best = oracle.minimizer() if isinstance(oracle, Quadratic) else None
    f_star = oracle.value(best) if best is not None else 0.0
    f0 = oracle.value(w0, batch)
    state, w = solver.init(oracle, w0), w0
    for _ in range(steps):
        w, state, _ = solver.step(oracle, w, batch, state)
    if hasattr(solver, "evaluation_point"):
        w = solver.evaluation_point(state, w)
    assert np.all(np.isfinite(w))
    assert oracle.value(w, batch) - f_star < GOAL[problem] * (f0 - f_star)


def new_solvers():
    return [
        ScheduleFreeAdamW(1e-2, weight_decay=1e-3, warmup_steps=2),
        Sophia(1e-2, update_every=2),
        AdaHessian(0.1, weight_decay=1e-3, update_every=2),
        Shampoo(0.1, update_every=2, momentum=0.5, graft="adam", start_preconditioning_step=2),
    ]


def solver_id(solver):
    return solver.name + ("-" + solver.graft if getattr(solver, "graft", "none") != "none" else "")


@pytest.mark.parametrize("solver", new_solvers(), ids=solver_id)
def test_step_never_mutates_and_state_round_trips_through_npz(solver):
    oracle, w, batch = mlp_problem(samples=128)
    state = solver.init(oracle, w)
    for _ in range(3):
        before_w, before = w.copy(), copy.deepcopy(state)
        w_new, new_state, info = solver.step(oracle, w, batch, state)
        np.testing.assert_array_equal(w, before_w)
        assert state.keys() == before.keys()
        for key, value in before.items():
            np.testing.assert_array_equal(state[key], value, err_msg=key)
        assert np.isfinite(info.loss)
        w, state = w_new, new_state
    for key, value in state.items():
        assert isinstance(value, (np.ndarray, int, float)) and not isinstance(value, bool), key
    buffer = io.BytesIO()
    np.savez(buffer, **state)
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as loaded:
        assert sorted(loaded.files) == sorted(state)
        restored = {k: (v.item() if v.ndim == 0 else v) for k, v in loaded.items()}
    # resumed from the saved state, the next steps (probes included) are bit-identical
    straight, resumed = (w, state), (w, restored)
    for _ in range(2):
        straight = solver.step(oracle, *straight[:1], batch, straight[1])[:2]
        resumed = solver.step(oracle, *resumed[:1], batch, resumed[1])[:2]
    np.testing.assert_array_equal(straight[0], resumed[0])


@pytest.mark.parametrize("solver", new_solvers(), ids=solver_id)
def test_float32_stays_float32(solver):
    oracle, w, batch = mlp_problem(np.float32, samples=64)
    assert w.dtype == np.float32
    state = solver.init(oracle, w)
    for _ in range(3):
        w, state, _ = solver.step(oracle, w, batch, state)
    assert w.dtype == np.float32 and np.all(np.isfinite(w))
    if hasattr(solver, "evaluation_point"):
        assert solver.evaluation_point(state, w).dtype == np.float32
    for key, value in state.items():
        if isinstance(value, np.ndarray):
            assert value.dtype == np.float32, key


@pytest.mark.parametrize("solver", new_solvers(), ids=solver_id)
def test_config_rebuilds_the_solver_and_make_knows_its_name(solver):
    config = solver.config()
    assert type(solver)(**config).config() == config
    assert make(solver.name, **config).config() == config
    assert solver.name == solver.name.lower() and " " not in solver.name and "_" not in solver.name


def test_defaults_are_the_references():
    assert ScheduleFreeAdamW().config() == dict(
        lr=0.0025, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, warmup_steps=0, r=0.0,
        weight_lr_power=2.0)  # fmt: skip
    assert Sophia().config() == dict(
        lr=1e-4, betas=(0.965, 0.99), rho=0.04, weight_decay=0.1, eps=1e-12, update_every=10
    )
    assert AdaHessian().config() == dict(
        lr=0.15, betas=(0.9, 0.999), eps=1e-4, weight_decay=0.0, hessian_power=1.0, update_every=1
    )


BAD = [
    (ScheduleFreeAdamW, dict(lr=0.0), ValueError, "lr"),
    (ScheduleFreeAdamW, dict(betas=(0.9, 1.0)), ValueError, r"betas\[1\]"),
    (ScheduleFreeAdamW, dict(betas=0.9), TypeError, "betas"),
    (ScheduleFreeAdamW, dict(eps=-1.0), ValueError, "eps"),
    (ScheduleFreeAdamW, dict(weight_decay=math.nan), ValueError, "weight_decay"),
    (ScheduleFreeAdamW, dict(warmup_steps=-1), ValueError, "warmup_steps"),
    (ScheduleFreeAdamW, dict(warmup_steps=2.5), TypeError, "warmup_steps"),
    (ScheduleFreeAdamW, dict(r=-1.0), ValueError, "^r must"),
    (ScheduleFreeAdamW, dict(weight_lr_power=-2.0), ValueError, "weight_lr_power"),
    (Sophia, dict(lr="fast"), TypeError, "lr"),
    (Sophia, dict(betas=(1.0, 0.99)), ValueError, r"betas\[0\]"),
    (Sophia, dict(rho=0.0), ValueError, "rho"),
    (Sophia, dict(eps=0.0), ValueError, "eps"),
    (Sophia, dict(weight_decay=-0.1), ValueError, "weight_decay"),
    (Sophia, dict(update_every=0), ValueError, "update_every"),
    (AdaHessian, dict(lr=-1.0), ValueError, "lr"),
    (AdaHessian, dict(eps=-1e-4), ValueError, "eps"),
    (AdaHessian, dict(hessian_power=1.5), ValueError, "hessian_power"),
    (AdaHessian, dict(update_every=True), TypeError, "update_every"),
    (Shampoo, dict(graft="sgd"), ValueError, "graft"),
    (Shampoo, dict(graft="adagrad", graft_eps=0.0), ValueError, "graft_eps"),
    (Shampoo, dict(graft="rmsprop", graft_beta2=1.0), ValueError, "graft_beta2"),
    (
        Shampoo,
        dict(graft="adam", start_preconditioning_step=0),
        ValueError,
        "start_preconditioning_step",
    ),
    (Shampoo, dict(start_preconditioning_step=3), ValueError, "start_preconditioning_step"),
]


@pytest.mark.parametrize("cls, kwargs, error, pattern", BAD)
def test_bad_hyperparameters_name_the_parameter(cls, kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        cls(**kwargs)


def test_shampoo_grafted_is_shampoo_with_adam_grafting_and_roots_every_10_steps():
    """shampoo-grafted = Shampoo(graft="adam", update_every=10): the same iterates over 12
    steps (a root refresh at step 10 included); options are Shampoo's, defaults overridable."""
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((60, 5)), rng.integers(0, 3, 60)
    runs = {}
    for name, solver in (
        ("variant", make("shampoo-grafted", lr=0.05)),
        ("spelled", Shampoo(lr=0.05, graft="adam", update_every=10)),
        ("plain", Shampoo(lr=0.05)),
    ):
        nn.manual_seed(0)
        oracle = Oracle(mc.Objective(nn.Linear(5, 3), nn.CrossEntropyLoss()), (x, y))
        w = oracle.initial_point()
        state = solver.init(oracle, w)
        for step in range(12):
            rows = slice(5 * step, 5 * step + 5)
            w, state, _ = solver.step(oracle, w, (x[rows], y[rows]), state)
        runs[name] = w
    np.testing.assert_array_equal(runs["variant"], runs["spelled"])
    assert not np.allclose(runs["variant"], runs["plain"])
    assert make("shampoo-grafted", graft="rmsprop").graft == "rmsprop"
