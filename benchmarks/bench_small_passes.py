"""One evaluation of each kind on the small networks of the Newton-Krylov suite, where Python's
work around the arithmetic is most of a pass.

The networks and data of four `nk_suite.py` problems (a residual MLP, a plain ReLU MLP, a
BatchNorm sigmoid MLP and a BatchNorm CNN), their first batch of 128 examples, float64, one
thread: ``Objective.value``, ``value_and_grad``, ``gauss_newton_product`` and ``hvp``, the
20th percentile of R calls (the least disturbed ones on a shared machine) after five warm-up
calls.  A Newton-Krylov iteration on these problems is a gradient, up to ten G v products and
a few values, so what a pass costs here is what the suite's wall-time columns see.

    python benchmarks/bench_small_passes.py [--repeats 200] [--out FILE]

Writes ``benchmarks/results/small_passes.json`` (or ``--out``) and prints one table.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _report import RESULTS, call_times, environment, markdown_table, single_thread, write_json
from nk_suite import ALL_PROBLEMS, _model

from mcnet.nn import Objective
from mcnet.nn.vector import parameters_to_vector

PROBLEMS = ("cancer-resnet-elu", "iris-mlp3-relu", "moons10-mlp3-bn-sigmoid",
            "digits-cnn-bn-relu-long")  # fmt: skip
KINDS = ("value", "value_and_grad", "gauss_newton_product", "hvp")


def calls(name: str) -> dict:
    problem = next(p for p in ALL_PROBLEMS if p.name == name)
    x, y = problem.data()
    module = _model(problem, x, y)
    objective = Objective(module, problem.loss())
    w = parameters_to_vector(module)
    v = np.random.default_rng(0).standard_normal(w.shape)
    batch = (x[:128], y[:128])
    return {
        "value": lambda: objective.value(w, batch),
        "value_and_grad": lambda: objective.value_and_grad(w, batch),
        "gauss_newton_product": lambda: objective.gauss_newton_product(w, v, batch),
        "hvp": lambda: objective.hvp(w, v, batch),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--out", default=str(RESULTS / "small_passes.json"))
    args = parser.parse_args()
    results = {}
    with single_thread():
        for name in PROBLEMS:
            for kind, call in calls(name).items():
                for _ in range(4):
                    call()
                times = call_times(call, args.repeats, time.perf_counter)
                results[f"{name} {kind}"] = float(np.percentile(times, 20))
    rows = [[name] + [f"{results[f'{name} {kind}'] * 1e3:.3f}" for kind in KINDS]
            for name in PROBLEMS]  # fmt: skip
    print(markdown_table(["problem (ms, 20th percentile)", *KINDS], rows))
    write_json(args.out, {"environment": environment(), "repeats": args.repeats,
                          "seconds": results})  # fmt: skip
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
