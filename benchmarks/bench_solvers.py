"""NewtonKrylov against the baselines on digits(), and where its iteration time goes.

Problems (scikit-learn's digits, 1,500 training images, 8x8 flattened): multinomial
logistic regression, the multi-class squared-hinge SVM, and an MLP 64-32-10 (tanh). Every
solver starts from the same initialisation and sees the same minibatches (batch 128,
seed 0) for the same number of epochs. First-order solvers (SGD, Adam, AdaGrad, RMSprop,
Shampoo) run over lr in {1e-1, 1e-2, 1e-3, 1e-4} and the best final training loss is kept;
NewtonKrylov, L-BFGS, Hessian-free and LSCG run once at their defaults (untuned).

Ratios are NewtonKrylov's training loss over the rival's, below 1 where NewtonKrylov is
ahead: at equal epochs (the final losses), and at equal wall time. For the latter a rival
faster than NewtonKrylov is run again (at its best lr) for as many epochs as fill
NewtonKrylov's solver time, and its loss curve (piecewise linear in cumulative solver time)
is read at that time; a slower rival is compared with NewtonKrylov's curve read at the
rival's total time.

The breakdown splits NewtonKrylov's solver time by evaluation kind: the global gradient
(full data), the Krylov loop (batch gradient, H v and curvature passes) and step sizing
(loss evaluations). ``--lenet N`` adds LeNet-5 (sigmoid) on N MNIST images, the seed's
setting for its 89.8 % figure.

    python benchmarks/bench_solvers.py [--epochs 10] [--lenet 1000 --mnist DIR]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
from _report import RESULTS, environment, markdown_table, single_thread, write_atomic, write_json

import mcnet as mc
from mcnet import nn
from mcnet.solvers import (
    LBFGS,
    LSCG,
    SGD,
    AdaGrad,
    Adam,
    HessianFree,
    NewtonKrylov,
    RMSprop,
    Shampoo,
    TrainingError,
)

PROBLEMS = {
    "logistic regression": lambda: (nn.models.logistic_regression(64, 10), nn.CrossEntropyLoss()),
    "squared-hinge SVM": lambda: (nn.models.linear_svm(64, 10), nn.SquaredHingeLoss()),
    "MLP 64-32-10 tanh": lambda: (nn.models.mlp([64, 32, 10], "tanh"), nn.CrossEntropyLoss()),
}
LEARNING_RATES = (1e-1, 1e-2, 1e-3, 1e-4)
TUNED = {"sgd": SGD, "adam": Adam, "adagrad": AdaGrad, "rmsprop": RMSprop, "shampoo": Shampoo}
UNTUNED = {"newton-krylov": NewtonKrylov, "lbfgs": LBFGS, "hessian-free": HessianFree, "lscg": LSCG}
KINDS = {  # evaluation kind -> phase of Algorithm 1
    "global_gradient": "global gradient",
    "gradient": "Krylov loop",
    "hvp": "Krylov loop",
    "curvature": "Krylov loop",
    "function": "step sizing",
}


def run(make_problem, solver, data, epochs: int, batch_size: int) -> dict:
    nn.manual_seed(0)
    module, loss = make_problem()
    try:
        history = mc.fit(
            module, loss, data, solver, epochs=epochs, batch_size=batch_size, progress=False
        )
    except TrainingError as error:
        return {"solver": repr(solver), "failed": str(error), "final": math.inf}
    return {
        "solver": repr(solver),
        "train_loss": history.train_loss,
        "epoch_time": history.epoch_time,
        "final": history.train_loss[-1],
        "seconds_by_kind": history.seconds_by_kind,
        "evaluations": history.evaluations,
    }


def loss_at(result: dict, seconds: float) -> float:
    return float(np.interp(seconds, result["epoch_time"], result["train_loss"]))


def ratio(a: float, b: float) -> float:
    """a / b, with a loss driven to exactly 0 (separable data) handled."""
    if b == 0:
        return 1.0 if a == 0 else math.inf
    return a / b


def breakdown(result: dict) -> dict[str, float]:
    phases: dict[str, float] = {}
    for kind, seconds in result["seconds_by_kind"].items():
        phase = KINDS.get(kind, kind)
        phases[phase] = phases.get(phase, 0.0) + seconds
    total = result["epoch_time"][-1]
    phases["other (vector algebra, bookkeeping)"] = total - sum(phases.values())
    return {phase: seconds / total for phase, seconds in phases.items()}


def compare(name, make_problem, data, epochs, batch_size) -> tuple[dict, str]:
    results: dict[str, dict] = {}
    for solver_name, cls in UNTUNED.items():
        results[solver_name] = run(make_problem, cls(), data, epochs, batch_size)
        print(f"  {solver_name}: {results[solver_name]['final']:.4g}", flush=True)
    for solver_name, cls in TUNED.items():
        trials = {
            lr: run(make_problem, cls(lr=lr), data, epochs, batch_size) for lr in LEARNING_RATES
        }
        best = min(trials, key=lambda lr: trials[lr]["final"])
        results[solver_name] = dict(
            trials[best], lr=best, grid={lr: t["final"] for lr, t in trials.items()}
        )
        print(f"  {solver_name}: {results[solver_name]['final']:.4g} (lr {best:g})", flush=True)
    nk = results["newton-krylov"]
    budget = nk["epoch_time"][-1]
    rows = []
    for solver_name, result in results.items():
        if "failed" in result:
            rows.append([solver_name, "-", "failed", "-", "-", "-"])
            continue
        seconds = result["epoch_time"][-1]
        if seconds < budget:
            # A faster rival gets NK's whole time budget: as many epochs as fill it.
            per_epoch = (seconds - result["epoch_time"][0]) / epochs
            more = min(math.ceil((budget - result["epoch_time"][0]) / per_epoch), 100 * epochs)
            solver = (UNTUNED.get(solver_name) or TUNED[solver_name])(
                **({"lr": result["lr"]} if "lr" in result else {})
            )
            result["equal_time_run"] = run(make_problem, solver, data, more, batch_size)
            equal_time = ratio(nk["final"], loss_at(result["equal_time_run"], budget))
        else:  # a slower rival: NK's curve read at the rival's total time
            equal_time = ratio(loss_at(nk, seconds), result["final"])
        rows.append(
            [
                solver_name,
                f"{result.get('lr', '-')}",
                f"{result['final']:.4g}",
                f"{seconds:.2f}",
                f"{ratio(nk['final'], result['final']):.3g}",
                f"{equal_time:.3g}",
            ]
        )
    table = f"### {name}\n\n" + markdown_table(
        [
            "solver",
            "best lr",
            f"train loss after {epochs} epochs",
            "solver time (s)",
            "NK / it, equal epochs",
            "NK / it, equal wall time",
        ],
        rows,
    )
    return results, table


def lenet_breakdown(mnist: str, examples: int, batch_size: int) -> tuple[dict, str]:
    images, labels = mc.datasets.mnist(root=mnist, split="test")
    data = (images[:examples], labels[:examples])
    result = run(
        lambda: (nn.models.lenet5("sigmoid"), nn.CrossEntropyLoss()),
        NewtonKrylov(),
        data,
        1,
        batch_size,
    )
    shares = breakdown(result)
    table = f"### LeNet-5 (sigmoid), {examples} MNIST images, 1 epoch\n\n" + markdown_table(
        ["phase", "share of NewtonKrylov's time"],
        [[phase, f"{share:.1%}"] for phase, share in shares.items()],
    )
    return {"result": result, "breakdown": shares}, table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument(
        "--lenet",
        type=int,
        default=0,
        metavar="N",
        help="also break down LeNet-5 on N MNIST images",
    )
    parser.add_argument("--mnist", default=None, help="folder with the MNIST IDX files")
    args = parser.parse_args()

    images, labels = mc.datasets.digits()
    data = (images.reshape(len(images), -1)[:1500], labels[:1500])
    report = {
        "environment": environment(),
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "problems": {},
    }
    tables = [
        f"# Solvers on digits ({args.epochs} epochs, batch {args.batch_size})\n",
        f"commit {report['environment']['commit']}, one thread, "
        f"load {report['environment']['load_average_1min']}\n",
    ]
    start = time.perf_counter()
    with single_thread():
        for name, make_problem in PROBLEMS.items():
            print(name, flush=True)
            results, table = compare(name, make_problem, data, args.epochs, args.batch_size)
            shares = breakdown(results["newton-krylov"])
            table += (
                "\nNewtonKrylov's time: "
                + ", ".join(f"{phase} {share:.1%}" for phase, share in shares.items())
                + "\n"
            )
            report["problems"][name] = {"results": results, "breakdown": shares}
            tables.append(table)
            print(table, flush=True)
        if args.lenet:
            report["lenet5"], table = lenet_breakdown(args.mnist, args.lenet, args.batch_size)
            tables.append(table)
            print(table)
    report["seconds"] = time.perf_counter() - start
    write_json(RESULTS / "solvers_digits.json", report)
    write_atomic(RESULTS / "solvers_digits.md", "\n".join(tables))


if __name__ == "__main__":
    main()
