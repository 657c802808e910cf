"""One NewtonKrylov setting on the six MNIST problems of ``run_cpu.sh nk-*``, scored against
the best-tuned Adam of the committed run records (issue 12): how newton-krylov-gn's
defaults were chosen, one setting for all six problems.

    python benchmarks/experiments/nk_settings.py '{"curvature": "gauss-newton", "damping": 1e-3}' \
        [PROBLEM ...]     # default: all six; prints NK / Adam at equal epochs per problem
                          # and the solver time at each epoch end

The protocol is the comparison's: logistic regression and the SVM on 8,000 images, 10
epochs, the best of batch 128, 1,024 and full; the networks at batch 128, 5 epochs; seed 0.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from mcnet import experiments as ex

RESULTS = Path(__file__).resolve().parent / "results" / "nk-vs-baselines"
DATA = "/work/shared/data"
PROBLEMS = {
    "logistic": ({"model": "logistic_regression"}, 10),
    "svm": ({"model": "linear_svm"}, 10),
    "mlp": ({"model": "mlp", "hidden": (128, 64), "activation": "tanh", "subset": 2000}, 5),
    "lenet5-tanh": ({"model": "lenet5", "activation": "tanh", "subset": 2000}, 5),
    "lenet5-sigmoid": ({"model": "lenet5", "activation": "sigmoid", "subset": 2000}, 5),
    "autoencoder": ({"model": "autoencoder", "subset": 1000}, 5),
}


def main() -> None:
    options = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    data_dir = os.environ.get("MCNET_DATA_DIR", DATA)
    for name in sys.argv[2:] or list(PROBLEMS):
        flags, epochs = PROBLEMS[name]
        adam = ex.final_loss(ex.best_runs(ex.read_compare(RESULTS / name))["adam"])
        problem = ex.load_problem(ex.ProblemSpec(dataset="mnist", data_dir=data_dir,
                                                 train_split="test", holdout=2000, **flags))
        linear = name in ("logistic", "svm")
        sizes = [128, 1024, len(problem.train[0])] if linear else [128]
        records = {size: ex.run(problem, "newton-krylov", dict(options), epochs, size,
                                progress=False) for size in sizes}
        losses = {size: ex.final_loss(record) for size, record in records.items()}
        size = min(losses, key=losses.get)
        times = ", ".join(f"{t:.3g}" for t in records[size]["epoch_time"][1:])
        epoch_losses = ", ".join(f"{loss:.4g}" for loss in records[size]["train_loss"][1:])
        print(f"{name}: {json.dumps(options)} final loss {losses[size]:.4g} (batch {size}), "
              f"NK / Adam {losses[size] / adam:.3f}; every batch: {losses}; training loss / solver "
              f"time at each epoch end: {epoch_losses} / {times} s", flush=True)


if __name__ == "__main__":
    main()
