"""NumPy's BLAS against PyTorch's on the GEMMs of the zoo's dense layers, one thread.

    python benchmarks/bench_gemm.py [--repeats 30]

For each dense layer of the autoencoder (784-1000-500-250-30) and the MLP (784-512-256-10)
at batch 128, the three GEMMs of a gradient, each as both libraries are called for it: the
forward x @ W.T, the weight gradient dy.T @ x and the input gradient dy @ W. Prints GFLOPS
(2 m k n / time, the median of ``--repeats``) for NumPy (OpenBLAS in its wheels, with the
kernels it picked) and PyTorch (MKL on x86), and NumPy's time over PyTorch's: where that ratio
is above 1, a dense float32 or float64 row of `bench_nn.py` cannot beat PyTorch with NumPy's
GEMMs. PyTorch is needed (`pip install torch`); it is never a dependency of mcnet.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

BATCH = 128
LAYERS = {"autoencoder": (784, 1000, 500, 250, 30), "mlp": (784, 512, 256, 10)}


def median_seconds(left, right, repeats: int) -> float:
    """The median time of ``left @ right`` (NumPy arrays or PyTorch tensors)."""
    left @ right
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        left @ right
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    blas = [(i.get("internal_api"), i.get("architecture")) for i in threadpool_info()]
    print(f"NumPy {np.__version__}, BLAS {blas}; PyTorch {torch.__version__}")
    print("| dtype | network | GEMM | NumPy GFLOPS | PyTorch GFLOPS | NumPy / PyTorch time |")
    print("|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    with threadpool_limits(1):
        for dtype in (np.float32, np.float64):
            for network, sizes in LAYERS.items():
                for fan_in, fan_out in zip(sizes, sizes[1:]):
                    if fan_out < 64:
                        continue  # the 30- and 10-wide layers: microseconds, not GEMM speed
                    x = rng.standard_normal((BATCH, fan_in)).astype(dtype)
                    w = rng.standard_normal((fan_out, fan_in)).astype(dtype)
                    dy = rng.standard_normal((BATCH, fan_out)).astype(dtype)
                    for name, left, right in (
                        ("x @ W.T", x, w.T),
                        ("dy.T @ x", dy.T, x),
                        ("dy @ W", dy, w),
                    ):
                        (m, k), n = left.shape, right.shape[1]
                        ours = median_seconds(left, right, args.repeats)
                        theirs = median_seconds(
                            torch.from_numpy(left), torch.from_numpy(right), args.repeats
                        )
                        flops = 2.0 * m * k * n
                        print(
                            f"| {np.dtype(dtype).name} | {network} | {name}: ({m}, {k}) @ "
                            f"({k}, {n}) | {flops / ours / 1e9:.0f} | {flops / theirs / 1e9:.0f} "
                            f"| {ours / theirs:.2f} |"
                        )


if __name__ == "__main__":
    main()
