"""Curvature diagnostics from the exact H v: top eigenvalues, trace, spectral density.

What PyHessian (Yao et al. 2020) computes with autograd's double backward, here from
``Objective.hvp``: one complex forward and backward at w + i h v, exact to roundoff, so the
Krylov methods below see the true Hessian rather than a finite-difference approximation.

- ``hessian_eigenvalues``: the k largest algebraic eigenvalues by implicitly restarted
  Lanczos (ARPACK through ``scipy.sparse.linalg.eigsh``, which reorthogonalises against the
  whole basis), from a seeded start vector;
- ``hessian_trace``: Hutchinson's estimator (Hutchinson 1990) with Rademacher probes;
- ``spectral_density``: stochastic Lanczos quadrature (Ubaru, Chen & Saad 2017; Ghorbani,
  Krishnan & Xiao 2019) with full reorthogonalisation;
- ``plot_spectral_density``: the density as a PNG, log-scale as in PyHessian.

Vectors live on the host in float64 whatever the parameters' dtype: ``hvp`` converts each
probe to the parameters' dtype and device, so a float32 model gives float32-accurate
products, and the Krylov bookkeeping does not add error on top.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import numpy as np
import scipy.linalg
import scipy.sparse.linalg

from mcnet.nn.vector import parameter_count

__all__ = [
    "hessian_eigenvalues",
    "hessian_trace",
    "plot_spectral_density",
    "spectral_density",
]

# Default grid of `spectral_density`: this many points, the Ritz values +- MARGIN sigmas (the
# Gaussians' mass beyond 5 sigma is 3e-7, so the density integrates to 1 on the grid), and a
# default width of SIGMA_FRACTION of the Ritz values' range.
GRID_POINTS = 1000
MARGIN = 5.0
SIGMA_FRACTION = 0.01


# --- the public functions ---------------------------------------------------------------------
def hessian_eigenvalues(
    objective,
    w,
    batch,
    k: int = 1,
    *,
    max_iter: int | None = None,
    tol: float = 1e-10,
    seed: int = 0,
    return_vectors: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """The ``k`` largest algebraic eigenvalues of the Hessian at ``w``, largest first.

    Lanczos (ARPACK's implicitly restarted variant, ``which="LA"``) on the operator
    v -> ``objective.hvp(w, v, batch)``, started from a Rademacher vector drawn from ``seed``
    so the result is reproducible.  ``max_iter`` bounds ARPACK's restarts (default 10 n),
    ``tol`` is the relative accuracy of the eigenvalues (not below the parameters' precision:
    float32 products cannot give more than ~1e-6).  When k >= n - 1 ARPACK cannot run and
    the n products H e_j are formed and diagonalised instead.  With ``return_vectors`` the
    unit eigenvectors come back as the columns of an (n, k) array: ``(values, vectors)``.

    One Krylov sequence holds a single direction of each eigenspace, so a repeated eigenvalue
    is found fewer times than it occurs (ARPACK recovers copies only through roundoff).  For
    k > 1 the result is therefore checked by Lanczos on H deflated of the vectors found; a
    larger eigenvalue there is a missed copy, swapped in for the smallest until none is left.
    """
    n = _check_point(objective, w)
    k = _positive_int(k, "k")
    if k > n:
        raise ValueError(f"expected k <= {n}, the number of parameters, got k={k}")
    if max_iter is not None:
        max_iter = _positive_int(max_iter, "max_iter")
    if not (math.isfinite(tol) and tol > 0):
        raise ValueError(f"expected a positive finite tol, got tol={tol!r}")
    # Asking ARPACK for more than the products carry makes it iterate on roundoff noise.
    tol = max(float(tol), 10 * _precision(objective))
    matvec = _hvp_operator(objective, w, batch)

    if k >= n - 1:
        # ARPACK needs k < ncv <= n; for so few parameters the dense route is cheaper anyway.
        dense = np.column_stack([matvec(e) for e in np.eye(n)])
        values, vectors = scipy.linalg.eigh((dense + dense.T) * 0.5)
        values, vectors = values[::-1][:k], vectors[:, ::-1][:, :k]
    else:
        rng = np.random.default_rng(seed)
        values, vectors = _lanczos_top(matvec, n, k, _rademacher(rng, n), tol, max_iter)
        if k > 1:
            values, vectors = _add_missed_copies(matvec, values, vectors, rng, tol, max_iter)
    if not return_vectors:
        return values
    # Fix each vector's sign (largest component positive) so it does not depend on v0.
    signs = np.sign(vectors[np.argmax(np.abs(vectors), axis=0), np.arange(k)])
    return values, vectors * np.where(signs == 0, 1.0, signs)


def hessian_trace(objective, w, batch, probes: int = 100, seed: int = 0) -> tuple[float, float]:
    """Hutchinson's estimate of tr(H) and its standard error (``nan`` for one probe).

    tr(H) = E[zᵀ H z] for Rademacher z (Hutchinson 1990), the variance
    2 (||H||_F² - Σ H_ii²) being the smallest of any i.i.d. probe distribution; the estimate
    is the mean of ``probes`` samples, the error their sample standard deviation / √probes.
    """
    n = _check_point(objective, w)
    probes = _positive_int(probes, "probes")
    matvec = _hvp_operator(objective, w, batch)
    rng = np.random.default_rng(seed)
    samples = np.empty(probes)
    for j in range(probes):
        z = _rademacher(rng, n)
        samples[j] = z @ matvec(z)
    error = float(np.std(samples, ddof=1) / math.sqrt(probes)) if probes > 1 else math.nan
    return float(np.mean(samples)), error


def spectral_density(
    objective,
    w,
    batch,
    *,
    lanczos_steps: int = 80,
    probes: int = 1,
    seed: int = 0,
    grid=None,
    sigma: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(grid, density)``: the Hessian's eigenvalue density by stochastic Lanczos quadrature.

    For each unit Rademacher probe z, m = ``lanczos_steps`` Lanczos steps (capped at n, and
    stopped early when the Krylov space is invariant) give a tridiagonal T whose eigenvalues
    θ_j and squared first eigenvector components τ_j are the Gauss quadrature of z's spectral
    measure Σ_i (zᵀu_i)² δ(t - λ_i) (Golub & Meurant; Ubaru, Chen & Saad 2017).  The average over
    probes, each node smoothed by a Gaussian of width ``sigma``, is the density (Ghorbani et
    al. 2019).  ``sigma`` defaults to 1% of the Ritz values' range, ``grid`` to 1000 points
    over the Ritz values ± 5 sigma, where the density integrates to 1.
    """
    n = _check_point(objective, w)
    steps = _positive_int(lanczos_steps, "lanczos_steps")
    probes = _positive_int(probes, "probes")
    if sigma is not None and not (math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"expected a positive finite sigma, got sigma={sigma!r}")
    if grid is not None:
        grid = np.asarray(grid, dtype=np.float64)
        if grid.ndim != 1 or grid.size < 2 or not np.all(np.isfinite(grid)):
            raise ValueError(
                f"expected grid as a 1-D array of at least 2 finite values, got shape {grid.shape}"
            )
    matvec = _hvp_operator(objective, w, batch)
    rng = np.random.default_rng(seed)
    nodes, weights = [], []
    for _ in range(probes):
        z = _rademacher(rng, n)
        alpha, beta = _lanczos(matvec, z / math.sqrt(n), min(steps, n), _precision(objective))
        theta, s = scipy.linalg.eigh_tridiagonal(alpha, beta)
        nodes.append(theta)
        weights.append(s[0] ** 2)  # Σ τ_j = 1: z/√n is a unit vector
    theta = np.concatenate(nodes)
    tau = np.concatenate(weights) / probes

    if sigma is None:
        spread = float(theta.max() - theta.min())
        # One distinct eigenvalue (H = c I, or n = 1) has no range: use its size, or 1 for H = 0.
        scale = spread or float(np.max(np.abs(theta))) or 1.0
        sigma = SIGMA_FRACTION * scale
    if grid is None:
        grid = np.linspace(theta.min() - MARGIN * sigma, theta.max() + MARGIN * sigma, GRID_POINTS)
    # Blocks of grid points keep the (points x nodes) table small for many probes.
    density = np.empty_like(grid)
    block = max(1, 2**20 // theta.size)
    for start in range(0, grid.size, block):
        t = grid[start : start + block, None]
        gauss = np.exp(-0.5 * ((t - theta) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
        density[start : start + block] = gauss @ tau
    return grid, density


def plot_spectral_density(grid, density, path) -> Path:
    """Draw ``density`` over ``grid`` (log-scale density, as PyHessian does) into a PNG.

    The file is written to a temporary name in the same folder and moved into place, so
    ``path`` never holds half an image.  Needs matplotlib (``pip install mcnet[plot]``).
    """
    grid = np.asarray(grid, dtype=np.float64)
    density = np.asarray(density, dtype=np.float64)
    if grid.ndim != 1 or grid.size < 2 or density.shape != grid.shape:
        raise ValueError(
            "expected grid and density as 1-D arrays of the same length >= 2, got shapes "
            f"grid {grid.shape} and density {density.shape}"
        )
    if not (np.all(np.isfinite(grid)) and np.all(np.isfinite(density))):
        raise ValueError("expected finite grid and density values, got NaN or infinity")
    try:
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError(
            "plot_spectral_density needs matplotlib: pip install mcnet[plot]"
        ) from error
    # A log axis cannot show zeros: floor at 1e-7 of the peak (PyHessian adds 1e-7).
    peak = float(np.max(density)) if np.max(density) > 0 else 1.0
    shown = np.maximum(density, 1e-7 * peak)

    # A bare Figure (no pyplot) draws with Agg and leaves the caller's backend alone.
    fig = Figure(figsize=(6, 4.2))
    ax = fig.add_subplot()
    ax.semilogy(grid, shown, color="tab:blue", linewidth=1.2)
    ax.set_xlabel("eigenvalue")
    ax.set_ylabel("density (log scale)")
    ax.set_title("Hessian eigenvalue density (stochastic Lanczos quadrature)")
    ax.grid(True, which="major", alpha=0.3)
    fig.tight_layout()

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            fig.savefig(handle, format="png", dpi=120)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; an image is for others to read too
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path


# --- machinery --------------------------------------------------------------------------------
def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"expected {name} as a positive integer, got {name}={value!r}")
    return int(value)


def _check_point(objective, w) -> int:
    """The number of parameters n, after checking that w has shape (n,)."""
    n = parameter_count(objective.module)
    shape = tuple(w.shape) if hasattr(w, "shape") else np.shape(w)
    if shape != (n,):
        raise ValueError(
            f"expected w as a parameter vector of shape ({n},) for "
            f"{type(objective.module).__name__}, got shape {shape}"
        )
    return n


def _precision(objective) -> float:
    """Machine epsilon of the parameters' dtype: the relative accuracy of H v."""
    params = objective.module.parameters()
    dtype = params[0].value.dtype if params else np.float64
    return float(np.finfo(dtype).eps)


def _hvp_operator(objective, w, batch):
    """v -> H v as a float64 host array (the objective may keep vectors on the GPU)."""

    def matvec(v: np.ndarray) -> np.ndarray:
        hv = objective.hvp(w, np.asarray(v, dtype=np.float64).reshape(-1), batch)
        hv = hv.get() if hasattr(hv, "get") else hv  # CuPy, under keep_on_device
        return np.asarray(hv, dtype=np.float64)

    return matvec


def _rademacher(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 2, size=n).astype(np.float64) * 2.0 - 1.0


def _lanczos_top(matvec, n, k, v0, tol, max_iter) -> tuple[np.ndarray, np.ndarray]:
    """ARPACK's k largest algebraic eigenpairs of the operator, largest first."""
    operator = scipy.sparse.linalg.LinearOperator((n, n), matvec=matvec, dtype=np.float64)
    try:
        values, vectors = scipy.sparse.linalg.eigsh(
            operator, k=k, which="LA", v0=v0, maxiter=max_iter, tol=tol
        )
    except scipy.sparse.linalg.ArpackNoConvergence as error:
        raise scipy.sparse.linalg.ArpackNoConvergence(
            f"Lanczos found {len(error.eigenvalues)} of the {k} largest Hessian eigenvalues "
            f"to tol={tol:g} within max_iter={max_iter} restarts; raise max_iter or tol",
            error.eigenvalues,
            error.eigenvectors,
        ) from error
    order = np.argsort(values)[::-1]
    return values[order], vectors[:, order]


def _add_missed_copies(matvec, values, vectors, rng, tol, max_iter):
    """Swap in eigenvalues of H outside span(vectors) that exceed the smallest one found.

    The deflated operator P H P + c Q Qᵀ (P = I - Q Qᵀ) keeps H's other eigenpairs and moves
    the ones found to c, below the smallest found, so its top eigenvalue exceeds that one
    exactly when an eigenvalue was missed.
    """
    n, k = vectors.shape
    for _ in range(k):  # every swap raises the sum of the values: at most k swaps
        span = max(abs(values[0]), abs(values[-1]), values[0] - values[-1]) or 1.0
        shift = values[-1] - span
        q = vectors

        def deflated(v, q=q, shift=shift):
            c = q.T @ v
            hv = matvec(v - q @ c)
            return hv - q @ (q.T @ hv) + shift * (q @ c)

        top, u = _lanczos_top(deflated, n, 1, _rademacher(rng, n), tol, max_iter)
        # Within the eigenvalues' accuracy of the smallest one found, a swap changes nothing.
        if top[0] <= values[-1] + 10 * tol * span:
            break
        values = np.concatenate([values[:-1], top])
        vectors = np.column_stack([vectors[:, :-1], u])
        order = np.argsort(values, kind="stable")[::-1]
        values, vectors = values[order], vectors[:, order]
    return values, vectors


def _lanczos(matvec, q: np.ndarray, steps: int, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Diagonal and off-diagonal of the Lanczos tridiagonal from the unit vector q.

    Every new vector is orthogonalised against all previous ones, twice (classical
    Gram-Schmidt twice is enough, Giraud et al. 2005): without it, roundoff brings back
    converged Ritz values as spurious copies ("ghosts") that would distort the weights.  A
    tiny beta means the Krylov space is invariant: its Ritz pairs are then exact and the
    quadrature is complete, so the recurrence stops there.
    """
    basis = np.empty((steps, q.size))
    alpha = np.empty(steps)
    beta = np.empty(max(steps - 1, 0))
    basis[0] = q
    norm = 0.0  # the largest |alpha|, |beta| so far: the scale of H seen by the recurrence
    for j in range(steps):
        r = matvec(basis[j])
        alpha[j] = basis[j] @ r
        for _ in range(2):
            r -= basis[: j + 1].T @ (basis[: j + 1] @ r)
        norm = max(norm, abs(alpha[j]))
        if j == steps - 1:
            break
        b = float(np.linalg.norm(r))
        norm = max(norm, b)
        # H v is accurate to ~eps relative, so a residual that small is noise, not a direction.
        if b <= 1e3 * eps * norm or b == 0.0:
            return alpha[: j + 1], beta[:j]
        beta[j] = b
        basis[j + 1] = r / b
    return alpha, beta
