"""What each ``mcnet`` subcommand does once its flags are parsed: the checks that need
more than one flag or the file system, the run, and what it prints and writes."""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mcnet import diagnostics
from mcnet import experiments as ex
from mcnet.cli.arguments import SOLVER_NAMES, CLIError
from mcnet.datasets import (
    DatasetNotFoundError,
    data_root,
    download,
)
from mcnet.errors import CheckpointError, DataError, OutputError
from mcnet.nn import Objective, parameters_to_vector
from mcnet.solvers import make
from mcnet.training import checkpoint
from mcnet.training.history import check_writable, write_atomic


# --- shared steps -----------------------------------------------------------------------------
def _spec(args: argparse.Namespace) -> ex.ProblemSpec:
    return ex.ProblemSpec(
        model=args.model,
        activation=args.activation,
        hidden=tuple(args.hidden),
        dataset=args.dataset,
        data_dir=args.data_dir,
        train_file=args.train_file,
        test_file=args.test_file,
        train_split=args.train_split,
        holdout=args.holdout,
        subset=args.subset,
        test_subset=args.test_subset,
        dtype=args.dtype,
        device=args.device,
    )


def _load(args: argparse.Namespace, prog: str) -> ex.Problem:
    """The problem of the flags; CLIError naming the flag, or saying where data goes."""
    spec = _spec(args)
    if spec.model in ("logistic_regression", "linear_svm") and spec.activation is not None:
        raise CLIError(
            prog,
            f"--activation: {spec.model} is linear and has no activation "
            "(expected no --activation)",
        )
    try:
        return ex.load_problem(spec)
    except ex.ProblemError as exc:
        raise CLIError(prog, str(exc)) from None
    except DatasetNotFoundError as exc:
        where = f" --data-dir {args.data_dir}" if args.data_dir else ""
        raise CLIError(
            prog,
            f"--dataset {args.dataset}: {exc} From the command line: "
            f"mcnet download {args.dataset}{where}",
            1,
        ) from None
    except (DataError, OSError) as exc:  # a damaged or unreadable file
        raise CLIError(prog, f"--dataset {args.dataset}: {exc}", 1) from None


def _check_batch(problem: ex.Problem, batch_sizes: Sequence[int], prog: str, flag: str) -> None:
    n = len(problem.train[0])
    for size in batch_sizes:
        if size > n:
            raise CLIError(
                prog,
                f"{flag}: {size} is larger than the training data ({n} "
                f"examples) (expected at most {n})",
            )


def _check_output(prog: str, flag: str, path: str) -> None:
    """An output file's path, checked before any work: never a directory, a symbolic link
    or a special file, and in a folder that can be written."""
    try:
        check_writable(Path(path))
    except OutputError as exc:
        raise CLIError(prog, f"{flag}: {exc}") from None


def _check_out_dir(args: argparse.Namespace, prog: str) -> None:
    path = Path(args.out_dir)
    if os.path.lexists(path) and not path.is_dir():
        raise CLIError(
            prog,
            f"--out-dir: {path} is not a directory (expected a directory, or "
            "a path where one can be made)",
        )


def _check_plots(args: argparse.Namespace, prog: str) -> None:
    if not args.no_plots:
        try:
            ex.require_matplotlib()
        except ImportError as exc:
            raise CLIError(prog, str(exc), 1) from None


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _command_extra(command_line: Sequence[str]) -> dict[str, Any]:
    return {"command": list(command_line)}


# --- mcnet train ------------------------------------------------------------------------------
def _train(args: argparse.Namespace, command_line: Sequence[str]) -> int:
    prog = "mcnet train"
    options = dict(args.option)
    if args.lr is not None and not ex.takes_lr(args.solver):
        takers = ", ".join(n for n in SOLVER_NAMES if ex.takes_lr(n))
        raise CLIError(
            prog,
            f"--lr: {args.solver} takes no learning rate (expected --lr only with one of {takers})",
        )
    if args.eta is not None and not ex.takes_eta(args.solver):
        raise CLIError(
            prog,
            f"--eta: {args.solver} has no Taylor ratio (expected --eta only "
            f"with {' or '.join(n for n in SOLVER_NAMES if ex.takes_eta(n))})",
        )
    if args.resume and args.checkpoint is None:
        raise CLIError(prog, "--resume: nothing to resume from (expected --checkpoint DIR too)")
    if args.overwrite and args.checkpoint is None:
        raise CLIError(
            prog, "--overwrite: no checkpoint to replace (expected --checkpoint DIR too)"
        )
    if args.overwrite and args.resume:
        raise CLIError(
            prog,
            "--overwrite: --resume continues the checkpoint, --overwrite "
            "replaces it (expected one of them)",
        )
    if args.workers is not None and args.scheduler != "local":
        raise CLIError(
            prog,
            "--workers: only a cluster started here has a worker count "
            "(expected --scheduler local too)",
        )
    options = ex.solver_options(args.solver, lr=args.lr, eta=args.eta, extra=options)
    try:  # a bad --option fails here, before any data is read
        make(args.solver, **options)
    except (TypeError, ValueError) as exc:
        flag = "--option" if args.option else "--solver"
        raise CLIError(prog, f"{flag}: {exc}") from None
    outputs = [
        (flag, path)
        for flag, path in (("--out", args.out), ("--save-params", args.save_params))
        if path
    ]
    for flag, path in outputs:
        _check_output(prog, flag, path)
    if len(outputs) == 2 and Path(args.out).resolve() == Path(args.save_params).resolve():
        raise CLIError(
            prog,
            f"--save-params: {args.save_params} is the --out file too "
            "(expected two different files)",
        )
    if args.checkpoint is not None:
        _check_checkpoint(args, prog)
    problem = _load(args, prog)
    _check_batch(problem, [args.batch_size], prog, "--batch-size")
    try:
        record = ex.run(
            problem,
            args.solver,
            options,
            args.epochs,
            args.batch_size,
            args.seed,
            checkpoint=args.checkpoint,
            resume=args.resume,
            overwrite=args.overwrite,
            extra={**_command_extra(command_line), "lr": options.get("lr")},
            scheduler=args.scheduler,
            workers=args.workers,
            evaluate_every=args.evaluate_every,
        )
    except CheckpointError as exc:  # a mismatch is the flags' fault, the rest the file's
        raise CLIError(
            prog, f"--checkpoint: {exc}", 2 if isinstance(exc, ValueError) else 1
        ) from None
    except (ImportError, ConnectionError) as exc:  # no Dask, or no cluster at that address
        raise CLIError(prog, f"--scheduler {args.scheduler}: {exc}", 1) from None
    saved = args.checkpoint and (Path(args.checkpoint) / checkpoint.FILENAME).is_file()
    kept = f"; the checkpoint in {args.checkpoint} holds the last completed epoch" if saved else ""
    if record["failed"]:
        raise CLIError(prog, f"training failed: {record['failed']}{kept}", 1)
    print(f"{ex.problem_text(record['problem'])}")
    print(
        f"{args.solver} {json.dumps(record['config'])}; {args.epochs} epochs, batch "
        f"{args.batch_size}, seed {args.seed}, {record['problem']['parameters']} parameters"
    )
    print(_epoch_table(record))
    writers = {
        "--out": lambda path: ex.write_record(record, path),
        "--save-params": lambda path: _save_params(record["_params"], Path(path)),
    }
    for flag, path in outputs:
        try:
            writers[flag](path)
        except OSError as exc:  # a full disk, or the path changed since it was checked
            raise CLIError(prog, f"{flag}: cannot write {path} ({exc}){kept}", 1) from None
        print(f"wrote {path}")
    return 0


def _check_checkpoint(args: argparse.Namespace, prog: str) -> None:
    """--checkpoint DIR before any data is read: a directory that can take a checkpoint,
    and one already there only with --resume (to at least its epochs) or --overwrite."""
    directory = Path(args.checkpoint)
    try:
        checkpoint.prepare(directory)
    except CheckpointError as exc:
        raise CLIError(prog, f"--checkpoint: {exc}") from None
    if args.overwrite:
        return
    try:
        saved = checkpoint.load(directory, np)
    except CheckpointError as exc:
        raise CLIError(prog, f"--checkpoint: {exc}", 1) from None
    if saved is None:
        return
    done = saved[2]["epoch"]
    if not args.resume:
        raise CLIError(
            prog,
            f"--checkpoint: {directory} holds a checkpoint after {done} "
            "epochs (expected --resume to continue it, --overwrite to "
            "replace it, or another directory)",
        )
    if done > args.epochs:
        raise CLIError(
            prog,
            f"--epochs: {args.epochs} is fewer than the {done} epochs "
            f"already done in --checkpoint {directory} (expected --epochs "
            f"{done} or more with --resume)",
        )


def _epoch_table(record: dict[str, Any]) -> str:
    lines = [
        f"{'epoch':>5}  {'train loss':>12}  {'test loss':>12}  {'test acc':>8}  {'solver s':>9}"
    ]
    for epoch, loss in enumerate(record["train_loss"]):
        test = record["test_loss"][epoch] if record["test_loss"] else None
        acc = record["test_accuracy"][epoch] if record["test_accuracy"] else None
        lines.append(
            f"{epoch:>5}  {ex.fmt(loss, 6):>12}  {ex.fmt(test, 6):>12}  "
            f"{ex.fmt(acc, 4):>8}  {record['epoch_time'][epoch]:>9.2f}"
        )
    return "\n".join(lines)


def _save_params(w: np.ndarray, path: Path) -> None:
    """The flat parameter vector as .npy, atomically."""
    buffer = io.BytesIO()
    np.save(buffer, w)
    write_atomic(path, buffer.getvalue())


# --- mcnet compare ----------------------------------------------------------------------------
def _compare(args: argparse.Namespace, command_line: Sequence[str]) -> int:
    prog = "mcnet compare"
    _check_out_dir(args, prog)
    _check_plots(args, prog)
    if args.eta is not None and not any(ex.takes_eta(n) for n in args.solvers):
        takers = " or ".join(n for n in SOLVER_NAMES if ex.takes_eta(n))
        raise CLIError(
            prog,
            f"--eta: no solver among --solvers has a Taylor ratio (expected "
            f"--eta only with {takers})",
        )
    out_dir = Path(args.out_dir)
    if args.redraw:
        try:
            records = ex.read_compare(out_dir)
        except (OSError, ValueError, KeyError) as exc:
            raise CLIError(prog, f"--redraw: {exc}") from None
        summary = ex.summarize(records)
        summary["command"] = records[0].get("command")
    else:
        problem = _load(args, prog)
        n = len(problem.train[0])
        if args.batch_sizes is None:
            sizes, flag = [args.batch_size], "--batch-size"
        else:
            sizes, flag = [n if b == "full" else b for b in args.batch_sizes], "--batch-sizes"
            if len(set(sizes)) != len(sizes):
                raise CLIError(
                    prog,
                    f"--batch-sizes: 'full' is {n} here, which is listed too "
                    "(expected each batch size once)",
                )
        _check_batch(problem, sizes, prog, flag)
        records, summary = ex.compare(
            problem,
            args.solvers,
            args.lrs,
            args.epochs,
            sizes,
            args.seed,
            eta=args.eta,
            log=_log,
            extra=_command_extra(command_line),
            evaluate_every=args.evaluate_every,
        )
        summary["command"] = list(command_line)
    written = ex.write_compare(
        records, summary, out_dir, plots=not args.no_plots, runs=not args.redraw
    )
    best = ex.best_runs(records)
    batches = ",".join(sorted({ex.batch_text(r) for r in records}, key=_batch_order))
    epochs, seed = records[0]["epochs"], records[0]["seed"]
    print(ex.problem_text(summary["problem"]) + f"; {epochs} epochs, batch {batches}, seed {seed}")
    for row in summary["solvers"]:
        if row["grid"]:
            grid = ", ".join(f"{point}: {ex.fmt(v)}" for point, v in row["grid"].items())
            print(
                f"{row['solver']} final training loss: {grid} -> best "
                f"{ex.setting(best[row['solver']])}"
            )
    print()
    print("training loss and cumulative solver time per epoch:")
    print(ex.curve_table(list(best.values())))
    print()
    reference = summary["reference"]
    for row in summary["solvers"]:
        if "ratio_equal_epochs" in row and reference and row["solver"] != reference["solver"]:
            reached = row["time_to_reference_loss"]
            print(
                f"{ex.label(best[row['solver']])} / {ex.label(best[reference['solver']])} "
                f"training loss: {row['ratio_equal_epochs']:.3g} at equal epochs "
                f"({epochs}), {row['ratio_equal_time']:.3g} at equal wall time "
                f"({row['equal_time']:.2f} s of solver time); reaches the reference's final "
                f"loss "
                + (
                    "never"
                    if reached is None
                    else f"after {reached:.2f} s (reference: {row['reference_time']:.2f} s)"
                )
            )
    print(
        f"wrote {len(written)} files into {out_dir}/: summary.md, summary.json"
        + ("" if args.no_plots else ", loss_vs_epoch.png, loss_vs_time.png")
        + ("" if args.redraw else f", {ex.RUNS_FILE}")
    )
    return 0


def _batch_order(text: str) -> tuple[int, int]:
    return (1, 0) if text == "full" else (0, int(text))


# --- mcnet ablate -----------------------------------------------------------------------------
def _ablate(args: argparse.Namespace, command_line: Sequence[str]) -> int:
    prog = "mcnet ablate"
    _check_out_dir(args, prog)
    _check_plots(args, prog)
    studies = list(ex.STUDIES) if args.study == "all" else [args.study]
    linear = args.model in ("logistic_regression", "linear_svm")
    if linear and "activation" in studies:
        if args.study == "activation":
            raise CLIError(
                prog,
                f"--study: {args.model} has no activation to vary (expected "
                "a model with one: mlp, lenet5, autoencoder, vgg11)",
            )
        studies.remove("activation")
        _log(f"skipping the activation study: {args.model} has no activation")
    problem = _load(args, prog)
    _check_batch(problem, [args.batch_size], prog, "--batch-size")
    if "batch" in studies:
        _check_batch(problem, args.batch_sizes, prog, "--batch-sizes")
    out_dir = Path(args.out_dir)
    sections: list[str] = []
    cache: dict[str, dict[str, Any]] = {}
    records: list[dict[str, Any]] = []
    for study in studies:
        runs = ex.ablate(
            problem,
            study,
            args.epochs,
            args.batch_size,
            args.seed,
            eta=args.eta,
            log=_log,
            extra=_command_extra(command_line),
            cache=cache,
            etas=args.etas,
            batch_sizes=args.batch_sizes,
            activations=args.activations,
        )
        ex.write_ablation(study, runs, out_dir, plots=not args.no_plots)
        # rewritten after every study: an interrupted ablation keeps the studies it finished
        records += [record for _, record in runs]
        ex.write_runs(records, out_dir / ex.RUNS_FILE)
        sections.append(ex.ablation_markdown(study, runs))
        print(ex.ablation_text(study, runs))
        print()
    header = f"# Newton-Krylov ablations\n\nCommand: `{' '.join(command_line)}`\n\n"
    write_atomic(out_dir / "ablation.md", (header + "\n".join(sections)).encode())
    print(
        f"wrote {out_dir}/ablation.md, {ex.RUNS_FILE} and, per study, <study>.md"
        + ("" if args.no_plots else " and <study>.png")
    )
    return 0


# --- mcnet curvature --------------------------------------------------------------------------
def _curvature(args: argparse.Namespace, command_line: Sequence[str]) -> int:
    prog = "mcnet curvature"
    _check_out_dir(args, prog)
    _check_plots(args, prog)
    problem = _load(args, prog)
    _check_batch(problem, [args.batch_size], prog, "--batch-size")
    module, loss = problem.build(args.seed)

    w = parameters_to_vector(module).astype(np.float64)
    where = f"initial parameters (seed {args.seed})"
    if args.params or args.checkpoint:
        flag = "--params" if args.params else "--checkpoint"
        w = _read_params(prog, flag, args.params or args.checkpoint, w.size)
        where = f"{flag} {args.params or args.checkpoint}"
    objective = Objective(module, loss)
    batch = (problem.train[0][: args.batch_size], problem.train[1][: args.batch_size])
    start = time.perf_counter()
    k = min(args.top_k, w.size)
    eigenvalues = diagnostics.hessian_eigenvalues(objective, w, batch, k=k, seed=args.seed)
    trace, stderr = diagnostics.hessian_trace(
        objective, w, batch, probes=args.probes, seed=args.seed
    )
    grid, density = diagnostics.spectral_density(
        objective, w, batch, lanczos_steps=args.lanczos_steps, seed=args.seed
    )
    seconds = time.perf_counter() - start
    out_dir = Path(args.out_dir)
    result = {
        "command": list(command_line),
        "parameters_at": where,
        "problem": {**vars(_spec(args)), **problem.description, "parameters": int(w.size)},
        "batch_size": args.batch_size,
        "eigenvalues": [float(v) for v in eigenvalues],
        "trace": trace,
        "trace_stderr": stderr,
        "probes": args.probes,
        "lanczos_steps": args.lanczos_steps,
        "density_grid": grid.tolist(),
        "density": density.tolist(),
        "seconds": seconds,
        "versions": ex.versions(),
    }
    write_atomic(out_dir / "curvature.json", json.dumps(ex.json_safe(result), indent=1).encode())
    if not args.no_plots:
        diagnostics.plot_spectral_density(grid, density, out_dir / "spectral_density.png")
    activation = problem.spec.resolved_activation()
    print(ex.problem_text({**result["problem"], "activation": activation}))
    print(
        f"Hessian of the loss on the first {args.batch_size} training examples at {where}, "
        f"{w.size} parameters:"
    )
    print(f"{'k':>3}  {'eigenvalue':>14}")
    for i, value in enumerate(eigenvalues, 1):
        print(f"{i:>3}  {value:>14.6g}")
    print(f"trace {trace:.6g} +- {stderr:.2g} (Hutchinson, {args.probes} Rademacher probes)")
    print(f"spectral density: {args.lanczos_steps} Lanczos steps; {seconds:.1f} s in all")
    print(
        f"wrote {out_dir}/curvature.json"
        + ("" if args.no_plots else f" and {out_dir}/spectral_density.png")
    )
    return 0


def _read_params(prog: str, flag: str, location: str, size: int) -> np.ndarray:
    path = Path(location)
    if flag == "--checkpoint":
        path = path / checkpoint.FILENAME
    if not path.is_file():
        raise CLIError(prog, f"{flag}: {path}: no such file")
    try:
        w = (
            checkpoint.read_npz(path).get("w")
            if zipfile.is_zipfile(path)
            else checkpoint.read_npy(path)
        )
    except CheckpointError as exc:
        raise CLIError(prog, f"{flag}: {exc}", 1) from None
    if w is None or w.dtype.kind not in "iuf":
        raise CLIError(
            prog,
            f"{flag}: {path}: not a parameter vector (expected a .npy of "
            "numbers from train --save-params, or a checkpoint.npz)",
            1,
        )
    w = np.asarray(w, dtype=np.float64).ravel()
    if w.size != size:
        raise CLIError(
            prog,
            f"{flag}: {path} holds {w.size} values, the model has {size} "
            "parameters (expected the same --model, --hidden and data flags)",
        )
    return w


# --- mcnet download ---------------------------------------------------------------------------
def _download(args: argparse.Namespace, command_line: Sequence[str]) -> int:
    try:
        folder = download(args.name, root=args.data_dir, timeout=args.timeout)
    except (DatasetNotFoundError, ValueError) as exc:  # unreachable, timed out, checksum
        raise CLIError("mcnet download", str(exc), 1) from None
    except OSError as exc:
        raise CLIError(
            "mcnet download",
            f"--data-dir: cannot write the files into "
            f"{data_root(args.data_dir) / args.name} "
            f"({exc.strerror or exc}); expected a writable "
            "folder",
            1,
        ) from None
    print(f"{args.name}: files in {folder}")
    return 0


HANDLERS: dict[str, Callable[[argparse.Namespace, Sequence[str]], int]] = {
    "train": _train,
    "compare": _compare,
    "ablate": _ablate,
    "curvature": _curvature,
    "download": _download,
}
