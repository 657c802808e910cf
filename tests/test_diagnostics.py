"""`mcnet.diagnostics`: Hessian eigenvalues, trace and spectral density from the exact H v.

The references never come from ``Objective.hessian`` (built from the same H v products):
closed-form Hessians (least squares H = (2/N) X̃ᵀX̃, logistic regression
H = (1/N) Σ σ(1-σ) x̃x̃ᵀ, with x̃ = [x, 1]), Hessians with chosen eigenvalues, and for a
nonlinear MLP a dense Hessian by Richardson-extrapolated central differences of the gradient.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import mcnet as mc
from mcnet import nn
from mcnet.diagnostics import (
    hessian_eigenvalues,
    hessian_trace,
    plot_spectral_density,
    spectral_density,
)

seeds = st.integers(0, 2**31 - 1)


# --- problems with independent reference Hessians ---------------------------------------------
def _least_squares(seed, n_samples=12, d=4, dtype=np.float64):
    """nn.Linear(d, 1) + MSELoss (mean over the N outputs): H = (2/N) X̃ᵀX̃, X̃ = [X 1]."""
    nn.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = nn.Linear(d, 1).to(dtype=dtype)
    x = rng.standard_normal((n_samples, d)).astype(dtype)
    y = rng.standard_normal((n_samples, 1)).astype(dtype)
    xt = np.hstack([x.astype(np.float64), np.ones((n_samples, 1))])
    hessian = 2.0 / n_samples * xt.T @ xt
    return mc.Objective(net, nn.MSELoss()), nn.parameters_to_vector(net), (x, y), hessian


def _logistic(seed, n_samples=12, d=4):
    """nn.Linear(d, 1) + BCEWithLogitsLoss: H = (1/N) Σ σ(1-σ) x̃x̃ᵀ at the current w."""
    nn.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = nn.Linear(d, 1)
    x = rng.standard_normal((n_samples, d))
    y = rng.integers(0, 2, (n_samples, 1)).astype(np.float64)
    w = nn.parameters_to_vector(net) + rng.standard_normal(d + 1)  # away from the init
    xt = np.hstack([x, np.ones((n_samples, 1))])
    s = 1.0 / (1.0 + np.exp(-(xt @ w)))
    hessian = (xt.T * (s * (1 - s))) @ xt / n_samples
    return mc.Objective(net, nn.BCEWithLogitsLoss()), w, (x, y), hessian


def _chosen_spectrum(seed, eigenvalues, multiplicities, n_samples=40):
    """Linear(n, 1, bias=False) + MSE with X = U diag(s) Vᵀ: H = (2/N) XᵀX = V diag(λ) Vᵀ."""
    nn.manual_seed(seed)
    rng = np.random.default_rng(seed)
    lam = np.repeat(np.asarray(eigenvalues, dtype=np.float64), multiplicities)
    n = lam.size
    u, _ = np.linalg.qr(rng.standard_normal((n_samples, n)))
    v, _ = np.linalg.qr(rng.standard_normal((n, n)))
    x = u * np.sqrt(lam * n_samples / 2.0) @ v.T
    net = nn.Linear(n, 1, bias=False)
    y = rng.standard_normal((n_samples, 1))
    hessian = (v * lam) @ v.T
    return mc.Objective(net, nn.MSELoss()), nn.parameters_to_vector(net), (x, y), hessian


def _fd_hessian(objective, w, batch, h=1e-3):
    """Central differences of the gradient, Richardson-extrapolated over h and h/2: the h^2
    error term cancels, leaving O(h^4) ~ 1e-12 plus roundoff eps/h ~ 1e-13."""

    def differences(step):
        cols = []
        for j in range(w.size):
            e = np.zeros(w.size)
            e[j] = step
            _, g_plus = objective.value_and_grad(w + e, batch)
            _, g_minus = objective.value_and_grad(w - e, batch)
            cols.append((g_plus - g_minus) / (2 * step))
        return np.column_stack(cols)

    hessian = (4 * differences(h / 2) - differences(h)) / 3
    return (hessian + hessian.T) / 2


@pytest.fixture(scope="module")
def indefinite_mlp():
    """A tanh MLP away from a minimum: its most negative eigenvalue is the largest in size."""
    nn.manual_seed(1)
    rng = np.random.default_rng(1)
    net = nn.models.mlp([4, 3, 2], activation="tanh")
    x = rng.standard_normal((8, 4))
    y = rng.integers(0, 2, 8)
    objective = mc.Objective(net, nn.CrossEntropyLoss())
    w = nn.parameters_to_vector(net) * 3
    hessian = _fd_hessian(objective, w, (x, y))
    return objective, w, (x, y), hessian


def _assert_top_eigenvalues(values, hessian, k, rtol):
    reference = np.linalg.eigvalsh(hessian)[::-1][:k]
    assert values.shape == (k,)
    np.testing.assert_allclose(values, reference, rtol=rtol, atol=rtol * np.max(np.abs(reference)))


# --- top eigenvalues ----------------------------------------------------------------------------
@given(
    seed=seeds,
    n_samples=st.integers(3, 20),
    d=st.integers(1, 8),
    k=st.sampled_from([1, 3]),
    logistic=st.booleans(),
)
def test_top_eigenvalues_match_closed_form_hessians(seed, n_samples, d, k, logistic):
    make = _logistic if logistic else _least_squares
    objective, w, batch, hessian = make(seed, n_samples, d)
    k = min(k, w.size)  # d = 1 has 2 parameters; k >= n - 1 takes the dense route
    values, vectors = hessian_eigenvalues(objective, w, batch, k=k, return_vectors=True)
    _assert_top_eigenvalues(values, hessian, k, rtol=1e-8)
    assert np.all(np.diff(values) <= 0)
    scale = np.max(np.abs(np.linalg.eigvalsh(hessian)))
    np.testing.assert_allclose(hessian @ vectors, vectors * values, atol=1e-8 * scale)
    np.testing.assert_allclose(vectors.T @ vectors, np.eye(k), atol=1e-8)


@pytest.mark.parametrize("k", [1, 3])
def test_top_eigenvalues_of_an_indefinite_mlp_are_the_largest_algebraic(indefinite_mlp, k):
    objective, w, batch, hessian = indefinite_mlp
    reference = np.linalg.eigvalsh(hessian)
    # The claim under test needs a Hessian whose largest-magnitude eigenvalue is negative.
    assert reference[0] < 0 and abs(reference[0]) > reference[-1] > 0
    values = hessian_eigenvalues(objective, w, batch, k=k)
    _assert_top_eigenvalues(values, hessian, k, rtol=1e-6)


def test_all_eigenvalues_by_the_dense_route(indefinite_mlp):
    objective, w, batch, hessian = indefinite_mlp
    for k in (w.size - 2, w.size - 1, w.size):  # ARPACK, then its k >= n - 1 fallback
        _assert_top_eigenvalues(hessian_eigenvalues(objective, w, batch, k=k), hessian, k, 1e-6)


def test_repeated_top_eigenvalues_are_all_found():
    # One Krylov sequence sees one direction of each eigenspace: ARPACK alone returned seven
    # of the eight copies of 6 here, the deflated check finds the eighth.
    objective, w, batch, hessian = _chosen_spectrum(0, [0.5, 2.0, 6.0], [10, 12, 8])
    for k in (3, 9, 20):
        values, vectors = hessian_eigenvalues(objective, w, batch, k=k, return_vectors=True)
        _assert_top_eigenvalues(values, hessian, k, rtol=1e-8)
        np.testing.assert_allclose(vectors.T @ vectors, np.eye(k), atol=1e-8)
        np.testing.assert_allclose(hessian @ vectors, vectors * values, atol=1e-7)


def test_eigenvalues_are_reproducible_and_the_seed_only_moves_roundoff():
    objective, w, batch, hessian = _least_squares(3, n_samples=30, d=12)
    first = hessian_eigenvalues(objective, w, batch, k=3, seed=7)
    np.testing.assert_array_equal(first, hessian_eigenvalues(objective, w, batch, k=3, seed=7))
    other = hessian_eigenvalues(objective, w, batch, k=3, seed=8)
    np.testing.assert_allclose(first, other, rtol=1e-10)


def test_float32_parameters():
    objective, w, batch, hessian = _least_squares(5, n_samples=30, d=6, dtype=np.float32)
    assert w.dtype == np.float32
    _assert_top_eigenvalues(hessian_eigenvalues(objective, w, batch, k=3), hessian, 3, 1e-5)
    estimate, error = hessian_trace(objective, w, batch, probes=50)
    assert isinstance(estimate, float) and abs(estimate - np.trace(hessian)) < 5 * error
    grid, density = spectral_density(objective, w, batch, lanczos_steps=7)
    assert np.trapezoid(density, grid) == pytest.approx(1.0, abs=1e-3)


# --- trace --------------------------------------------------------------------------------------
@pytest.mark.slow
def test_trace_within_four_standard_errors_that_shrink_like_one_over_sqrt_probes(
    indefinite_mlp,
):
    objective, w, batch, hessian = indefinite_mlp
    estimate, error = hessian_trace(objective, w, batch, probes=2000, seed=3)
    assert abs(estimate - np.trace(hessian)) < 4 * error
    # Rademacher probes: Var(zᵀHz) = 2 (||H||_F² - Σ H_ii²) (Hutchinson 1990).
    variance = 2 * (np.sum(hessian**2) - np.sum(np.diag(hessian) ** 2))
    assert error == pytest.approx(np.sqrt(variance / 2000), rel=0.15)
    _, error_200 = hessian_trace(objective, w, batch, probes=200, seed=3)
    assert error_200 / error == pytest.approx(np.sqrt(10), rel=0.3)


def test_rademacher_trace_of_a_diagonal_hessian_is_exact():
    # One nonzero per row of X: H = (2/N) XᵀX = (2/N) diag(c²), and zᵀHz = Σ H_ii z_i² with
    # z_i² = 1 exactly, the same sum in the same order for every probe.
    rng = np.random.default_rng(0)
    c = rng.uniform(0.5, 3.0, 7)
    net = nn.Linear(7, 1, bias=False)
    objective = mc.Objective(net, nn.MSELoss())
    batch = (np.diag(c), rng.standard_normal((7, 1)))
    estimate, error = hessian_trace(objective, nn.parameters_to_vector(net), batch, probes=20)
    assert error == 0.0
    assert estimate == pytest.approx(2.0 / 7 * np.sum(c**2), rel=1e-14)


def test_one_probe_has_no_standard_error():
    objective, w, batch, _ = _least_squares(0)
    estimate, error = hessian_trace(objective, w, batch, probes=1)
    assert np.isfinite(estimate) and np.isnan(error)


# --- spectral density ---------------------------------------------------------------------------
class _CountingObjective:
    """Counts the H v products the diagnostics ask for."""

    def __init__(self, objective):
        self.objective, self.module, self.calls = objective, objective.module, 0

    def hvp(self, w, v, batch):
        self.calls += 1
        return self.objective.hvp(w, v, batch)


def _rademacher_sd(matrix, probes):
    """Standard deviation of the mean of ``probes`` Rademacher quadratic forms zᵀAz / n:
    Var(zᵀAz) = 2 (||A||_F² - Σ A_ii²) (Hutchinson 1990)."""
    n = matrix.shape[0]
    variance = 2 * (np.sum(matrix**2) - np.sum(np.diag(matrix) ** 2)) / n**2
    return np.sqrt(variance / probes)


def test_spectral_density_sits_on_a_few_distinct_eigenvalues():
    eigenvalues, multiplicities = [0.5, 2.0, 6.0], [10, 12, 8]
    objective, w, batch, hessian = _chosen_spectrum(4, eigenvalues, multiplicities)
    n, probes = w.size, 20
    counting = _CountingObjective(objective)
    grid, density = spectral_density(counting, w, batch, probes=probes, seed=1)
    # Three distinct eigenvalues span a 3-dimensional Krylov space: Lanczos stops after three
    # products per probe, with those eigenvalues as its exact Ritz values.
    assert counting.calls == 3 * probes
    assert grid.shape == density.shape == (1000,)
    assert np.trapezoid(density, grid) == pytest.approx(1.0, abs=1e-3)
    sigma = 0.01 * (eigenvalues[-1] - eigenvalues[0])  # the documented default width
    assert grid[0] == pytest.approx(eigenvalues[0] - 5 * sigma, rel=1e-9)
    assert grid[-1] == pytest.approx(eigenvalues[-1] + 5 * sigma, rel=1e-9)
    _, basis = np.linalg.eigh(hessian)
    edges = np.cumsum([0] + multiplicities)
    total = 0.0
    for lam, lo, hi in zip(eigenvalues, edges[:-1], edges[1:]):
        near = np.abs(grid - lam) < 5 * sigma
        mass = np.trapezoid(np.where(near, density, 0.0), grid)
        total += mass
        # A probe's weight on an eigenspace is ||P z||² / n, with mean rank(P) / n.
        projector = basis[:, lo:hi] @ basis[:, lo:hi].T
        assert abs(mass - (hi - lo) / n) < 4 * _rademacher_sd(projector, probes)
    assert total == pytest.approx(1.0, abs=1e-3)  # nothing between the eigenvalues
    # The first moment is the mean of the probes' Rayleigh quotients zᵀHz / n: E = tr(H) / n.
    mean = np.trapezoid(grid * density, grid)
    assert abs(mean - np.trace(hessian) / n) < 4 * _rademacher_sd(hessian, probes)


def test_spectral_density_of_an_indefinite_mlp_spans_its_spectrum(indefinite_mlp):
    objective, w, batch, hessian = indefinite_mlp
    reference = np.linalg.eigvalsh(hessian)
    # n steps from a generic probe: the Ritz values are all the eigenvalues.
    grid, density = spectral_density(objective, w, batch, lanczos_steps=200, sigma=0.01)
    assert grid[0] == pytest.approx(reference[0] - 0.05, abs=1e-6)
    assert grid[-1] == pytest.approx(reference[-1] + 0.05, abs=1e-6)
    assert np.trapezoid(density, grid) == pytest.approx(1.0, abs=1e-3)
    assert density[np.argmin(np.abs(grid - reference[0]))] > 0  # the negative end is there


def test_spectral_density_on_a_given_grid_with_a_given_width():
    objective, w, batch, hessian = _least_squares(2, n_samples=20, d=5)
    top = np.linalg.eigvalsh(hessian)[-1]
    grid = np.linspace(-1.0, top + 1.0, 4001)
    out_grid, density = spectral_density(objective, w, batch, grid=grid, sigma=0.05, probes=2)
    np.testing.assert_array_equal(out_grid, grid)
    assert np.all(density >= 0)
    assert np.trapezoid(density, grid) == pytest.approx(1.0, abs=1e-3)


# --- plot ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_plot_writes_a_png_atomically(tmp_path):
    pytest.importorskip("matplotlib")
    grid = np.linspace(-1, 3, 200)
    density = np.exp(-(grid**2)) + np.exp(-((grid - 2) ** 2) * 10)
    density[:5] = 0.0  # zeros must not break the log axis
    path = plot_spectral_density(grid, density, tmp_path / "sub" / "density.png")
    assert path == tmp_path / "sub" / "density.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in path.parent.iterdir()] == ["density.png"]  # no temporary left


def test_plot_without_matplotlib_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"pip install mcnet\[plot\]"):
        plot_spectral_density(np.arange(3.0), np.ones(3), tmp_path / "x.png")
    assert not any(tmp_path.iterdir())


# --- bad input ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "call, name",
    [
        (lambda o, w, b: hessian_eigenvalues(o, w, b, k=0), "k"),
        (lambda o, w, b: hessian_eigenvalues(o, w, b, k=w.size + 1), "k"),
        (lambda o, w, b: hessian_eigenvalues(o, w, b, k=1.5), "k"),
        (lambda o, w, b: hessian_eigenvalues(o, w, b, tol=0.0), "tol"),
        (lambda o, w, b: hessian_eigenvalues(o, w, b, max_iter=0), "max_iter"),
        (lambda o, w, b: hessian_eigenvalues(o, w[:-1], b), "w"),
        (lambda o, w, b: hessian_trace(o, w, b, probes=0), "probes"),
        (lambda o, w, b: hessian_trace(o, np.append(w, 0.0), b), "w"),
        (lambda o, w, b: spectral_density(o, w, b, probes=0), "probes"),
        (lambda o, w, b: spectral_density(o, w, b, lanczos_steps=0), "lanczos_steps"),
        (lambda o, w, b: spectral_density(o, w, b, sigma=-1.0), "sigma"),
        (lambda o, w, b: spectral_density(o, w, b, grid=np.zeros((3, 3))), "grid"),
        (lambda o, w, b: spectral_density(o, w[None], b), "w"),
        (lambda o, w, b: plot_spectral_density(np.arange(3.0), np.ones(4), "x.png"), "density"),
    ],
)
def test_bad_input_names_the_argument(call, name):
    objective, w, batch, _ = _least_squares(0)
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        call(objective, w, batch)
