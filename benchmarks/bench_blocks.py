"""Blocks of directions in `Objective`: one call with V (k, n) against k calls with one row.

For a small MLP (64-32-10, tanh, batch 128) and LeNet-5 (sigmoid, batch 64 of random
28x28 images), float64, k = 4 and 8: the median time of ``hvp(w, V, batch)`` and of
``curvature(w, V, batch)`` against k calls with one row each, and their ratio; every block
result is checked against the rows' first. One BLAS thread, timed by the thread's CPU time
(``time.thread_time``), which other processes on a shared machine disturb least.

    python benchmarks/bench_blocks.py [--repeats 5] [--out FILE]

Writes ``benchmarks/results/blocks.json`` (or ``--out``) and prints one table.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _report import RESULTS, environment, markdown_table, median_time, single_thread, write_json

import mcnet as mc
from mcnet import nn


def problems() -> dict:
    rng = np.random.default_rng(0)
    nn.manual_seed(0)
    mlp = nn.models.mlp([64, 32, 10], activation="tanh")
    mlp_batch = (rng.standard_normal((128, 64)), rng.integers(0, 10, 128))
    lenet = nn.models.lenet5()
    lenet_batch = (rng.uniform(0, 1, (64, 1, 28, 28)), rng.integers(0, 10, 64))
    return {"mlp 64-32-10": (mlp, mlp_batch), "lenet5": (lenet, lenet_batch)}


def compare(call, w, block, batch, repeats: int) -> tuple[float, float]:
    """Median seconds of one call with the block and of k calls with one row each, after
    checking that both give the same numbers."""
    together = call(w, block, batch)
    apart = np.array([call(w, row, batch) for row in block])
    np.testing.assert_allclose(together, apart, rtol=1e-12, atol=1e-12 * np.abs(apart).max())
    return (
        median_time(lambda: call(w, block, batch), repeats, time.thread_time),
        median_time(lambda: [call(w, row, batch) for row in block], repeats, time.thread_time),
    )


def measure(repeats: int) -> list[dict]:
    rows = []
    for name, (module, batch) in problems().items():
        objective = mc.Objective(module, nn.CrossEntropyLoss())
        w = nn.parameters_to_vector(module)
        for k in (4, 8):
            block = np.random.default_rng(k).standard_normal((k, w.size))
            for method in ("hvp", "curvature"):
                block_s, rows_s = compare(getattr(objective, method), w, block, batch, repeats)
                rows.append(
                    {
                        "network": name,
                        "parameters": int(w.size),
                        "k": k,
                        "method": method,
                        "block_ms": 1e3 * block_s,
                        "rows_ms": 1e3 * rows_s,
                        "ratio": block_s / rows_s,
                    }
                )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(RESULTS / "blocks.json"))
    args = parser.parse_args()
    with single_thread():
        rows = measure(args.repeats)
    print(
        markdown_table(
            ["network", "k", "method", "block (CPU ms)", "k calls (CPU ms)", "block / k calls"],
            [
                [
                    r["network"],
                    r["k"],
                    r["method"],
                    f"{r['block_ms']:.1f}",
                    f"{r['rows_ms']:.1f}",
                    f"{r['ratio']:.2f}",
                ]
                for r in rows
            ],
        )
    )
    write_json(args.out, {"environment": environment(), "repeats": args.repeats, "rows": rows})


if __name__ == "__main__":
    main()
