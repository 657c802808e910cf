"""One NewtonKrylov setting on the six MNIST problems of ``run_cpu.sh nk-*``, scored against
the best-tuned Adam of the committed run records (issue 12): how newton-krylov-gn's
defaults were chosen, one setting for all six problems.

    python benchmarks/experiments/nk_settings.py '{"curvature": "gauss-newton", "damping": 1e-3}' \
        [PROBLEM ...] [--adam]
                          # default: all six; prints NK / Adam at equal epochs per problem,
                          # the training loss and solver time at each epoch end

``--adam`` also reruns that Adam (its best lr and batch size in the committed records) in
the same process right after, so that both solver times are taken under the same load, and
prints the ratio at equal wall time (T = the shorter total solver time, each loss as
measured by T: `mcnet.experiments.losses_at_equal_time`). Both runs then measure the full
training loss after every step (``evaluate_every=1``, left out of the solver time), so that
"as measured by T" is not rounded down to the last epoch end; it also prints when NK first
measured a loss at or below Adam's final one.

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


def epochs_line(record: dict) -> str:
    losses = ", ".join(f"{loss:.4g}" for loss in record["train_loss"][1:])
    times = ", ".join(f"{t:.3g}" for t in record["epoch_time"][1:])
    return f"training loss / solver time at each epoch end: {losses} / {times} s"


def main() -> None:
    args = [a for a in sys.argv[1:] if a != "--adam"]
    with_adam = "--adam" in sys.argv[1:]
    options = json.loads(args[0]) if args else {}
    data_dir = os.environ.get("MCNET_DATA_DIR", DATA)
    for name in args[1:] or list(PROBLEMS):
        flags, epochs = PROBLEMS[name]
        adam = ex.best_runs(ex.read_compare(RESULTS / name))["adam"]
        problem = ex.load_problem(
            ex.ProblemSpec(
                dataset="mnist", data_dir=data_dir, train_split="test", holdout=2000, **flags
            )
        )
        linear = name in ("logistic", "svm")
        sizes = [128, 1024, len(problem.train[0])] if linear else [128]
        every = 1 if with_adam else None
        records = {
            size: ex.run(
                problem,
                "newton-krylov",
                dict(options),
                epochs,
                size,
                progress=False,
                evaluate_every=every,
            )
            for size in sizes
        }
        losses = {size: ex.final_loss(record) for size, record in records.items()}
        size = min(losses, key=losses.get)
        print(
            f"{name}: {json.dumps(options)} final loss {losses[size]:.4g} (batch {size}), "
            f"NK / Adam {losses[size] / ex.final_loss(adam):.3f}; every batch: {losses}; "
            f"{epochs_line(records[size])}",
            flush=True,
        )
        if with_adam:
            rerun = ex.run(
                problem,
                "adam",
                {"lr": adam["lr"]},
                epochs,
                adam["batch_size"],
                progress=False,
                evaluate_every=every,
            )
            t, nk_loss, adam_loss = ex.losses_at_equal_time(records[size], rerun)
            reached = ex.time_to_loss(records[size], ex.final_loss(rerun))
            print(
                f"  adam lr {adam['lr']} (batch {adam['batch_size']}) rerun: {epochs_line(rerun)}"
                f"; equal wall time T = {t:.3g} s: NK {nk_loss:.4g} / Adam {adam_loss:.4g} = "
                f"{nk_loss / adam_loss:.3f}; NK first at or below Adam's final loss after "
                f"{'never' if reached is None else f'{reached:.3g} s'}",
                flush=True,
            )


if __name__ == "__main__":
    main()
