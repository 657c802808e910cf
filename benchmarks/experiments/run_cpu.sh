#!/usr/bin/env bash
# The CPU-sized experiments whose results are committed under results/ (see README.md).
# Run from the repository root: bash benchmarks/experiments/run_cpu.sh [name ...]
# MNIST here is the t10k split only (what /work/shared/data/mnist holds): every run trains
# on its first examples and tests on its last 2000 (--train-split test --holdout 2000).
set -euo pipefail
# One BLAS thread: on a shared 2-core machine OpenBLAS's second thread spin-waits for a core
# and a 128x784 @ 784x10 product took 34 ms instead of 1.2 ms (measured at load average 10).
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1} OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
export MKL_NUM_THREADS=${MKL_NUM_THREADS:-1}
MCNET=${MCNET:-.venv/bin/mcnet}
DATA=${MCNET_DATA_DIR:-/work/shared/data}
OUT=benchmarks/experiments/results
MNIST="--dataset mnist --data-dir $DATA --train-split test --holdout 2000"

# Each folder keeps the summary, the figures and one file of run records (runs.json.gz,
# whose records hold the command); what a run prints stays on the terminal.
run() {  # name, then the mcnet arguments
    local name=$1; shift
    mkdir -p "$OUT/$name"
    echo "$MCNET $*"
    "$MCNET" "$@" --out-dir "$OUT/$name"
}

names=("$@")
selected() { [ ${#names[@]} -eq 0 ] || [[ " ${names[*]} " == *" $1 "* ]]; }

# LR and SVM: every solver at batch 128, 1024 and the full set, the best kept (the seed's
# protocol for these two); the networks: batch 128 (the seed's for DNNs).
GRID="--batch-sizes 128,1024,full"
if selected lenet5-mnist2000; then
    run lenet5-mnist2000 compare --model lenet5 --activation sigmoid $MNIST --subset 2000 \
        --epochs 5 --solvers newton-krylov,adam
fi
if selected logistic-mnist; then
    run logistic-mnist compare --model logistic_regression $MNIST --epochs 10 $GRID \
        --solvers newton-krylov,adam,adagrad,lscg
fi
if selected svm-mnist; then
    run svm-mnist compare --model linear_svm $MNIST --epochs 10 $GRID \
        --solvers newton-krylov,adam,adagrad,lscg
fi
if selected logistic-libsvm; then
    .venv/bin/python benchmarks/experiments/mnist_to_libsvm.py "$DATA" /tmp/mnist-t10k.libsvm
    run logistic-libsvm compare --model logistic_regression --dataset libsvm \
        --train-file /tmp/mnist-t10k.libsvm --holdout 2000 --epochs 10 $GRID \
        --solvers newton-krylov,adam
fi
if selected autoencoder-mnist1000; then
    run autoencoder-mnist1000 compare --model autoencoder $MNIST --subset 1000 --epochs 5 \
        --solvers newton-krylov,adam
fi
# Issue 12: Newton-Krylov (Algorithm 1, its cheap-iteration and Gauss-Newton variants) against every
# baseline at its best lr, on the six problems, MNIST subsets, float64, one BLAS thread; then
# newton-krylov-fast with the training loss measured after every step (--evaluate-every 1, out of
# the solver time), and the summary redrawn over all runs.
BASELINES=sgd,adam,adagrad,rmsprop,shampoo,shampoo-grafted,schedule-free-adamw,sophia-h,adahessian
ALL="--solvers newton-krylov,newton-krylov-cheap,newton-krylov-gn,$BASELINES"
nk() {  # problem, then the mcnet problem flags
    local name=nk-vs-baselines/$1; shift
    run "$name" compare "$@" $ALL
    "$MCNET" compare "$@" --solvers newton-krylov-fast --evaluate-every 1 --no-plots \
        --out-dir "$OUT/$name"
    "$MCNET" compare --redraw --out-dir "$OUT/$name"
}
if selected nk-logistic; then
    nk logistic --model logistic_regression $MNIST --epochs 10 $GRID
fi
if selected nk-svm; then
    nk svm --model linear_svm $MNIST --epochs 10 $GRID
fi
if selected nk-mlp; then
    nk mlp --model mlp --hidden 128,64 --activation tanh $MNIST --subset 2000 --epochs 5
fi
if selected nk-lenet5-tanh; then
    nk lenet5-tanh --model lenet5 --activation tanh $MNIST --subset 2000 --epochs 5
fi
if selected nk-lenet5-sigmoid; then
    nk lenet5-sigmoid --model lenet5 --activation sigmoid $MNIST --subset 2000 --epochs 5
fi
if selected nk-autoencoder; then
    nk autoencoder --model autoencoder $MNIST --subset 1000 --epochs 5
fi
# The supplement's Newton-Krylov studies at CPU size: the default problem (MLP 64-32-10,
# sigmoid, on digits), 10 epochs, so that Table 1's epochs 1 and 10 both exist.
if selected ablate-digits; then
    run ablate-digits ablate --epochs 10
fi
# Curvature: the MLP at its initial parameters and after 10 Newton-Krylov epochs; LeNet-5
# at its initial parameters on 128 MNIST images.
if selected curvature; then
    mkdir -p "$OUT/curvature"
    "$MCNET" train --epochs 10 --save-params "$OUT/curvature/mlp-trained.npy" \
        --out "$OUT/curvature/mlp-train.json"
    run curvature/mlp-initial curvature
    run curvature/mlp-trained curvature --params "$OUT/curvature/mlp-trained.npy"
    run curvature/lenet5-initial curvature --model lenet5 $MNIST
fi
