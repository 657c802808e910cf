"""GPU elementwise benchmark: fused Numba CUDA kernels vs the per-array CuPy recursion.

exp, tanh, sigmoid and multiply on 10**7 elements, orders 1-3, float64; order 1 also vs
CuPy's own complex128 functions.  Median of 10 synchronised runs after a warm-up.
Writes benchmarks/results/gpu_elementwise.json (atomically) and prints a table.

    python benchmarks/bench_gpu.py
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import cupy as cp
import numpy as np

import mcnet as mc
from mcnet.algebra import multicomplex as alg
from mcnet.tensor import Tensor

N = 10**7
RESULTS = Path(__file__).resolve().parent / "results"


def timed(fn, repeats: int = 10) -> float:
    fn()
    cp.cuda.Device().synchronize()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        cp.cuda.Device().synchronize()
        samples.append(time.perf_counter() - start)
    return float(np.median(samples))


def _cases(a: Tensor, b: Tensor) -> dict:
    """op name: (mcnet call, per-array CuPy recursion, CuPy complex128 equivalent)."""
    return {
        "exp": (lambda: mc.exp(a), lambda: Tensor._from_comps(alg.exp(a.comps)), cp.exp),
        "tanh": (lambda: mc.tanh(a), lambda: Tensor._from_comps(alg.tanh(a.comps)), cp.tanh),
        "sigmoid": (
            lambda: mc.sigmoid(a),
            lambda: Tensor._from_comps(alg.sigmoid(a.comps)),
            lambda z: 1 / (1 + cp.exp(-z)),
        ),
        "multiply": (
            lambda: a * b,
            lambda: Tensor._from_comps(alg.mul(a.comps, b.comps)),
            lambda z: z * z,
        ),
    }


def main() -> None:
    rng = np.random.default_rng(0)
    rows = []
    for order in (1, 2, 3):
        parts = rng.uniform(-0.5, 0.5, size=(2**order, N))
        parts[0] += 1.0
        a = mc.from_parts(parts).to("cuda")
        b = mc.from_parts(parts[::-1].copy()).to("cuda")
        cases = _cases(a, b)
        for name, (fused, recursion, cupy_fn) in cases.items():
            row = {
                "op": name,
                "order": order,
                "mcnet_s": timed(fused),
                "cupy_recursion_s": timed(recursion),
            }
            if order == 1:
                z = a.data[0]
                row["cupy_complex128_s"] = timed(lambda z=z, f=cupy_fn: f(z))
            rows.append(row)
            print(row, flush=True)
    commit = (
        os.environ.get("MCNET_COMMIT")
        or subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
    )
    out = {
        "commit": commit,
        "device": cp.cuda.runtime.getDeviceProperties(0)["name"].decode(),
        "elements": N,
        "rows": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=RESULTS, delete=False, suffix=".tmp") as f:
        json.dump(out, f, indent=1)
    os.replace(f.name, RESULTS / "gpu_elementwise.json")


if __name__ == "__main__":
    main()
