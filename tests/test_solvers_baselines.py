"""The baseline optimisers: torch.optim's update rules against independent re-implementations
of PyTorch's documented pseudo-code, descent on a quadratic, Rosenbrock and a small MLP, the
linear algebra inside the second-order methods, and the state protocol (never mutated,
arrays and scalars only, .npz round trip)."""

from __future__ import annotations

import copy
import io
import math

import numpy as np
import pytest
import scipy.linalg
from hypothesis import given
from hypothesis import strategies as st

import mcnet as mc
from mcnet import nn
from mcnet.solvers.adagrad import AdaGrad
from mcnet.solvers.adam import Adam
from mcnet.solvers.hessian_free import (
    HessianFree,
    conjugate_gradient,
    levenberg_marquardt,
    save_points,
)
from mcnet.solvers.lbfgs import LBFGS, two_loop
from mcnet.solvers.lscg import LSCG
from mcnet.solvers.newton_cg import NewtonCG
from mcnet.solvers.newton_krylov import NewtonKrylov
from mcnet.solvers.rmsprop import RMSprop
from mcnet.solvers.sgd import SGD
from mcnet.solvers.shampoo import Shampoo
from mcnet.training.oracle import Oracle

# --- fake oracles: analytic functions with the Oracle's interface ---------------------------


class FakeOracle:
    """value/gradient/Hessian of an analytic function of a flat vector; Hv, v^T H v and the
    Gauss-Newton product derived from ``hessian`` and ``gauss_newton``."""

    xp = np

    def __init__(self, n: int) -> None:
        self.shapes = [(n,)]

    def value_and_grad(self, w, batch=None):
        return self.value(w, batch), self.grad(w)

    def value_grad_and_hvp(self, w, v, batch=None):
        return self.value(w, batch), self.grad(w), self.hessian(w) @ v

    def grad_and_hvp(self, w, v, batch=None):
        return self.grad(w), self.hessian(w) @ v

    def hvp(self, w, v, batch=None):
        return self.hessian(w) @ v

    def curvature(self, w, v, batch=None):
        return float(v @ (self.hessian(w) @ v))

    def gauss_newton_product(self, w, v, batch=None):
        return self.gauss_newton(w) @ v

    def gauss_newton(self, w):
        return self.hessian(w)


class Quadratic(FakeOracle):
    """f(x) = x^T A x / 2 - b^T x; G = A unless ``gauss_newton_matrix`` says otherwise."""

    def __init__(self, a, b, gauss_newton_matrix=None) -> None:
        super().__init__(len(b))
        self.a, self.b = a, b
        self.g = a if gauss_newton_matrix is None else gauss_newton_matrix

    def value(self, w, batch=None):
        return float(0.5 * w @ (self.a @ w) - self.b @ w)

    def grad(self, w):
        return self.a @ w - self.b

    def hessian(self, w):
        return self.a

    def gauss_newton(self, w):
        return self.g

    def minimizer(self):
        return np.linalg.solve(self.a, self.b)


class Rosenbrock(FakeOracle):
    """(1 - x)^2 + 100 (y - x^2)^2 = |r|^2 with r = (1 - x, 10 (y - x^2)): G = 2 J^T J."""

    def __init__(self) -> None:
        super().__init__(2)

    def value(self, w, batch=None):
        x, y = w
        return float((1 - x) ** 2 + 100 * (y - x * x) ** 2)

    def grad(self, w):
        x, y = w
        return np.array([-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)])

    def hessian(self, w):
        x, y = w
        return np.array([[2 - 400 * (y - x * x) + 800 * x * x, -400 * x], [-400 * x, 200.0]])

    def gauss_newton(self, w):
        jacobian = np.array([[-1.0, 0.0], [-20 * w[0], 10.0]])
        return 2 * jacobian.T @ jacobian


class GradientSequence(FakeOracle):
    """Hands out a fixed sequence of gradients, whatever w is (loss 0)."""

    def __init__(self, grads) -> None:
        super().__init__(grads.shape[1])
        self.grads, self.calls = grads, 0

    def value_and_grad(self, w, batch=None):
        g = self.grads[self.calls].copy()
        self.calls += 1
        return 0.0, g


def spd_matrix(rng, n: int, condition: float = 10.0):
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return (q * np.geomspace(1.0, condition, n)) @ q.T


def trajectory(solver, oracle, w, steps: int, batch=None) -> list:
    state = solver.init(oracle, w)
    points = []
    for _ in range(steps):
        w, state, _ = solver.step(oracle, w, batch, state)
        points.append(w)
    return points


# --- torch.optim's rules, re-implemented from the pseudo-code in PyTorch's docs --------------


def torch_sgd(w, grads, lr, momentum, dampening, nesterov, weight_decay):
    theta, b, out = w.copy(), None, []
    for t, grad in enumerate(grads, start=1):
        g = grad.copy()
        if weight_decay != 0:
            g = g + weight_decay * theta
        if momentum != 0:
            b = (momentum * b + (1 - dampening) * g) if t > 1 else g
            g = g + momentum * b if nesterov else b
        theta = theta - lr * g
        out.append(theta)
    return out


def torch_adam(w, grads, lr, betas, eps, weight_decay, amsgrad):
    beta1, beta2 = betas
    theta, m, v, v_max, out = w.copy(), 0 * w, 0 * w, 0 * w, []
    for t, grad in enumerate(grads, start=1):
        g = grad + weight_decay * theta if weight_decay != 0 else grad
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g**2
        m_hat = m / (1 - beta1**t)
        if amsgrad:  # torch.optim.Adam keeps the maximum of the raw v, then bias-corrects
            v_max = np.maximum(v_max, v)
            v_hat = v_max / (1 - beta2**t)
        else:
            v_hat = v / (1 - beta2**t)
        theta = theta - lr * m_hat / (np.sqrt(v_hat) + eps)
        out.append(theta)
    return out


def torch_adagrad(w, grads, lr, lr_decay, weight_decay, initial_accumulator_value, eps):
    theta, total, out = w.copy(), np.full_like(w, initial_accumulator_value), []
    for t, grad in enumerate(grads, start=1):
        gamma = lr / (1 + (t - 1) * lr_decay)
        g = grad + weight_decay * theta if weight_decay != 0 else grad
        total = total + g**2
        theta = theta - gamma * g / (np.sqrt(total) + eps)
        out.append(theta)
    return out


def torch_rmsprop(w, grads, lr, alpha, eps, weight_decay, momentum, centered):
    theta, v, g_ave, b, out = w.copy(), 0 * w, 0 * w, 0 * w, []
    for grad in grads:
        g = grad + weight_decay * theta if weight_decay != 0 else grad
        v = alpha * v + (1 - alpha) * g**2
        v_tilde = v
        if centered:
            g_ave = alpha * g_ave + (1 - alpha) * g
            v_tilde = v_tilde - g_ave**2
        if momentum > 0:
            b = momentum * b + g / (np.sqrt(v_tilde) + eps)
            theta = theta - lr * b
        else:
            theta = theta - lr * g / (np.sqrt(v_tilde) + eps)
        out.append(theta)
    return out


def _compare(solver, reference, seed: int, **hyper) -> None:
    rng = np.random.default_rng(seed)
    n, steps = 7, 12
    # Gradients of mixed magnitudes (and an exact zero) exercise eps and the accumulators.
    grads = rng.standard_normal((steps, n)) * np.exp(rng.uniform(-3, 3, (steps, 1)))
    grads[3, 0] = 0.0
    w0 = rng.standard_normal(n)
    ours = trajectory(solver, GradientSequence(grads), w0, steps)
    theirs = reference(w0, grads, **hyper)
    ours, theirs = np.array(ours), np.array(theirs)
    # 1e-12 relative to the trajectory's scale: a coordinate crossing zero has no relative
    # accuracy to speak of (the same update rounds differently near cancellation).
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12 * np.abs(theirs).max())


seeds = st.integers(0, 2**32 - 1)
fractions = st.floats(0.0, 0.99)
rates = st.floats(1e-4, 1.0)
decays = st.sampled_from([0.0, 1e-3, 0.1])


@given(
    seed=seeds,
    lr=rates,
    momentum=st.sampled_from([0.0, 0.5, 0.9]),
    dampening=st.sampled_from([0.0, 0.3]),
    nesterov=st.booleans(),
    weight_decay=decays,
)
def test_sgd_matches_torch_pseudocode(seed, lr, momentum, dampening, nesterov, weight_decay):
    if nesterov and (momentum == 0 or dampening != 0):
        nesterov = False  # torch refuses that combination (tested with the bad values)
    hyper = dict(lr=lr, momentum=momentum, dampening=dampening, nesterov=nesterov,
                 weight_decay=weight_decay)  # fmt: skip
    _compare(SGD(**hyper), torch_sgd, seed, **hyper)


@given(
    seed=seeds,
    lr=rates,
    beta1=fractions,
    beta2=st.floats(0.5, 0.9999),
    eps=st.sampled_from([1e-8, 1e-3]),
    weight_decay=decays,
    amsgrad=st.booleans(),
)
def test_adam_matches_torch_pseudocode(seed, lr, beta1, beta2, eps, weight_decay, amsgrad):
    hyper = dict(lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay,
                 amsgrad=amsgrad)  # fmt: skip
    _compare(Adam(**hyper), torch_adam, seed, **hyper)


@given(
    seed=seeds,
    lr=rates,
    lr_decay=decays,
    weight_decay=decays,
    initial_accumulator_value=st.sampled_from([0.0, 0.1]),
    eps=st.sampled_from([1e-10, 1e-3]),
)
def test_adagrad_matches_torch_pseudocode(
    seed, lr, lr_decay, weight_decay, initial_accumulator_value, eps
):
    hyper = dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                 initial_accumulator_value=initial_accumulator_value, eps=eps)  # fmt: skip
    _compare(AdaGrad(**hyper), torch_adagrad, seed, **hyper)


@given(
    seed=seeds,
    lr=rates,
    alpha=st.floats(0.5, 0.99),
    eps=st.sampled_from([1e-8, 1e-3]),
    weight_decay=decays,
    momentum=st.sampled_from([0.0, 0.9]),
    centered=st.booleans(),
)
def test_rmsprop_matches_torch_pseudocode(seed, lr, alpha, eps, weight_decay, momentum, centered):
    hyper = dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                 centered=centered)  # fmt: skip
    _compare(RMSprop(**hyper), torch_rmsprop, seed, **hyper)


# --- every solver decreases every problem ---------------------------------------------------


def quadratic_problem():
    rng = np.random.default_rng(0)
    oracle = Quadratic(spd_matrix(rng, 10, 20.0), rng.standard_normal(10))
    return oracle, rng.standard_normal(10), None


def rosenbrock_problem():
    return Rosenbrock(), np.array([-1.2, 1.0]), None


def mlp_problem(dtype=np.float64, samples: int = 256):
    nn.init.manual_seed(0)
    images, labels = mc.datasets.digits(dtype=dtype)
    inputs, targets = images[:samples].reshape(samples, 64), labels[:samples]
    model = nn.models.mlp([64, 16, 10], "tanh").to(dtype=dtype)
    oracle = Oracle(mc.Objective(model, nn.CrossEntropyLoss()), (inputs, targets))
    return oracle, oracle.initial_point(), (inputs[:128], targets[:128])


PROBLEMS = {"quadratic": quadratic_problem, "rosenbrock": rosenbrock_problem, "mlp": mlp_problem}

# (solver, steps) per problem, and the fraction of the initial gap f(w0) - f* to get below:
# first-order methods get a learning rate tuned enough to make steady progress.
TABLE = {
    "quadratic": {
        "sgd": (SGD(0.05, momentum=0.9, nesterov=True), 100),
        "adam": (Adam(0.1), 100),
        "adagrad": (AdaGrad(0.5), 100),
        "rmsprop": (RMSprop(0.02, centered=True), 100),
        "lbfgs": (LBFGS(), 20),
        "hessian-free": (HessianFree(damping=1e-3), 5),
        "lscg": (LSCG(), 3),
        "shampoo": (Shampoo(0.5), 100),
        "newton-krylov": (NewtonKrylov(), 2),
        "newton-cg": (NewtonCG(), 2),
    },
    "rosenbrock": {
        "sgd": (SGD(1e-3, momentum=0.9), 300),
        "adam": (Adam(0.05), 300),
        "adagrad": (AdaGrad(0.5), 300),
        "rmsprop": (RMSprop(0.01, momentum=0.5), 300),
        "lbfgs": (LBFGS(), 50),
        "hessian-free": (HessianFree(max_cg=10), 50),
        "lscg": (LSCG(), 50),
        "shampoo": (Shampoo(0.1), 300),
        "newton-krylov": (NewtonKrylov(), 20),
        "newton-cg": (NewtonCG(), 20),
    },
    "mlp": {
        "sgd": (SGD(0.5, momentum=0.9), 10),
        "adam": (Adam(0.01), 10),
        "adagrad": (AdaGrad(0.1), 10),
        "rmsprop": (RMSprop(0.01), 10),
        "lbfgs": (LBFGS(), 10),
        "hessian-free": (HessianFree(max_cg=10), 5),
        # damping 0: with a damping far above the Hessian's eigenvalues (small at a fresh
        # init) (H^2 + damping)^-1 H g is just a short H g, often uphill
        "lscg": (LSCG(max_cg=10), 10),
        "shampoo": (Shampoo(0.1), 10),
        "newton-krylov": (NewtonKrylov(), 5),
        "newton-cg": (NewtonCG(), 5),
    },
}
GOAL = {"quadratic": 0.1, "rosenbrock": 0.25, "mlp": 0.75}


@pytest.mark.parametrize("solver_name", list(TABLE["quadratic"]))
@pytest.mark.parametrize("problem", list(PROBLEMS))
def test_solver_decreases_loss(problem, solver_name):
    oracle, w0, batch = PROBLEMS[problem]()
    solver, steps = TABLE[problem][solver_name]
    assert solver.name == solver_name
    best = oracle.minimizer() if isinstance(oracle, Quadratic) else None
    f_star = oracle.value(best) if best is not None else 0.0  # Rosenbrock, CE: 0 below
    f0 = oracle.value(w0, batch)
    w = trajectory(solver, oracle, w0, steps, batch)[-1]
    assert np.all(np.isfinite(w))
    assert oracle.value(w, batch) - f_star < GOAL[problem] * (f0 - f_star)


# --- Hessian-free ---------------------------------------------------------------------------


@given(seed=seeds, warm=st.booleans())
def test_hessian_free_cg_solves_spd_system(seed, warm):
    rng = np.random.default_rng(seed)
    n = 8
    a, g = spd_matrix(rng, n, 100.0), rng.standard_normal(n)
    x0 = rng.standard_normal(n) * 0.1 if warm else np.zeros(n)
    iterates, _ = conjugate_gradient(
        lambda v: a @ v, g, x0, max_iterations=60, tol=1e-12, keep=save_points(60)
    )
    i, p, phi = iterates[-1]
    assert np.linalg.norm(a @ p + g) <= 1e-8 * np.linalg.norm(g)
    assert phi == pytest.approx(0.5 * p @ a @ p + g @ p, rel=1e-10)
    # the kept iterates are the ceil(1.3^j) and the last, in order
    assert [j for j, _, _ in iterates] == sorted(save_points(i) | {i})


def test_hessian_free_step_solves_quadratic_with_tiny_damping():
    rng = np.random.default_rng(1)
    oracle = Quadratic(spd_matrix(rng, 6, 10.0), rng.standard_normal(6))
    solver = HessianFree(damping=1e-10, cg_tol=1e-12)
    w, state, info = solver.step(oracle, np.zeros(6), None, solver.init(oracle, np.zeros(6)))
    np.testing.assert_allclose(w, oracle.minimizer(), rtol=0, atol=1e-8)
    assert info.step_size == 1.0 and info.krylov_iterations >= 6
    assert state["damping"] < 1e-10  # rho = 1: the model was right, lambda shrinks


def test_levenberg_marquardt_rule():
    assert levenberg_marquardt(1.0, 0.1) == 1.5
    assert levenberg_marquardt(1.0, -3.0) == 1.5
    assert levenberg_marquardt(1.0, math.nan) == 1.5
    assert levenberg_marquardt(1.0, 0.5) == 1.0
    assert levenberg_marquardt(1.0, 0.9) == pytest.approx(2 / 3)


@pytest.mark.parametrize("curvature_scale, moves", [(1.0, "down"), (0.05, "up")])
def test_hessian_free_damping_follows_rho(curvature_scale, moves):
    """A Gauss-Newton matrix equal to the Hessian predicts the decrease exactly (rho = 1:
    lambda falls); one 20 times too flat predicts steps far too long (rho < 1/4: it rises)."""
    rng = np.random.default_rng(2)
    a = spd_matrix(rng, 5, 4.0)
    oracle = Quadratic(a, rng.standard_normal(5), gauss_newton_matrix=curvature_scale * a)
    solver = HessianFree(damping=1e-3, cg_tol=1e-10)
    w0 = np.zeros(5)
    _, state, _ = solver.step(oracle, w0, None, solver.init(oracle, w0))
    assert (state["damping"] < 1e-3) if moves == "down" else (state["damping"] > 1e-3)


# --- L-BFGS ---------------------------------------------------------------------------------


@given(seed=seeds, offset=st.integers(0, 3))
def test_lbfgs_two_loop_with_exact_conjugate_pairs_is_the_inverse_hessian(seed, offset):
    """With n A-conjugate steps s_i and y_i = A s_i, BFGS's hereditary property makes the
    inverse-Hessian approximation exactly A^-1 (Nocedal & Wright, Thm 6.4)."""
    rng = np.random.default_rng(seed)
    n = 5
    a = spd_matrix(rng, n, 50.0)
    s = []
    for v in rng.standard_normal((n, n)):  # Gram-Schmidt in the A inner product
        for u in s:
            v = v - (u @ a @ v) / (u @ a @ u) * u
        s.append(v)
    history = n + 3  # a ring buffer that has wrapped around
    s_mem, y_mem = np.zeros((history, n)), np.zeros((history, n))
    for k, v in enumerate(s):
        s_mem[(offset + k) % history], y_mem[(offset + k) % history] = v, a @ v
    g = rng.standard_normal(n)
    direction = two_loop(g, s_mem, y_mem, count=n, head=(offset + n) % history)
    expected = np.linalg.solve(a, g)
    np.testing.assert_allclose(direction, expected, rtol=0, atol=1e-9 * np.abs(expected).max())


def test_lbfgs_rejects_a_pair_with_negative_curvature():
    oracle = Quadratic(-np.eye(3), np.zeros(3))  # concave: every s^T y < 0
    solver = LBFGS()
    w0 = np.array([1.0, -2.0, 0.5])
    w1, state, info = solver.step(oracle, w0, None, solver.init(oracle, w0))
    assert oracle.value(w1) < oracle.value(w0)  # the step is taken ...
    assert state["count"] == 0 and "skipped" in info.reason  # ... the pair is not kept


def test_lbfgs_keeps_good_pairs_and_resets_on_an_ascent_direction():
    oracle = Quadratic(np.diag([1.0, 4.0]), np.zeros(2))
    solver = LBFGS(history=3)
    w0 = np.array([1.0, 1.0])
    w1, state, info = solver.step(oracle, w0, None, solver.init(oracle, w0))
    assert state["count"] == 1 and state["head"] == 1 and info.reason == ""
    # A corrupted pair (s^T y < 0) makes -H g an ascent direction: memory reset, d = -g.
    bad = dict(state, s=np.array([[1.0, 0], [0, 0], [0, 0]]),
               y=np.array([[-1.0, 0], [0, 0], [0, 0]]))  # fmt: skip
    w2, state2, info2 = solver.step(oracle, w1, None, bad)
    assert "reset" in info2.reason and oracle.value(w2) < oracle.value(w1)
    assert state2["count"] <= 1


# --- LSCG and Shampoo ----------------------------------------------------------------------


@given(seed=seeds)
def test_lscg_one_step_solves_an_spd_quadratic(seed):
    rng = np.random.default_rng(seed)
    oracle = Quadratic(spd_matrix(rng, 6, 10.0), rng.standard_normal(6))
    solver = LSCG(max_cg=50, cg_tol=1e-14)
    w0 = rng.standard_normal(6)
    w1, _, info = solver.step(oracle, w0, None, solver.init(oracle, w0))
    np.testing.assert_allclose(w1, oracle.minimizer(), rtol=0, atol=1e-8)
    assert info.step_size == 1.0


class FixedGradient(FakeOracle):
    def __init__(self, shapes, grad) -> None:
        self.shapes, self.g = shapes, grad

    def value_and_grad(self, w, batch=None):
        return 0.0, self.g.copy()


def shampoo_reference(grad, eps: float, power) -> np.ndarray:
    """Gupta et al.'s update direction for shapes [(3, 4), (3,), (2, 2, 2)], written out."""

    def matrix_update(g):
        left = eps * np.eye(g.shape[0]) + g @ g.T
        right = eps * np.eye(g.shape[1]) + g.T @ g
        return np.real(power(left) @ g @ power(right))

    return np.concatenate([
        matrix_update(grad[:12].reshape(3, 4)).ravel(),
        grad[12:15] / np.sqrt(eps + grad[12:15] ** 2),
        matrix_update(grad[15:].reshape(2, 4)).ravel(),
    ])  # fmt: skip


SHAMPOO_SHAPES = [(3, 4), (3,), (2, 2, 2)]


def shampoo_first_step(seed: int, lr: float, eps: float):
    rng = np.random.default_rng(seed)
    grad, w0 = rng.standard_normal(23), rng.standard_normal(23)
    solver = Shampoo(lr=lr, eps=eps)
    oracle = FixedGradient(SHAMPOO_SHAPES, grad)
    w1, _, _ = solver.step(oracle, w0, None, solver.init(oracle, w0))
    return grad, w0, w1


def test_shampoo_first_update_is_the_fractional_power_formula():
    grad, w0, w1 = shampoo_first_step(0, 0.3, 1e-4)
    expected = shampoo_reference(
        grad, 1e-4, lambda m: scipy.linalg.fractional_matrix_power(m, -0.25)
    )
    np.testing.assert_allclose(w1, w0 - 0.3 * expected, rtol=1e-9, atol=1e-9)


@given(seed=seeds, lr=rates, eps=st.sampled_from([1e-4, 1e-1]))
def test_shampoo_first_update_matches_square_roots_of_the_inverse(seed, lr, eps):
    # (L^-1)^(1/2)^(1/2) by scipy's Schur square roots: independent of the solver's eigh,
    # and 200 times faster than fractional_matrix_power, so hypothesis can draw many.
    grad, w0, w1 = shampoo_first_step(seed, lr, eps)
    expected = shampoo_reference(
        grad, eps, lambda m: scipy.linalg.sqrtm(scipy.linalg.sqrtm(np.linalg.inv(m)))
    )
    scale = lr * np.abs(expected).max()
    np.testing.assert_allclose(w1, w0 - lr * expected, rtol=1e-9, atol=1e-9 * scale)


def test_shampoo_roots_are_refreshed_every_update_every_steps():
    rng = np.random.default_rng(3)
    oracle = GradientSequence(rng.standard_normal((4, 6)))
    oracle.shapes = [(2, 3)]
    solver = Shampoo(update_every=2, momentum=0.5)
    w, state = np.zeros(6), solver.init(oracle, np.zeros(6))
    states = []
    for _ in range(4):
        w, state, _ = solver.step(oracle, w, None, state)
        states.append(state)
    # refreshed on steps 1 and 3 from that step's statistics, reused on steps 2 and 4
    assert states[1]["L0_root"] is states[0]["L0_root"]
    assert states[3]["R0_root"] is states[2]["R0_root"]
    for name in ("L0", "R0"):
        root = states[2][f"{name}_root"]
        np.testing.assert_allclose(
            np.linalg.matrix_power(root, 4) @ states[2][name], np.eye(len(root)), atol=1e-9
        )


# --- the state protocol ---------------------------------------------------------------------


def all_solvers():
    return [
        SGD(0.1, momentum=0.9, weight_decay=1e-3),
        Adam(1e-2, amsgrad=True),
        AdaGrad(0.1),
        RMSprop(1e-2, momentum=0.5, centered=True),
        LBFGS(history=3),
        HessianFree(max_cg=5),
        LSCG(max_cg=3, damping=1.0),
        Shampoo(0.1, update_every=2, momentum=0.5),
    ]


@pytest.mark.parametrize("solver", all_solvers(), ids=lambda s: s.name)
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
        for key, value in state.items():
            np.testing.assert_array_equal(loaded[key], value)
        # a state loaded back (scalars as 0-d arrays, as checkpoints do) is accepted by step
        restored = {k: (v.item() if v.ndim == 0 else v) for k, v in loaded.items()}
    solver.step(oracle, w, batch, restored)


@pytest.mark.parametrize("solver", all_solvers(), ids=lambda s: s.name)
def test_float32_stays_float32(solver):
    oracle, w, batch = mlp_problem(np.float32, samples=64)
    assert w.dtype == np.float32
    state = solver.init(oracle, w)
    for _ in range(2):
        w, state, _ = solver.step(oracle, w, batch, state)
    assert w.dtype == np.float32
    for key, value in state.items():
        if isinstance(value, np.ndarray):
            assert value.dtype == np.float32, key


@pytest.mark.parametrize("solver", all_solvers(), ids=lambda s: s.name)
def test_config_rebuilds_the_solver(solver):
    config = solver.config()
    assert type(solver)(**config).config() == config
    assert solver.name == solver.name.lower() and " " not in solver.name and "_" not in solver.name


BAD = [
    (SGD, dict(lr=0.0), ValueError, "lr"),
    (SGD, dict(lr="fast"), TypeError, "lr"),
    (SGD, dict(lr=0.1, momentum=-0.1), ValueError, "momentum"),
    (SGD, dict(lr=0.1, dampening=1.5), ValueError, "dampening"),
    (SGD, dict(lr=0.1, nesterov=True), ValueError, "nesterov"),
    (SGD, dict(lr=0.1, nesterov="yes"), TypeError, "nesterov"),
    (SGD, dict(lr=0.1, weight_decay=math.inf), ValueError, "weight_decay"),
    (Adam, dict(betas=(0.9, 1.0)), ValueError, "betas[1]"),
    (Adam, dict(betas=0.9), TypeError, "betas"),
    (Adam, dict(eps=-1.0), ValueError, "eps"),
    (Adam, dict(amsgrad=1), TypeError, "amsgrad"),
    (AdaGrad, dict(lr_decay=-1.0), ValueError, "lr_decay"),
    (AdaGrad, dict(initial_accumulator_value=-1.0), ValueError, "initial_accumulator_value"),
    (RMSprop, dict(alpha=1.0), ValueError, "alpha"),
    (RMSprop, dict(centered=None), TypeError, "centered"),
    (LBFGS, dict(history=0), ValueError, "history"),
    (LBFGS, dict(history=2.5), TypeError, "history"),
    (LBFGS, dict(c1=0.0), ValueError, "c1"),
    (LBFGS, dict(tau=1.0), ValueError, "tau"),
    (LBFGS, dict(max_backtracks=-1), ValueError, "max_backtracks"),
    (HessianFree, dict(damping=0.0), ValueError, "damping"),
    (HessianFree, dict(max_cg=0), ValueError, "max_cg"),
    (HessianFree, dict(warm_start=1.5), ValueError, "warm_start"),
    (HessianFree, dict(cg_tol=-1e-3), ValueError, "cg_tol"),
    (LSCG, dict(damping=-1.0), ValueError, "damping"),
    (LSCG, dict(c=0.0), ValueError, "c"),
    (Shampoo, dict(eps=0.0), ValueError, "eps"),
    (Shampoo, dict(update_every=0), ValueError, "update_every"),
    (Shampoo, dict(momentum=-0.5), ValueError, "momentum"),
]


@pytest.mark.parametrize("cls, kwargs, error, name", BAD)
def test_bad_hyperparameters_name_the_parameter(cls, kwargs, error, name):
    with pytest.raises(error, match=name.replace("[", r"\[").replace("]", r"\]")):
        cls(**kwargs)
