"""A tour of mcnet in under 30 seconds: ``python -m mcnet.demo [--out DIR]``.

Prints exact derivatives by the multicomplex step next to their closed forms, and writes the
seed paper's Fig. 1 (relative error of finite differences and complex steps against the step
size h) into the output folder.  ``main`` runs the functions in ``SECTIONS`` in turn; a new
part of the tour is one more function ``section(out_dir: Path) -> None`` appended there.

The Fig. 1 computation lives here (``step_error_table``, ``plot_step_error``) so that
``benchmarks/fig1_step_error.py`` reuses it: mcnet itself never imports from benchmarks/.
"""

from __future__ import annotations

import argparse
import decimal
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

import mcnet as mc
from mcnet.derivatives import multicomplex_step

X0 = 10.0  # the paper's point: f(x) = e^x / (x^2 + 1) at x = 10
FD_SCHEMES = ("forward FD", "central FD", "complex step", "FD second difference", "bicomplex step")
ERROR_CLIP = 1.0  # relative errors above this (garbage, 0/0, overflow) are shown as 1
ERROR_FLOOR = 1e-17  # exact agreement (error 0) is drawn here on the log scale
ROUNDOFF = 1e-14  # "at roundoff level": a few dozen ulps of float64


def f(x):
    """f(x) = e^x / (x^2 + 1); one code path for real (FD) and multicomplex (step) tensors."""
    return mc.exp(x) / (x * x + 1.0)


def exact_derivatives(x: float, digits: int = 40) -> tuple[float, float, float]:
    """f', f'', f''' of f(x) = e^x/(x^2+1), written out by hand, evaluated in ``digits`` digits.

    f'   = e^x (x - 1)^2 / (x^2 + 1)^2
    f''  = e^x (x^4 - 4x^3 + 8x^2 - 4x - 1) / (x^2 + 1)^3
    f''' = e^x (x^6 - 6x^5 + 21x^4 - 36x^3 + 15x^2 + 18x - 5) / (x^2 + 1)^4
    Decimal arithmetic keeps the reference free of float64 roundoff, so the errors plotted
    are those of the schemes alone.
    """
    with decimal.localcontext() as ctx:
        ctx.prec = digits
        d = decimal.Decimal(x)
        e, q = d.exp(), d * d + 1
        first = e * (d - 1) ** 2 / q**2
        second = e * (d**4 - 4 * d**3 + 8 * d**2 - 4 * d - 1) / q**3
        third = e * (d**6 - 6 * d**5 + 21 * d**4 - 36 * d**3 + 15 * d**2 + 18 * d - 5) / q**4
        return float(first), float(second), float(third)


# --- Fig. 1: relative error against the step size -----------------------------------------


def step_error_table(x: float = X0, exponents: Sequence[int] = range(1, 201)) -> dict:
    """Relative errors of five derivative schemes of ``f`` at x for h = 10**-e, e in exponents.

    First derivative: forward FD (f(x+h) - f(x))/h, central FD (f(x+h) - f(x-h))/(2h), and
    the complex step ``multicomplex_step(f, x, [1], h)``.  Second derivative: the FD
    second difference (f(x+h) - 2f(x) + f(x-h))/h^2 and the bicomplex step
    ``multicomplex_step(f, x, [1, 1], h)`` (``mcnet.derivatives``).  Errors are clipped to
    [0, ERROR_CLIP]: NaN or infinity (0/0 once h^2 underflows, FD once x + h == x) counts as
    ERROR_CLIP.
    """
    first, second, _ = exact_derivatives(x)
    fx = np.float64(f(mc.tensor(x)).item())
    steps = [np.float64(10.0**-e) for e in exponents]  # NumPy floats: x/0 is inf, not raise
    estimates: dict[str, list[float]] = {name: [] for name in FD_SCHEMES}
    with np.errstate(all="ignore"):  # the FD garbage and the 0/0 are the point of the figure
        for h in steps:
            plus, minus = (np.float64(f(mc.tensor(x + s)).item()) for s in (h, -h))
            estimates["forward FD"].append((plus - fx) / h)
            estimates["central FD"].append((plus - minus) / (2 * h))
            estimates["complex step"].append(multicomplex_step(f, x, [1.0], h=h))
            estimates["FD second difference"].append((plus - 2 * fx + minus) / h**2)
            estimates["bicomplex step"].append(multicomplex_step(f, x, [1.0, 1.0], h=h))
        errors = {}
        for name, values in estimates.items():
            exact = second if name in ("FD second difference", "bicomplex step") else first
            rel = np.abs(np.asarray(values) - exact) / abs(exact)
            errors[name] = np.where(np.isfinite(rel), np.minimum(rel, ERROR_CLIP), ERROR_CLIP)
    return {
        "x": x,
        "h": np.asarray(steps),
        "exponents": list(exponents),
        "errors": errors,
        "exact": {"f'": first, "f''": second},
    }


def plot_step_error(table: dict, path: Path) -> Path:
    """Draw the step-error table as Fig. 1 (log-log) into a PNG; needs matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    styles = {
        "forward FD": ("tab:blue", "-"),
        "central FD": ("tab:orange", "-"),
        "complex step": ("tab:green", "-"),
        "FD second difference": ("tab:red", "--"),
        "bicomplex step": ("tab:purple", "--"),
    }
    eps = np.finfo(np.float64).eps
    h = table["h"]
    zoom_end = min(h.size, 20)  # the FD story plays out in the first 20 decades
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6), sharey=True)
    for ax, shown in zip(axes, (slice(None), slice(0, zoom_end)), strict=True):
        for name, errors in table["errors"].items():
            color, line = styles[name]
            order = "f''" if name in ("FD second difference", "bicomplex step") else "f'"
            ax.loglog(
                h[shown],
                np.maximum(errors[shown], ERROR_FLOOR),
                line,
                color=color,
                label=f"{name} ({order})",
                linewidth=1.5,
                marker=".",
                markersize=3,
            )
        ax.axhline(eps, color="grey", linewidth=0.8, linestyle=":")
        ax.set_xlim(h[shown][0] * 10, h[shown][-1] / 10)  # decreasing h to the right
        ax.set_xlabel("step h")
        ax.grid(True, which="major", alpha=0.3)
    decades = np.arange(0, -(len(h) + 1), -max(1, len(h) // 8))
    axes[0].set_xticks(10.0**decades)
    axes[0].set_title(f"f(x) = e^x / (x^2 + 1) at x = {table['x']:g}, all steps")
    axes[1].set_title(f"zoom: h = 1e-1 ... {h[zoom_end - 1]:.0e}")
    axes[0].set_ylabel("relative error (clipped to [1e-17, 1])")
    axes[0].text(h[-1], eps * 1.6, "machine epsilon", color="grey", fontsize=8, ha="right")
    axes[1].legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".png.tmp", delete=False) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    os.replace(tmp.name, path)
    return path


# --- sections of the tour -------------------------------------------------------------------


def logsumexp_curvature(w: np.ndarray, u: np.ndarray, v: np.ndarray) -> float:
    """u^T H v of log(sum(exp(w))) by hand: H = diag(p) - p p^T with p = softmax(w)."""
    p = np.exp(w - w.max())
    p /= p.sum()
    return float(np.sum(p * u * v) - (p @ u) * (p @ v))


def derivatives_section(out_dir: Path) -> None:
    """Exact derivatives by the multicomplex step against their closed forms."""
    print(f"f(x) = e^x / (x^2 + 1) at x = {X0:g}: multicomplex step vs closed form")
    for k, exact in enumerate(exact_derivatives(X0), start=1):
        step, h = mc.derivative(f, X0, order=k), mc.default_step(np.float64, k)
        print(
            f"  order {k}: {step:.17g}  closed form {exact:.17g}  "
            f"relative error {abs(step - exact) / abs(exact):.1e}  (h = {h:.3g})"
        )
    rng = np.random.default_rng(0)
    w, u, v = rng.standard_normal((3, 5))
    mixed = mc.directional(lambda t: mc.logsumexp(t, axis=0), w, [u, v])
    exact = logsumexp_curvature(w, u, v)
    print("u^T H v of log(sum(exp(w))), w, u, v in R^5, one bicomplex evaluation:")
    print(
        f"  bicomplex step {mixed:.17g}  closed form {exact:.17g}  "
        f"relative error {abs(mixed - exact) / abs(exact):.1e}"
    )


def step_error_section(out_dir: Path) -> None:
    """The seed paper's Fig. 1: FD breaks down as h shrinks, the complex steps do not."""
    table = step_error_table()
    h = table["h"]
    print(
        f"Relative error of each scheme for h = 1e-1 ... 1e-{table['exponents'][-1]} "
        f"(1 = clipped garbage):"
    )
    for name, err in table["errors"].items():
        best = int(np.argmin(err))
        accurate = h[err <= ROUNDOFF]
        span = f"{accurate.max():.0e} ... {accurate.min():.0e}" if accurate.size else "none"
        print(
            f"  {name:21s} best {err[best]:.1e} at h = {h[best]:.0e}; "
            f"error <= {ROUNDOFF:g} for h in {span}"
        )
    print(
        "  (the bicomplex step reads h^2 f'' off the i1 i2 part, so it needs h^2 inside the"
        " float64 range, h > ~1e-154;\n   mcnet's default step for order k is 2^(-400/k))"
    )
    try:
        path = plot_step_error(table, out_dir / "fig1_step_error.png")
    except ImportError:
        print("  matplotlib is not installed: no plot (pip install matplotlib to draw it)")
        return
    print(f"  plot written to {path}")


def network_section(out_dir: Path) -> None:
    """A small network on scikit-learn's digits (no download): exact gradient, H v, v^T H v
    and a third derivative from the modules' own backward, then a few Newton-CG steps."""
    from mcnet.nn import CrossEntropyLoss, manual_seed, models, parameters_to_vector

    images, labels = mc.datasets.digits()
    inputs = images.reshape(len(images), -1)
    train, test = (inputs[:1500], labels[:1500]), (inputs[1500:], labels[1500:])
    manual_seed(0)
    net = models.mlp([64, 32, 10], activation="tanh")
    objective = mc.Objective(net, CrossEntropyLoss())
    w = parameters_to_vector(net)
    v = np.random.default_rng(1).standard_normal(w.size)
    print(f"MLP 64-32-10 (tanh) on {len(train[1])} digits, {w.size} parameters:")
    loss, grad = objective.value_and_grad(w, train)
    g, hv = objective.grad_and_hvp(w, v, train)
    step = 1e-5  # central differences, for comparison only
    fd_slope = (objective.value(w + step * v, train) - objective.value(w - step * v, train)) / (
        2 * step
    )
    fd_hv = (
        objective.value_and_grad(w + step * v, train)[1]
        - objective.value_and_grad(w - step * v, train)[1]
    ) / (2 * step)
    print(f"  grad . v   {grad @ v:.15g}   central difference {fd_slope:.15g}")
    print(
        f"  |H v - central difference of grad| / |H v| = "
        f"{np.linalg.norm(hv - fd_hv) / np.linalg.norm(hv):.1e} (FD's own error)"
    )
    print(
        f"  v^T H v    {objective.curvature(w, v, train):.15g} (bicomplex forward)"
        f"   v . (H v) {v @ hv:.15g} (complex forward+backward)"
    )
    print(f"  d^3 f[v,v,v] {objective.directional(w, [v, v, v], train):.15g} (order-3 forward)")
    print(
        "  mcnet.solvers.NewtonCG, full batch (CG on H dw = -g by exact H v products, "
        "stopped at negative curvature; Armijo line search):"
    )
    oracle = mc.training.Oracle(objective, train)
    solver = mc.solvers.NewtonCG(max_cg=10)
    state = solver.init(oracle, w)
    for iteration in range(10):
        w, state, info = solver.step(oracle, w, None, state)
        accuracy = _accuracy(net, w, test)
        print(
            f"    iteration {iteration}: training loss {info.loss:.4f}, test accuracy "
            f"{accuracy:.3f}"
        )


def _accuracy(net, w, data) -> float:
    from mcnet.nn import vector_to_parameters

    vector_to_parameters(w, net)
    logits = net(mc.tensor(data[0])).numpy()
    return float(np.mean(logits.argmax(axis=1) == data[1]))


SECTIONS: list[Callable[[Path], None]] = [derivatives_section, step_error_section, network_section]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mcnet.demo", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("mcnet-demo-output"),
        help="folder for the demo's files (default: ./mcnet-demo-output)",
    )
    args = parser.parse_args(argv)
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"--out must be a folder, but {args.out} is a file")
    args.out.mkdir(parents=True, exist_ok=True)
    for section in SECTIONS:
        print()
        section(args.out)


if __name__ == "__main__":
    main()
