"""Where Algorithm 1 loses, option by option (issue 12): NewtonKrylov variants on digits.

Each variant changes NewtonKrylov's defaults by the named options and trains the same
problems as bench_solvers.py (1,500 digits, batch 128, seed 0, same initialisation):
logistic regression, the squared-hinge SVM and the MLP 64-32-10 (tanh). Reported: the
final training loss after ``--epochs`` epochs, the solver time, the network passes per
iteration, and both as a ratio to the best Adam over lr in {1e-1, 1e-2, 1e-3, 1e-4}
(equal epochs). Below 1 the variant is ahead.

    python benchmarks/bench_nk_variants.py [--epochs 10]
"""

from __future__ import annotations

import argparse

from _report import RESULTS, environment, markdown_table, single_thread, write_atomic, write_json
from bench_solvers import PROBLEMS, ratio, run

import mcnet as mc
from mcnet.solvers import Adam, NewtonKrylov

GAUSS_NEWTON = {"curvature": "gauss-newton", "damping": 1e-3}
VARIANTS: dict[str, dict] = {
    "Algorithm 1 (defaults)": {},
    "curvature from the H p pass": {"curvature": "hvp"},
    "running global gradient": {"global_gradient": "running"},
    "max_krylov 5": {"max_krylov": 5},
    "flat curvature as printed": {"flat_curvature": "paper"},
    "alpha = ||r|| / kappa as printed": {"cg_alpha": "paper"},
    "post-screening (1 + cos) dw as printed": {"post_screening": "paper"},
    "CG through negative curvature": {"early_stop": False},
    "truncated Newton (forcing term)": {"krylov_stop": "forcing"},
    "no warm start": {"warm_start": "none"},
    "warm start = direction": {"warm_start": "direction"},
    "Armijo instead of Taylor": {"step": "armijo"},
    "stretch": {"stretch": True},
    "eta 0.2": {"eta": 0.2},
    "RMS-preconditioned CG": {"preconditioner": "rms"},
    "cheap (hvp curvature, running g)": {"curvature": "hvp", "global_gradient": "running"},
    "cheap + RMS preconditioner": {
        "curvature": "hvp",
        "global_gradient": "running",
        "preconditioner": "rms",
    },
    "cheap + forcing (newton-krylov-cheap)": {
        "curvature": "hvp",
        "global_gradient": "running",
        "krylov_stop": "forcing",
    },
    "Gauss-Newton G + lambda I, lambda0 = 1": {"curvature": "gauss-newton", "damping": 1.0},
    "Gauss-Newton, lambda0 = 1, forcing, running": {
        "curvature": "gauss-newton",
        "damping": 1.0,
        "krylov_stop": "forcing",
        "global_gradient": "running",
    },
    "Gauss-Newton, lambda0 = 1e-3": GAUSS_NEWTON,
    "Gauss-Newton, lambda0 = 1e-3, eta 0.2 (newton-krylov-gn)": GAUSS_NEWTON | {"eta": 0.2},
    "Gauss-Newton, lambda0 = 1e-3, eta 0.5": GAUSS_NEWTON | {"eta": 0.5},
}
PASSES = ("gradient", "hvp", "curvature", "gauss_newton", "function", "global_gradient")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    images, labels = mc.datasets.digits()
    data = (images.reshape(len(images), -1)[:1500], labels[:1500])
    report = {"environment": environment(), "epochs": args.epochs, "problems": {}}
    tables = [
        f"# NewtonKrylov variants on digits ({args.epochs} epochs, batch 128)\n",
        f"commit {report['environment']['commit']}, one thread, load "
        f"{report['environment']['load_average_1min']}\n",
    ]
    with single_thread():
        for name, make_problem in PROBLEMS.items():
            adam = {
                lr: run(make_problem, Adam(lr=lr), data, args.epochs, 128)
                for lr in (1e-1, 1e-2, 1e-3, 1e-4)
            }
            best_lr = min(adam, key=lambda lr: adam[lr]["final"])
            best = adam[best_lr]
            rows, results = [], {}
            for variant, options in VARIANTS.items():
                result = run(make_problem, NewtonKrylov(**options), data, args.epochs, 128)
                results[variant] = result
                iterations = (1500 // 128 + 1) * args.epochs
                passes = sum(result["evaluations"].get(k, 0) for k in PASSES) / iterations
                rows.append(
                    [
                        variant,
                        f"{result['final']:.4g}",
                        f"{ratio(result['final'], best['final']):.3g}",
                        f"{result['epoch_time'][-1]:.2f}",
                        f"{passes:.1f}",
                    ]
                )
                print(variant, rows[-1], flush=True)
            rows.append(
                [
                    f"best Adam (lr {best_lr:g})",
                    f"{best['final']:.4g}",
                    "1",
                    f"{best['epoch_time'][-1]:.2f}",
                    "1.0",
                ]
            )
            report["problems"][name] = {"adam": adam, "best_adam_lr": best_lr, "variants": results}
            tables.append(
                f"### {name}\n\n"
                + markdown_table(
                    [
                        "variant",
                        "train loss",
                        "/ best Adam",
                        "solver time (s)",
                        "passes per iteration",
                    ],
                    rows,
                )
            )
    write_json(RESULTS / "nk_variants_digits.json", report)
    write_atomic(RESULTS / "nk_variants_digits.md", "\n".join(tables))
    print("\n".join(tables))


if __name__ == "__main__":
    main()
