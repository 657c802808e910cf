"""What one evaluation of each kind costs on the Newton-Krylov comparison's networks (issue 12).

A Newton-Krylov iteration is a batch gradient, K curvature products and a few trial
forwards; its cost against Adam's (one batch gradient) is the sum of these. For each of the
four networks of ``benchmarks/experiments`` (MNIST, the comparison's models and initial
parameters, seed 0), the median wall time of one ``Oracle`` call at batch 128 and at 32:
``value_and_grad``, ``gauss_newton_product`` (also in float32, ``dtype="float32"``:
newton-krylov-fast's), ``hvp``, ``curvature`` (bicomplex vᵀHv) and ``value``, and one
full-data gradient (the comparison's training set); float64, one BLAS
thread, v a fixed random direction.

    python benchmarks/bench_passes.py [--repeats 15] [--mnist DIR] [--out FILE]

Writes ``benchmarks/results/passes.json`` (or ``--out``) and prints one table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from _report import RESULTS, environment, markdown_table, median_time, single_thread, write_json

import mcnet as mc
from mcnet import experiments as ex
from mcnet.training import Oracle

sys.path.insert(0, str(Path(__file__).resolve().parent / "experiments"))
from nk_settings import DATA, PROBLEMS  # noqa: E402  (the comparison's problems)

NETWORKS = ("mlp", "lenet5-tanh", "lenet5-sigmoid", "autoencoder")
KINDS = (
    "value_and_grad",
    "gauss_newton_product",
    "gauss_newton_product_float32",
    "hvp",
    "curvature",
    "value",
)


def evaluations(oracle: Oracle, w, v, batch) -> dict:
    """The timed calls on one batch."""
    return {"value_and_grad": lambda: oracle.value_and_grad(w, batch),
            "gauss_newton_product": lambda: oracle.gauss_newton_product(w, v, batch),
            # newton-krylov-fast's: the same product on the float32 copy of the module
            "gauss_newton_product_float32":
                lambda: oracle.gauss_newton_product(w, v, batch, "float32"),
            "hvp": lambda: oracle.hvp(w, v, batch),
            "curvature": lambda: oracle.curvature(w, v, batch),
            "value": lambda: oracle.value(w, batch)}  # fmt: skip


def passes(name: str, data_dir: str, repeats: int) -> dict:
    problem = ex.load_problem(
        ex.ProblemSpec(
            dataset="mnist",
            data_dir=data_dir,
            train_split="test",
            holdout=2000,
            **PROBLEMS[name][0],
        )
    )
    module, loss = problem.build(0, None)
    oracle = Oracle(mc.Objective(module, loss), problem.train)
    w = oracle.initial_point()
    v = np.random.default_rng(0).standard_normal(w.shape).astype(w.dtype)
    inputs, targets = problem.train
    result = {"parameters": int(w.size), "ms": {}}
    for size in (128, 32):
        calls = evaluations(oracle, w, v, (inputs[:size], targets[:size]))
        result["ms"][str(size)] = {kind: 1e3 * median_time(calls[kind], repeats) for kind in KINDS}
    result["ms"]["full-data gradient"] = 1e3 * median_time(
        lambda: oracle.value_and_grad(w), max(3, repeats // 5)
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--mnist", default=DATA, help="folder holding mnist/")
    parser.add_argument("--out", type=Path, default=RESULTS / "passes.json")
    args = parser.parse_args()
    with single_thread():
        results = {name: passes(name, args.mnist, args.repeats) for name in NETWORKS}
    rows = []
    for name, result in results.items():
        for size in ("128", "32"):
            ms = result["ms"][size]
            rows.append(
                [name, result["parameters"], size]
                + [f"{ms[kind]:.1f}" for kind in KINDS]
                + [f"{ms['gauss_newton_product'] / ms['value_and_grad']:.2f}"]
            )
        rows[-1].append(f"{result['ms']['full-data gradient']:.0f}")
        rows[-2].append("")
    print(
        markdown_table(
            [
                "network",
                "parameters",
                "batch",
                *(f"{k} ms" for k in KINDS),
                "G v / gradient",
                "full-data gradient ms",
            ],
            rows,
        )
    )
    write_json(
        args.out,
        {
            "environment": environment(),
            "command": "python benchmarks/bench_passes.py",
            "float": "float64",
            "results": results,
        },
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
