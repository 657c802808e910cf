#!/usr/bin/env bash
# The one device session: install mcnet, run the GPU tests (solvers included), LeNet-5 on the
# GPU (H v against PyTorch CUDA, a Newton-Krylov epoch on MNIST: issue 9's and issue 12's
# device measurements), the GPU elementwise benchmark and LeNet-5 vs PyTorch on the host CPU
# (PyTorch is on the device image, not a dependency). MNIST's IDX files go in .bench_data/
# (ignored; pass it in the run's carry: mkdir -p .bench_data && cp /work/shared/data/mnist/*
# .bench_data/). Most important first, each step time-boxed, to fit a 15-minute lease.
# Usage on the device machine, from the repository root (the copy there has no .git, so the
# commit measured is passed in):  OUT=/some/dir MCNET_COMMIT=abc1234 bash benchmarks/gpu/run.sh
set -uo pipefail
OUT=${OUT:-/tmp/mcnet-gpu}
mkdir -p "$OUT"
export MCNET_CACHE=/tmp/mcnet-cache PYTHONUNBUFFERED=1 MCNET_COMMIT=${MCNET_COMMIT:-unknown}
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >"$OUT/install.log" 2>&1 \
    || export PYTHONPATH=$PWD
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >"$OUT/device.txt"
timeout 200 python3 -m pytest -m gpu -q -p no:cacheprovider tests/test_gpu.py \
    tests/test_kernels.py tests/test_datasets.py tests/test_gpu_solvers.py 2>&1 \
    | tee "$OUT/gpu_tests.log"
timeout 240 python3 benchmarks/bench_gpu_lenet.py --mnist .bench_data \
    --out "$OUT/gpu_lenet5.json" 2>&1 | tee "$OUT/gpu_lenet5.log"
timeout 100 python3 benchmarks/bench_gpu.py 2>&1 | tee "$OUT/gpu_bench.log"
cp benchmarks/results/gpu_elementwise.json "$OUT/" 2>/dev/null
timeout 120 python3 benchmarks/bench_nn.py --mnist .bench_data --repeats 5 \
    --out "$OUT/nn_lenet5.json" 2>&1 | tee "$OUT/nn_bench.log"
