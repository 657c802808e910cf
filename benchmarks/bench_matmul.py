"""Multicomplex matmul against the complex and real GEMMs it is built from.

    python benchmarks/bench_matmul.py [--repeats 21]

For each shape and order n = 1, 2, 3, one thread, float64 base:
- order-n @ order-n: mcnet's ``a @ b`` against 4**(n-1) complex128 GEMMs of that shape (the
  product rule's cost, timed as one GEMM times the count) and against one real GEMM;
- order-n @ order-0 (real weights, multicomplex activations, as in a network's forward pass):
  against 2**n real GEMMs (two per complex component) and against one real GEMM of the
  2**n coefficient blocks stacked into a (2**n M) x K matrix (the least it could cost).
Each mcnet result is first checked against a component-pair loop of real GEMMs on the parts
layout.  Writes benchmarks/results/matmul.{md,json}.
"""

from __future__ import annotations

import os

os.environ.setdefault("NUMBA_NUM_THREADS", "1")  # before numba is imported (by mcnet)

import argparse  # noqa: E402
from functools import partial  # noqa: E402
from operator import matmul  # noqa: E402

import numpy as np  # noqa: E402
from _report import (  # noqa: E402
    RESULTS,
    environment,
    markdown_table,
    median_time,
    single_thread,
    write_atomic,
    write_json,
)

import mcnet as mc  # noqa: E402

ORDERS = (1, 2, 3)
SHAPES = {"square 256": ((256, 256), (256, 256)), "LeNet FC": ((128, 400), (400, 120))}
AGREEMENT = 1e-12  # largest difference per component, relative to that component's size


def parts_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Reference product on parts: one real GEMM per component pair, e_i e_j = +-e_(i xor j)."""
    out = np.zeros((max(len(a), len(b)), a.shape[1], b.shape[2]))
    for i in range(len(a)):
        for j in range(len(b)):
            sign = -1.0 if (i & j).bit_count() % 2 else 1.0
            out[i ^ j] += sign * (a[i] @ b[j])
    return out


def check_agreement(label: str, got: np.ndarray, want: np.ndarray) -> None:
    scale = np.max(np.abs(want), axis=(1, 2), keepdims=True)
    worst = float(np.max(np.abs(got - want) / scale))
    if not worst <= AGREEMENT:
        raise SystemExit(f"{label}: mcnet matmul differs from the reference by {worst:.2e}")


def measure(repeats: int) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for shape_name, (left, right) in SHAPES.items():
        real_a, real_b = rng.standard_normal(left), rng.standard_normal(right)
        complex_a = real_a + 1j * rng.standard_normal(left)
        complex_b = real_b + 1j * rng.standard_normal(right)
        for order in ORDERS:
            # baselines are re-timed next to each measurement: the machine's load drifts
            real_gemm = median_time(partial(matmul, real_a, real_b), repeats)
            complex_gemm = median_time(partial(matmul, complex_a, complex_b), repeats)
            a_parts = rng.standard_normal((2**order, *left))
            b_parts = rng.standard_normal((2**order, *right))
            a, b = mc.from_parts(a_parts), mc.from_parts(b_parts)
            weights = mc.tensor(real_b)
            label = f"{shape_name}, order {order}"
            check_agreement(label, (a @ b).parts, parts_matmul(a_parts, b_parts))
            check_agreement(
                label + " @ real", (a @ weights).parts, parts_matmul(a_parts, real_b[None])
            )
            stacked = a_parts.reshape(-1, left[1])
            common = {
                "shape": f"{left} @ {right}",
                "name": shape_name,
                "order": order,
                "real_gemm_s": real_gemm,
            }
            rows.append(
                common
                | {
                    "case": "order-n @ order-n",
                    "mcnet_s": median_time(partial(matmul, a, b), repeats),
                    "gemm_count": 4 ** (order - 1),
                    "gemm_kind": "complex128",
                    "gemm_baseline_s": 4 ** (order - 1) * complex_gemm,
                    "stacked_real_gemm_s": None,
                }
            )
            rows.append(
                common
                | {
                    "case": "order-n @ real",
                    "mcnet_s": median_time(partial(matmul, a, weights), repeats),
                    "gemm_count": 2**order,
                    "gemm_kind": "float64",
                    "gemm_baseline_s": 2**order * real_gemm,
                    "stacked_real_gemm_s": median_time(partial(matmul, stacked, real_b), repeats),
                }
            )
            for row in rows[-2:]:
                print(
                    f"  {label:22s} {row['case']:18s} mcnet {row['mcnet_s'] * 1e3:7.2f} ms",
                    flush=True,
                )
    return rows


def markdown(rows: list[dict], env: dict, repeats: int) -> str:
    def ms(seconds):
        return "—" if seconds is None else f"{seconds * 1e3:.2f}"

    table = [
        [
            r["name"],
            r["shape"],
            r["case"],
            r["order"],
            ms(r["mcnet_s"]),
            f"{r['gemm_count']} x {r['gemm_kind']} = {ms(r['gemm_baseline_s'])}",
            f"{r['mcnet_s'] / r['gemm_baseline_s']:.2f}",
            ms(r["stacked_real_gemm_s"]),
            ms(r["real_gemm_s"]),
            f"{r['mcnet_s'] / r['real_gemm_s']:.1f}",
        ]
        for r in rows
    ]
    return (
        "# Multicomplex matmul vs the GEMMs it is built from, float64, one thread\n\n"
        f"Median of {repeats} runs (after one warm-up), milliseconds. mcnet commit "
        f"{env['commit']}, NumPy {env['numpy']}, {env['cpu']}, {env['date']}.\n"
        "GEMM baseline: the product rule's count of GEMMs of that shape, timed as one GEMM x "
        "count (order-n @ order-n: 4^(n-1) complex GEMMs; order-n @ real: 2^n real GEMMs). "
        "Stacked real GEMM: the 2^n coefficient blocks of the activations as one "
        "(2^n M) x K real matrix times the weights.\n\n"
        + markdown_table(
            [
                "shape",
                "operands",
                "case",
                "order",
                "mcnet ms",
                "GEMM baseline ms",
                "mcnet / baseline",
                "stacked real GEMM ms",
                "one real GEMM ms",
                "mcnet / real GEMM",
            ],
            table,
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=21, help="timed runs per variant")
    args = parser.parse_args()
    env = environment()
    print(f"mcnet commit {env['commit']}, NumPy {env['numpy']}, {env['cpu']}")
    with single_thread():
        rows = measure(args.repeats)
    text = markdown(rows, env, args.repeats)
    write_atomic(RESULTS / "matmul.md", text)
    write_json(
        RESULTS / "matmul.json", {"environment": env, "repeats": args.repeats, "results": rows}
    )
    print(text)


if __name__ == "__main__":
    main()
