#!/usr/bin/env bash
# The one device session: install mcnet, run the GPU tests, the GPU elementwise benchmark and
# LeNet-5 vs PyTorch (CPU, one thread; PyTorch is on the device image, not a dependency).
# Usage on the device machine, from the repository root (the copy there has no .git, so the
# commit measured is passed in):  OUT=/some/dir MCNET_COMMIT=abc1234 bash benchmarks/gpu/run.sh
set -uo pipefail
OUT=${OUT:-/tmp/mcnet-gpu}
mkdir -p "$OUT"
export MCNET_CACHE=/tmp/mcnet-cache PYTHONUNBUFFERED=1 MCNET_COMMIT=${MCNET_COMMIT:-unknown}
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >"$OUT/install.log" 2>&1 \
    || export PYTHONPATH=$PWD
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >"$OUT/device.txt"
timeout 240 python3 -m pytest -m gpu -q -p no:cacheprovider \
    tests/test_gpu.py tests/test_kernels.py tests/test_datasets.py 2>&1 | tee "$OUT/gpu_tests.log"
timeout 150 python3 benchmarks/bench_gpu.py 2>&1 | tee "$OUT/gpu_bench.log"
cp benchmarks/results/gpu_elementwise.json "$OUT/" 2>/dev/null
timeout 240 python3 benchmarks/bench_nn.py --mnist .bench_data --repeats 5 \
    --out "$OUT/nn_lenet5.json" 2>&1 | tee "$OUT/nn_bench.log"
