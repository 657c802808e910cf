"""The ``mcnet`` command: train, compare solvers, ablate Newton-Krylov, measure curvature.

    mcnet train      one solver on one problem; JSON with the loss curves and the command
    mcnet compare    several solvers (first-order ones over an lr grid): JSON, Markdown, PNGs
    mcnet ablate     the supplement's studies of Newton-Krylov: eta, step rule, batch, activation
    mcnet curvature  top Hessian eigenvalues, trace and spectral density at given parameters
    mcnet download   fetch a data set's files

With no flags, ``mcnet compare`` is the quick check of the seed's claim: Newton-Krylov
against the best Adam learning rate on the digits shipped with scikit-learn (no download),
in well under a minute on a laptop CPU.

Every error is one line on stderr, ``mcnet <command>: error: ...``, naming the flag, file
or checkpoint and what to do. Exit status 2: the command line cannot work as given (a bad
flag value, an output path that is a directory or a symbolic link, a checkpoint of another
run or one that would be replaced without --overwrite). Exit status 1: a fault met while
running (missing or damaged data files, a damaged checkpoint, a checkpoint directory in use
by another run, a full disk, an unreachable scheduler, a run whose loss does not stay
finite). ``--debug`` adds the Python traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import re
import sys
import time
import traceback
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mcnet import diagnostics
from mcnet import experiments as ex
from mcnet.datasets import (
    DOWNLOAD_TIMEOUT,
    RESOURCES,
    DatasetNotFoundError,
    data_root,
    download,
)
from mcnet.errors import CheckpointError, DataError, MCNetError, OutputError
from mcnet.nn import Objective, parameters_to_vector
from mcnet.solvers import SOLVERS, make
from mcnet.training import checkpoint
from mcnet.training.history import check_writable, write_atomic

COMMANDS = ("train", "compare", "ablate", "curvature", "download")


class CLIError(Exception):
    """Ends the command with ``prog: error: message`` and ``status``."""

    def __init__(self, prog: str, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.prog = prog
        # one line, whatever the underlying exception printed
        self.message = " ".join(message.split())
        self.status = status


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors that start with the flag ("--epochs: ...")."""

    def error(self, message: str) -> None:  # type: ignore[override]
        message = re.sub(r"^argument ([^:]+): ", r"\1: ", message)
        message = re.sub(r"^command: invalid choice: ('[^']*') \(choose from (.*)\)$",
                         lambda m: f"{m[1]} is not a command (expected one of "
                                   f"{m[2].replace(chr(39), '')})", message)
        raise CLIError(self.prog, message, 2)


# --- flag value types: each raises ArgumentTypeError with what was expected -----------------
def _int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not an integer (expected an integer >= {minimum})") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(
                f"{value} is too small (expected an integer >= {minimum})")
        return value

    parse.__name__ = "integer"
    return parse


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number (expected a finite number > 0)") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text} is not positive (expected a finite number > 0)")
    return value


def _eta(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number (expected a Taylor ratio 0 < eta < 1)") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(
            f"{text} is out of range (expected a Taylor ratio 0 < eta < 1)")
    return value


def _batch_size(text: str) -> int | str:
    if text == "full":
        return text
    try:
        return _int_at_least(1)(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a batch size (expected an integer >= 1 or 'full')") from None


def _choice(choices: Sequence[str], what: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a known {what} (expected one of {', '.join(choices)})")
        return text

    parse.__name__ = what
    return parse


def _list_of(item: Callable[[str], Any]) -> Callable[[str], list[Any]]:
    """A comma-separated list; an empty list or a bad item is an error naming the item."""

    def parse(text: str) -> list[Any]:
        items = [t.strip() for t in text.split(",") if t.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"{text!r} is empty (expected a comma-separated "
                                             "list)")
        values = [item(t) for t in items]
        if len(set(values)) != len(values):
            raise argparse.ArgumentTypeError(f"{text!r} repeats an item (expected each once)")
        return values

    return parse


def _option(text: str) -> tuple[str, Any]:
    """KEY=VALUE for a solver option; VALUE as JSON when it parses (1e-3, true, 20), else
    as a string (armijo)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE (expected e.g. step=armijo)")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip().replace("-", "_"), value


SOLVER_NAMES = tuple(sorted(SOLVERS))


# --- the parser -------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """The ``mcnet`` parser with its subcommands."""
    parser = _Parser(prog="mcnet", allow_abbrev=False,
                     description="Training and curvature with exact complex-step derivatives.")
    _debug_flag(parser, default=False)
    commands = parser.add_subparsers(dest="command", metavar="command",
                                     parser_class=_Parser)

    train = commands.add_parser(
        "train", help="train one model with one solver", allow_abbrev=False,
        description="Train one model with one solver and write the run as JSON.",
        epilog=_DATA_NOTES, formatter_class=argparse.RawDescriptionHelpFormatter)
    _problem_flags(train)
    train.add_argument("--solver", type=_choice(SOLVER_NAMES, "solver"),
                       default="newton-krylov", metavar="{" + ",".join(SOLVER_NAMES) + "}",
                       help="default: newton-krylov")
    _solver_flags(train)
    train.add_argument("--option", type=_option, action="append", default=[],
                       metavar="KEY=VALUE",
                       help="any other solver option, e.g. step=armijo (repeatable)")
    _training_flags(train, epochs=10)
    train.add_argument("--out", metavar="FILE.json", help="write the run record here")
    train.add_argument("--checkpoint", metavar="DIR", help="save after every epoch into DIR")
    train.add_argument("--resume", action="store_true",
                       help="continue from --checkpoint DIR (same flags otherwise)")
    train.add_argument("--overwrite", action="store_true",
                       help="replace the checkpoint already in --checkpoint DIR (without it, "
                            "a checkpoint there is only continued, with --resume)")
    train.add_argument("--save-params", metavar="FILE.npy",
                       help="save the trained flat parameter vector (for mcnet curvature)")
    train.add_argument("--scheduler", metavar="ADDRESS|local",
                       help="compute the full-data sums (global gradient) on a Dask cluster: "
                            "'local' starts one here; needs pip install 'mcnet[distributed]'")
    train.add_argument("--workers", type=_int_at_least(1), metavar="N",
                       help="worker processes of --scheduler local")
    _evaluate_every_flag(train)

    compare = commands.add_parser(
        "compare", help="several solvers on one problem (Fig. 3)", allow_abbrev=False,
        description="Several solvers on one problem; first-order ones over an lr grid, the "
                    "best kept by final training loss. Writes the run records (runs.json.gz), "
                    "summary.json, summary.md, loss_vs_epoch.png and loss_vs_time.png into "
                    "--out-dir.",
        epilog=_DATA_NOTES, formatter_class=argparse.RawDescriptionHelpFormatter)
    _problem_flags(compare)
    compare.add_argument("--solvers", type=_list_of(_choice(SOLVER_NAMES, "solver")),
                         default=["newton-krylov", "adam"], metavar="NAME,NAME,...",
                         help=f"default: newton-krylov,adam; any of {', '.join(SOLVER_NAMES)}")
    compare.add_argument("--lrs", type=_list_of(_positive_float), default=list(ex.DEFAULT_LRS),
                         metavar="LR,LR,...",
                         help="the grid for solvers with a learning rate (not lbfgs); "
                              "default: 0.1,0.01,0.001,0.0001")
    compare.add_argument("--eta", type=_eta, help="Newton-Krylov's Taylor ratio (default 0.05)")
    _training_flags(compare, epochs=10)
    compare.add_argument("--batch-sizes", type=_list_of(_batch_size), metavar="N,...",
                         help="run every solver at each of these batch sizes ('full' = the "
                              "whole training set) and keep its best, the seed's protocol for "
                              "LR and SVM (e.g. 128,1024,full); default: --batch-size")
    _evaluate_every_flag(compare)
    compare.add_argument("--redraw", action="store_true",
                         help="train nothing: rebuild the summary and figures from the run "
                              "records already in --out-dir/runs.json.gz")
    _output_flags(compare, "mcnet-compare")

    ablate = commands.add_parser(
        "ablate", help="the supplement's Newton-Krylov studies", allow_abbrev=False,
        description="Newton-Krylov ablations: the eta sweep, Taylor ratio vs Armijo "
                    "backtracking (with step adjustments per iteration in epoch 1 and the last "
                    "epoch), batch sizes, activations, and the Krylov loop's decisions and "
                    "stopping rules (krylov); <study>.md, <study>.png and the run records "
                    "(runs.json.gz) into --out-dir.",
        epilog=_DATA_NOTES, formatter_class=argparse.RawDescriptionHelpFormatter)
    _problem_flags(ablate)
    ablate.add_argument("--study", type=_choice((*ex.STUDIES, "all"), "study"), default="all",
                        metavar="{" + ",".join((*ex.STUDIES, "all")) + "}", help="default: all")
    ablate.add_argument("--eta", type=_eta, help="eta for the studies other than eta")
    ablate.add_argument("--etas", type=_list_of(_eta), default=list(ex.ETAS),
                        metavar="ETA,...", help="default: 0.001,0.01,0.05,0.1,0.2,0.5")
    ablate.add_argument("--batch-sizes", type=_list_of(_int_at_least(1)),
                        default=list(ex.BATCH_SIZES), metavar="N,...",
                        help="default: 32,128,512")
    ablate.add_argument("--activations", type=_list_of(_choice(ex.ACTIVATIONS, "activation")),
                        default=list(ex.ABLATION_ACTIVATIONS), metavar="NAME,...",
                        help="default: sigmoid,relu,sin,none")
    _training_flags(ablate, epochs=10)
    _output_flags(ablate, "mcnet-ablate")

    curvature = commands.add_parser(
        "curvature", help="Hessian eigenvalues, trace and spectral density",
        allow_abbrev=False,
        description="Top-k Hessian eigenvalues (Lanczos), the trace (Hutchinson, with its "
                    "standard error) and the spectral density (stochastic Lanczos quadrature) "
                    "on the first --batch-size training examples, from exact H v products; "
                    "at the initial parameters, or at --params / --checkpoint.",
        epilog=_DATA_NOTES, formatter_class=argparse.RawDescriptionHelpFormatter)
    _problem_flags(curvature)
    source = curvature.add_mutually_exclusive_group()
    source.add_argument("--params", metavar="FILE",
                        help=".npy flat parameter vector (train --save-params) or a "
                             "checkpoint.npz")
    source.add_argument("--checkpoint", metavar="DIR", help="a train --checkpoint folder")
    curvature.add_argument("--batch-size", type=_int_at_least(1), default=128,
                           help="examples in the batch (default 128)")
    curvature.add_argument("--top-k", type=_int_at_least(1), default=5,
                           help="eigenvalues to compute (default 5)")
    curvature.add_argument("--probes", type=_int_at_least(2), default=100,
                           help="Hutchinson probes (default 100)")
    curvature.add_argument("--lanczos-steps", type=_int_at_least(1), default=80,
                           help="Lanczos steps of the density (default 80)")
    curvature.add_argument("--seed", type=_int_at_least(0), default=0,
                           help="initial parameters and probes (default 0)")
    _output_flags(curvature, "mcnet-curvature")

    download = commands.add_parser(
        "download", help="fetch a data set's files (checksums verified)", allow_abbrev=False)
    names = tuple(sorted(RESOURCES))
    download.add_argument("name", type=_choice(names, "data set"),
                          metavar="{" + ",".join(names) + "}")
    download.add_argument("--data-dir", metavar="DIR",
                          help="default: $MCNET_DATA or ~/.mcnet/data")
    download.add_argument("--timeout", type=_positive_float, default=DOWNLOAD_TIMEOUT,
                          metavar="SECONDS",
                          help=f"give up on a server silent this long (default "
                               f"{DOWNLOAD_TIMEOUT:g})")
    for command in (train, compare, ablate, curvature, download):
        # SUPPRESS: a subcommand's absent --debug leaves the one given before it in place
        _debug_flag(command, default=argparse.SUPPRESS)
    return parser


def _debug_flag(parser: argparse.ArgumentParser, default: Any) -> None:
    parser.add_argument("--debug", action="store_true", default=default,
                        help="on an error, print the Python traceback too")


_DATA_NOTES = """\
data: digits (no files) tests on its last 297 images and trains on the first 1500;
other data sets test on their test split, or with --holdout N on the last N examples of the
training split (--train-split test --holdout N trains and tests on disjoint parts of a test
split, e.g. when only MNIST's t10k files are present). --subset N keeps the first N training
examples. lenet5 and autoencoder take 28x28 images (digits are enlarged 3x and padded);
vgg11 takes 3x32x32 (cifar10, svhn); the others flatten the inputs. Loss: cross-entropy;
squared hinge for linear_svm; squared error on sigmoid outputs for the autoencoder."""


def _evaluate_every_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--evaluate-every", type=_int_at_least(1), metavar="N",
                        help="also measure the full training loss every N steps inside epochs "
                             "(the record's interim_loss, for loss-vs-time finer than epochs; "
                             "not counted in solver time)")


def _problem_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("problem")
    group.add_argument("--model", type=_choice(ex.MODELS, "model"), default="mlp",
                       metavar="{" + ",".join(ex.MODELS) + "}", help="default: mlp")
    group.add_argument("--activation", type=_choice(ex.ACTIVATIONS, "activation"),
                       metavar="{" + ",".join(ex.ACTIVATIONS) + "}",
                       help="default: the model's (sigmoid; elu for vgg11); none = identity")
    group.add_argument("--hidden", type=_list_of(_int_at_least(1)), default=[32],
                       metavar="N,...", help="mlp hidden layer sizes (default 32)")
    group.add_argument("--dataset", type=_choice(ex.DATASETS, "dataset"), default="digits",
                       metavar="{" + ",".join(ex.DATASETS) + "}", help="default: digits")
    group.add_argument("--data-dir", metavar="DIR",
                       help="data folder (default: $MCNET_DATA or ~/.mcnet/data)")
    group.add_argument("--train-file", metavar="PATH", help="LIBSVM training file")
    group.add_argument("--test-file", metavar="PATH", help="LIBSVM test file")
    group.add_argument("--train-split", type=_choice(("train", "test"), "split"),
                       default="train", metavar="{train,test}",
                       help="the split to train on (default: train)")
    group.add_argument("--holdout", type=_int_at_least(0), metavar="N",
                       help="test on the last N training examples (default: 297 for digits, "
                            "else 0 = the test split)")
    group.add_argument("--subset", type=_int_at_least(1), metavar="N",
                       help="train on the first N training examples")
    group.add_argument("--test-subset", type=_int_at_least(1), metavar="N",
                       help="evaluate on the first N test examples")
    group.add_argument("--dtype", type=_choice(ex.DTYPES, "dtype"), default="float64",
                       metavar="{float32,float64}", help="default: float64")
    group.add_argument("--device", type=_choice(ex.DEVICES, "device"), default="cpu",
                       metavar="{cpu,cuda}", help="default: cpu (cuda needs CuPy)")


def _solver_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lr", type=_positive_float,
                        help="learning rate of a solver that has one (default: the solver's; "
                             "0.01 for sgd)")
    parser.add_argument("--eta", type=_eta,
                        help="Newton-Krylov's Taylor ratio, 0 < eta < 1 (default 0.05)")


def _training_flags(parser: argparse.ArgumentParser, epochs: int) -> None:
    parser.add_argument("--epochs", type=_int_at_least(1), default=epochs,
                        help=f"default: {epochs}")
    parser.add_argument("--batch-size", type=_int_at_least(1), default=128,
                        help="default: 128")
    parser.add_argument("--seed", type=_int_at_least(0), default=0,
                        help="initial parameters and batch order (default 0)")


def _output_flags(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument("--out-dir", default=default, metavar="DIR",
                        help=f"default: {default}/")
    parser.add_argument("--no-plots", action="store_true",
                        help="skip the PNGs (no matplotlib needed)")


# --- shared steps -----------------------------------------------------------------------------
def _spec(args: argparse.Namespace) -> ex.ProblemSpec:
    return ex.ProblemSpec(
        model=args.model, activation=args.activation, hidden=tuple(args.hidden),
        dataset=args.dataset, data_dir=args.data_dir, train_file=args.train_file,
        test_file=args.test_file, train_split=args.train_split, holdout=args.holdout,
        subset=args.subset, test_subset=args.test_subset, dtype=args.dtype, device=args.device)


def _load(args: argparse.Namespace, prog: str) -> ex.Problem:
    """The problem of the flags; CLIError naming the flag, or saying where data goes."""
    spec = _spec(args)
    if spec.model in ("logistic_regression", "linear_svm") and spec.activation is not None:
        raise CLIError(prog, f"--activation: {spec.model} is linear and has no activation "
                             "(expected no --activation)")
    try:
        return ex.load_problem(spec)
    except ex.ProblemError as exc:
        raise CLIError(prog, str(exc)) from None
    except DatasetNotFoundError as exc:
        where = f" --data-dir {args.data_dir}" if args.data_dir else ""
        raise CLIError(prog, f"--dataset {args.dataset}: {exc} From the command line: "
                             f"mcnet download {args.dataset}{where}", 1) from None
    except (DataError, OSError) as exc:  # a damaged or unreadable file
        raise CLIError(prog, f"--dataset {args.dataset}: {exc}", 1) from None


def _check_batch(problem: ex.Problem, batch_sizes: Sequence[int], prog: str, flag: str) -> None:
    n = len(problem.train[0])
    for size in batch_sizes:
        if size > n:
            raise CLIError(prog, f"{flag}: {size} is larger than the training data ({n} "
                                 f"examples) (expected at most {n})")


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
        raise CLIError(prog, f"--out-dir: {path} is not a directory (expected a directory, or "
                             "a path where one can be made)")


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
        raise CLIError(prog, f"--lr: {args.solver} takes no learning rate (expected --lr only "
                             f"with one of {takers})")
    if args.eta is not None and not ex.takes_eta(args.solver):
        raise CLIError(prog, f"--eta: {args.solver} has no Taylor ratio (expected --eta only "
                             f"with {' or '.join(n for n in SOLVER_NAMES if ex.takes_eta(n))})")
    if args.resume and args.checkpoint is None:
        raise CLIError(prog, "--resume: nothing to resume from (expected --checkpoint DIR too)")
    if args.overwrite and args.checkpoint is None:
        raise CLIError(prog, "--overwrite: no checkpoint to replace (expected --checkpoint DIR "
                             "too)")
    if args.overwrite and args.resume:
        raise CLIError(prog, "--overwrite: --resume continues the checkpoint, --overwrite "
                             "replaces it (expected one of them)")
    if args.workers is not None and args.scheduler != "local":
        raise CLIError(prog, "--workers: only a cluster started here has a worker count "
                             "(expected --scheduler local too)")
    options = ex.solver_options(args.solver, lr=args.lr, eta=args.eta, extra=options)
    try:  # a bad --option fails here, before any data is read
        make(args.solver, **options)
    except (TypeError, ValueError) as exc:
        flag = "--option" if args.option else "--solver"
        raise CLIError(prog, f"{flag}: {exc}") from None
    outputs = [(flag, path) for flag, path in (("--out", args.out),
                                               ("--save-params", args.save_params)) if path]
    for flag, path in outputs:
        _check_output(prog, flag, path)
    if len(outputs) == 2 and Path(args.out).resolve() == Path(args.save_params).resolve():
        raise CLIError(prog, f"--save-params: {args.save_params} is the --out file too "
                             "(expected two different files)")
    if args.checkpoint is not None:
        _check_checkpoint(args, prog)
    problem = _load(args, prog)
    _check_batch(problem, [args.batch_size], prog, "--batch-size")
    try:
        record = ex.run(problem, args.solver, options, args.epochs, args.batch_size, args.seed,
                        checkpoint=args.checkpoint, resume=args.resume,
                        overwrite=args.overwrite,
                        extra={**_command_extra(command_line), "lr": options.get("lr")},
                        scheduler=args.scheduler, workers=args.workers,
                        evaluate_every=args.evaluate_every)
    except CheckpointError as exc:  # a mismatch is the flags' fault, the rest the file's
        raise CLIError(prog, f"--checkpoint: {exc}",
                       2 if isinstance(exc, ValueError) else 1) from None
    except (ImportError, ConnectionError) as exc:  # no Dask, or no cluster at that address
        raise CLIError(prog, f"--scheduler {args.scheduler}: {exc}", 1) from None
    saved = args.checkpoint and (Path(args.checkpoint) / checkpoint.FILENAME).is_file()
    kept = f"; the checkpoint in {args.checkpoint} holds the last completed epoch" if saved else ""
    if record["failed"]:
        raise CLIError(prog, f"training failed: {record['failed']}{kept}", 1)
    print(f"{ex.problem_text(record['problem'])}")
    print(f"{args.solver} {json.dumps(record['config'])}; {args.epochs} epochs, batch "
          f"{args.batch_size}, seed {args.seed}, {record['problem']['parameters']} parameters")
    print(_epoch_table(record))
    writers = {"--out": lambda path: ex.write_record(record, path),
               "--save-params": lambda path: _save_params(record["_params"], Path(path))}
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
        raise CLIError(prog, f"--checkpoint: {directory} holds a checkpoint after {done} "
                             "epochs (expected --resume to continue it, --overwrite to "
                             "replace it, or another directory)")
    if done > args.epochs:
        raise CLIError(prog, f"--epochs: {args.epochs} is fewer than the {done} epochs "
                             f"already done in --checkpoint {directory} (expected --epochs "
                             f"{done} or more with --resume)")


def _epoch_table(record: dict[str, Any]) -> str:
    lines = [f"{'epoch':>5}  {'train loss':>12}  {'test loss':>12}  {'test acc':>8}  "
             f"{'solver s':>9}"]
    for epoch, loss in enumerate(record["train_loss"]):
        test = record["test_loss"][epoch] if record["test_loss"] else None
        acc = record["test_accuracy"][epoch] if record["test_accuracy"] else None
        lines.append(f"{epoch:>5}  {ex.fmt(loss, 6):>12}  {ex.fmt(test, 6):>12}  "
                     f"{ex.fmt(acc, 4):>8}  {record['epoch_time'][epoch]:>9.2f}")
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
        raise CLIError(prog, f"--eta: no solver among --solvers has a Taylor ratio (expected "
                             f"--eta only with {takers})")
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
                raise CLIError(prog, f"--batch-sizes: 'full' is {n} here, which is listed too "
                                     "(expected each batch size once)")
        _check_batch(problem, sizes, prog, flag)
        records, summary = ex.compare(problem, args.solvers, args.lrs, args.epochs, sizes,
                                      args.seed, eta=args.eta, log=_log,
                                      extra=_command_extra(command_line),
                                      evaluate_every=args.evaluate_every)
        summary["command"] = list(command_line)
    written = ex.write_compare(records, summary, out_dir, plots=not args.no_plots,
                               runs=not args.redraw)
    best = ex.best_runs(records)
    batches = ",".join(sorted({ex.batch_text(r) for r in records}, key=_batch_order))
    epochs, seed = records[0]["epochs"], records[0]["seed"]
    print(ex.problem_text(summary["problem"]) + f"; {epochs} epochs, batch "
          f"{batches}, seed {seed}")
    for row in summary["solvers"]:
        if row["grid"]:
            grid = ", ".join(f"{point}: {ex.fmt(v)}" for point, v in row["grid"].items())
            print(f"{row['solver']} final training loss: {grid} -> best "
                  f"{ex.setting(best[row['solver']])}")
    print()
    print("training loss and cumulative solver time per epoch:")
    print(ex.curve_table(list(best.values())))
    print()
    reference = summary["reference"]
    for row in summary["solvers"]:
        if "ratio_equal_epochs" in row and reference and row["solver"] != reference["solver"]:
            reached = row["time_to_reference_loss"]
            print(f"{ex.label(best[row['solver']])} / {ex.label(best[reference['solver']])} "
                  f"training loss: {row['ratio_equal_epochs']:.3g} at equal epochs "
                  f"({epochs}), {row['ratio_equal_time']:.3g} at equal wall time "
                  f"({row['equal_time']:.2f} s of solver time); reaches the reference's final "
                  f"loss " + ("never" if reached is None else
                              f"after {reached:.2f} s (reference: {row['reference_time']:.2f} s)"))
    print(f"wrote {len(written)} files into {out_dir}/: summary.md, summary.json"
          + ("" if args.no_plots else ", loss_vs_epoch.png, loss_vs_time.png")
          + ("" if args.redraw else f", {ex.RUNS_FILE}"))
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
            raise CLIError(prog, f"--study: {args.model} has no activation to vary (expected "
                                 "a model with one: mlp, lenet5, autoencoder, vgg11)")
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
        runs = ex.ablate(problem, study, args.epochs, args.batch_size, args.seed, eta=args.eta,
                         log=_log, extra=_command_extra(command_line), cache=cache,
                         etas=args.etas,
                         batch_sizes=args.batch_sizes, activations=args.activations)
        ex.write_ablation(study, runs, out_dir, plots=not args.no_plots)
        # rewritten after every study: an interrupted ablation keeps the studies it finished
        records += [record for _, record in runs]
        ex.write_runs(records, out_dir / ex.RUNS_FILE)
        sections.append(ex.ablation_markdown(study, runs))
        print(ex.ablation_text(study, runs))
        print()
    header = f"# Newton-Krylov ablations\n\nCommand: `{' '.join(command_line)}`\n\n"
    write_atomic(out_dir / "ablation.md", (header + "\n".join(sections)).encode())
    print(f"wrote {out_dir}/ablation.md, {ex.RUNS_FILE} and, per study, <study>.md"
          + ("" if args.no_plots else " and <study>.png"))
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
    trace, stderr = diagnostics.hessian_trace(objective, w, batch, probes=args.probes,
                                              seed=args.seed)
    grid, density = diagnostics.spectral_density(objective, w, batch,
                                                 lanczos_steps=args.lanczos_steps,
                                                 seed=args.seed)
    seconds = time.perf_counter() - start
    out_dir = Path(args.out_dir)
    result = {
        "command": list(command_line), "parameters_at": where,
        "problem": {**vars(_spec(args)), **problem.description,
                    "parameters": int(w.size)},
        "batch_size": args.batch_size, "eigenvalues": [float(v) for v in eigenvalues],
        "trace": trace, "trace_stderr": stderr, "probes": args.probes,
        "lanczos_steps": args.lanczos_steps, "density_grid": grid.tolist(),
        "density": density.tolist(), "seconds": seconds, "versions": ex.versions(),
    }
    write_atomic(out_dir / "curvature.json",
                 json.dumps(ex.json_safe(result), indent=1).encode())
    if not args.no_plots:
        diagnostics.plot_spectral_density(grid, density, out_dir / "spectral_density.png")
    activation = problem.spec.resolved_activation()
    print(ex.problem_text({**result["problem"], "activation": activation}))
    print(f"Hessian of the loss on the first {args.batch_size} training examples at {where}, "
          f"{w.size} parameters:")
    print(f"{'k':>3}  {'eigenvalue':>14}")
    for i, value in enumerate(eigenvalues, 1):
        print(f"{i:>3}  {value:>14.6g}")
    print(f"trace {trace:.6g} +- {stderr:.2g} (Hutchinson, {args.probes} Rademacher probes)")
    print(f"spectral density: {args.lanczos_steps} Lanczos steps; {seconds:.1f} s in all")
    print(f"wrote {out_dir}/curvature.json"
          + ("" if args.no_plots else f" and {out_dir}/spectral_density.png"))
    return 0


def _read_params(prog: str, flag: str, location: str, size: int) -> np.ndarray:
    path = Path(location)
    if flag == "--checkpoint":
        path = path / checkpoint.FILENAME
    if not path.is_file():
        raise CLIError(prog, f"{flag}: {path}: no such file")
    try:
        w = (checkpoint.read_npz(path).get("w") if zipfile.is_zipfile(path)
             else checkpoint.read_npy(path))
    except CheckpointError as exc:
        raise CLIError(prog, f"{flag}: {exc}", 1) from None
    if w is None or w.dtype.kind not in "iuf":
        raise CLIError(prog, f"{flag}: {path}: not a parameter vector (expected a .npy of "
                             "numbers from train --save-params, or a checkpoint.npz)", 1)
    w = np.asarray(w, dtype=np.float64).ravel()
    if w.size != size:
        raise CLIError(prog, f"{flag}: {path} holds {w.size} values, the model has {size} "
                             "parameters (expected the same --model, --hidden and data flags)")
    return w


# --- mcnet download ---------------------------------------------------------------------------
def _download(args: argparse.Namespace, command_line: Sequence[str]) -> int:
    try:
        folder = download(args.name, root=args.data_dir, timeout=args.timeout)
    except (DatasetNotFoundError, ValueError) as exc:  # unreachable, timed out, checksum
        raise CLIError("mcnet download", str(exc), 1) from None
    except OSError as exc:
        raise CLIError("mcnet download", f"--data-dir: cannot write the files into "
                                         f"{data_root(args.data_dir) / args.name} "
                                         f"({exc.strerror or exc}); expected a writable "
                                         "folder", 1) from None
    print(f"{args.name}: files in {folder}")
    return 0


HANDLERS: dict[str, Callable[[argparse.Namespace, Sequence[str]], int]] = {
    "train": _train, "compare": _compare, "ablate": _ablate, "curvature": _curvature,
    "download": _download,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``mcnet`` with ``argv`` (default: the process's arguments); the exit status."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    # what the JSON records as the command: the real one, or the call's when in-process
    command_line = list(sys.argv) if argv is None else ["mcnet", *arguments]
    parser = build_parser()
    args = None
    try:
        args, unknown = parser.parse_known_args(arguments)
        if unknown and args.command is not None:
            # argparse would blame "mcnet"; the flag belongs to the subcommand's list
            raise CLIError(f"mcnet {args.command}", f"{unknown[0]}: not a flag of mcnet "
                           f"{args.command} (expected one of those in mcnet {args.command} "
                           "--help)")
        if unknown:
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
        if args.command is None:
            parser.print_usage(sys.stderr)
            print(f"mcnet: error: a command is required (expected one of "
                  f"{', '.join(COMMANDS)})", file=sys.stderr)
            return 2
        with contextlib.ExitStack() as stack:
            if not args.debug:
                # overflow warnings would add lines to stderr: fit rejects what they warn of
                stack.enter_context(np.errstate(all="ignore"))
            return HANDLERS[args.command](args, command_line)
    except CLIError as exc:
        # the traceback worth seeing under --debug is that of the error it reports
        return _report(args, exc.prog, exc.message, exc.status, exc.__context__)
    except SystemExit as exc:  # --help and --version end through argparse's exit
        return exc.code if isinstance(exc.code, int) else 0
    except KeyboardInterrupt:
        print("mcnet: interrupted", file=sys.stderr)
        return 130
    except (MCNetError, OSError, ValueError) as exc:  # a fault no flag check foresaw
        return _report(args, _prog(args), str(exc) or type(exc).__name__, 1, exc)
    except Exception as exc:
        return _report(args, _prog(args), f"{type(exc).__name__}: {exc} (unexpected: rerun "
                                          "with --debug for the traceback, and report it)",
                       1, exc)


def _prog(args: argparse.Namespace | None) -> str:
    command = getattr(args, "command", None)
    return f"mcnet {command}" if command else "mcnet"


def _report(args: argparse.Namespace | None, prog: str, message: str, status: int,
            cause: BaseException | None) -> int:
    """The one-line error (after the traceback of ``cause`` under --debug); the status."""
    if cause is not None and getattr(args, "debug", False):
        traceback.print_exception(cause)
    print(f"{prog}: error: {' '.join(message.split())}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
