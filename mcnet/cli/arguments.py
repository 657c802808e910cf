"""The ``mcnet`` parser: its subcommands, their flags, and flag values checked as they
are parsed, each error one line that starts with the flag."""

from __future__ import annotations

import argparse
import json
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

from mcnet import experiments as ex
from mcnet.datasets import (
    DOWNLOAD_TIMEOUT,
    RESOURCES,
)
from mcnet.solvers import SOLVERS

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
        message = re.sub(
            r"^command: invalid choice: ('[^']*') \(choose from (.*)\)$",
            lambda m: f"{m[1]} is not a command (expected one of {m[2].replace(chr(39), '')})",
            message,
        )
        raise CLIError(self.prog, message, 2)


# --- flag value types: each raises ArgumentTypeError with what was expected -----------------
def _int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not an integer (expected an integer >= {minimum})"
            ) from None
        if value < minimum:
            raise argparse.ArgumentTypeError(
                f"{value} is too small (expected an integer >= {minimum})"
            )
        return value

    parse.__name__ = "integer"
    return parse


def _number(text: str, expected: str, acceptable: Callable[[float], bool]) -> float:
    try:
        value = float(text)
    except ValueError:
        message = f"{text!r} is not a number (expected {expected})"
        raise argparse.ArgumentTypeError(message) from None
    if not acceptable(value):
        raise argparse.ArgumentTypeError(f"{text} is out of range (expected {expected})")
    return value


def _positive_float(text: str) -> float:
    return _number(text, "a finite number > 0", lambda v: math.isfinite(v) and v > 0)


def _eta(text: str) -> float:
    return _number(text, "a Taylor ratio 0 < eta < 1", lambda v: 0 < v < 1)


def _batch_size(text: str) -> int | str:
    if text == "full":
        return text
    try:
        return _int_at_least(1)(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a batch size (expected an integer >= 1 or 'full')"
        ) from None


def _choice(choices: Sequence[str], what: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a known {what} (expected one of {', '.join(choices)})"
            )
        return text

    parse.__name__ = what
    return parse


def _list_of(item: Callable[[str], Any]) -> Callable[[str], list[Any]]:
    """A comma-separated list; an empty list or a bad item is an error naming the item."""

    def parse(text: str) -> list[Any]:
        items = [t.strip() for t in text.split(",") if t.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"{text!r} is empty (expected a comma-separated list)")
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
    parser = _Parser(
        prog="mcnet",
        allow_abbrev=False,
        description="Training and curvature with exact complex-step derivatives.",
    )
    _debug_flag(parser, default=False)
    commands = parser.add_subparsers(dest="command", metavar="command", parser_class=_Parser)

    train = commands.add_parser(
        "train",
        help="train one model with one solver",
        allow_abbrev=False,
        description="Train one model with one solver and write the run as JSON.",
        epilog=_DATA_NOTES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _problem_flags(train)
    train.add_argument(
        "--solver",
        type=_choice(SOLVER_NAMES, "solver"),
        default="newton-krylov",
        metavar="{" + ",".join(SOLVER_NAMES) + "}",
        help="default: newton-krylov",
    )
    _solver_flags(train)
    train.add_argument(
        "--option",
        type=_option,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other solver option, e.g. step=armijo (repeatable)",
    )
    _training_flags(train, epochs=10)
    train.add_argument("--out", metavar="FILE.json", help="write the run record here")
    train.add_argument("--checkpoint", metavar="DIR", help="save after every epoch into DIR")
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue from --checkpoint DIR (same flags otherwise)",
    )
    train.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the checkpoint already in --checkpoint DIR (without it, "
        "a checkpoint there is only continued, with --resume)",
    )
    train.add_argument(
        "--save-params",
        metavar="FILE.npy",
        help="save the trained flat parameter vector (for mcnet curvature)",
    )
    train.add_argument(
        "--scheduler",
        metavar="ADDRESS|local",
        help="compute the full-data sums (global gradient) on a Dask cluster: "
        "'local' starts one here; needs pip install 'mcnet[distributed]'",
    )
    train.add_argument(
        "--workers",
        type=_int_at_least(1),
        metavar="N",
        help="worker processes of --scheduler local",
    )
    _evaluate_every_flag(train)

    compare = commands.add_parser(
        "compare",
        help="several solvers on one problem (Fig. 3)",
        allow_abbrev=False,
        description="Several solvers on one problem; first-order ones over an lr grid, the "
        "best kept by final training loss. Writes the run records (runs.json.gz), "
        "summary.json, summary.md, loss_vs_epoch.png and loss_vs_time.png into "
        "--out-dir.",
        epilog=_DATA_NOTES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _problem_flags(compare)
    compare.add_argument(
        "--solvers",
        type=_list_of(_choice(SOLVER_NAMES, "solver")),
        default=["newton-krylov", "adam"],
        metavar="NAME,NAME,...",
        help=f"default: newton-krylov,adam; any of {', '.join(SOLVER_NAMES)}",
    )
    compare.add_argument(
        "--lrs",
        type=_list_of(_positive_float),
        default=list(ex.DEFAULT_LRS),
        metavar="LR,LR,...",
        help="the grid for solvers with a learning rate (not lbfgs); "
        "default: 0.1,0.01,0.001,0.0001",
    )
    compare.add_argument(
        "--eta", type=_eta, help="Newton-Krylov's Taylor ratio (default: each solver's own)"
    )
    _training_flags(compare, epochs=10)
    compare.add_argument(
        "--batch-sizes",
        type=_list_of(_batch_size),
        metavar="N,...",
        help="run every solver at each of these batch sizes ('full' = the "
        "whole training set) and keep its best, the paper's protocol for "
        "LR and SVM (e.g. 128,1024,full); default: --batch-size",
    )
    _evaluate_every_flag(compare)
    compare.add_argument(
        "--redraw",
        action="store_true",
        help="train nothing: rebuild the summary and figures from the run "
        "records already in --out-dir/runs.json.gz",
    )
    _output_flags(compare, "mcnet-compare")

    ablate = commands.add_parser(
        "ablate",
        help="the supplement's Newton-Krylov studies",
        allow_abbrev=False,
        description="Newton-Krylov ablations: the eta sweep, Taylor ratio vs Armijo "
        "backtracking (with step adjustments per iteration in epoch 1 and the last "
        "epoch), batch sizes, activations, and the Krylov loop's decisions and "
        "stopping rules (krylov); <study>.md, <study>.png and the run records "
        "(runs.json.gz) into --out-dir.",
        epilog=_DATA_NOTES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _problem_flags(ablate)
    ablate.add_argument(
        "--study",
        type=_choice((*ex.STUDIES, "all"), "study"),
        default="all",
        metavar="{" + ",".join((*ex.STUDIES, "all")) + "}",
        help="default: all",
    )
    ablate.add_argument("--eta", type=_eta, help="eta for the studies other than eta")
    ablate.add_argument(
        "--etas",
        type=_list_of(_eta),
        default=list(ex.ETAS),
        metavar="ETA,...",
        help="default: 0.001,0.01,0.05,0.1,0.2,0.5",
    )
    ablate.add_argument(
        "--batch-sizes",
        type=_list_of(_int_at_least(1)),
        default=list(ex.BATCH_SIZES),
        metavar="N,...",
        help="default: 32,128,512",
    )
    ablate.add_argument(
        "--activations",
        type=_list_of(_choice(ex.ACTIVATIONS, "activation")),
        default=list(ex.ABLATION_ACTIVATIONS),
        metavar="NAME,...",
        help="default: sigmoid,relu,sin,none",
    )
    _training_flags(ablate, epochs=10)
    _output_flags(ablate, "mcnet-ablate")

    curvature = commands.add_parser(
        "curvature",
        help="Hessian eigenvalues, trace and spectral density",
        allow_abbrev=False,
        description="Top-k Hessian eigenvalues (Lanczos), the trace (Hutchinson, with its "
        "standard error) and the spectral density (stochastic Lanczos quadrature) "
        "on the first --batch-size training examples, from exact H v products; "
        "at the initial parameters, or at --params / --checkpoint.",
        epilog=_DATA_NOTES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _problem_flags(curvature)
    source = curvature.add_mutually_exclusive_group()
    source.add_argument(
        "--params",
        metavar="FILE",
        help=".npy flat parameter vector (train --save-params) or a checkpoint.npz",
    )
    source.add_argument("--checkpoint", metavar="DIR", help="a train --checkpoint folder")
    curvature.add_argument(
        "--batch-size",
        type=_int_at_least(1),
        default=128,
        help="examples in the batch (default 128)",
    )
    curvature.add_argument(
        "--top-k", type=_int_at_least(1), default=5, help="eigenvalues to compute (default 5)"
    )
    curvature.add_argument(
        "--probes", type=_int_at_least(2), default=100, help="Hutchinson probes (default 100)"
    )
    curvature.add_argument(
        "--lanczos-steps",
        type=_int_at_least(1),
        default=80,
        help="Lanczos steps of the density (default 80)",
    )
    curvature.add_argument(
        "--seed", type=_int_at_least(0), default=0, help="initial parameters and probes (default 0)"
    )
    _output_flags(curvature, "mcnet-curvature")

    download = commands.add_parser(
        "download", help="fetch a data set's files (checksums verified)", allow_abbrev=False
    )
    names = tuple(sorted(RESOURCES))
    download.add_argument(
        "name", type=_choice(names, "data set"), metavar="{" + ",".join(names) + "}"
    )
    download.add_argument("--data-dir", metavar="DIR", help="default: $MCNET_DATA or ~/.mcnet/data")
    download.add_argument(
        "--timeout",
        type=_positive_float,
        default=DOWNLOAD_TIMEOUT,
        metavar="SECONDS",
        help=f"give up on a server silent this long (default {DOWNLOAD_TIMEOUT:g})",
    )
    for command in (train, compare, ablate, curvature, download):
        # SUPPRESS: a subcommand's absent --debug leaves the one given before it in place
        _debug_flag(command, default=argparse.SUPPRESS)
    return parser


def _debug_flag(parser: argparse.ArgumentParser, default: Any) -> None:
    parser.add_argument(
        "--debug",
        action="store_true",
        default=default,
        help="on an error, print the Python traceback too",
    )


_DATA_NOTES = """\
data: digits (no files) tests on its last 297 images and trains on the first 1500;
other data sets test on their test split, or with --holdout N on the last N examples of the
training split (--train-split test --holdout N trains and tests on disjoint parts of a test
split, e.g. when only MNIST's t10k files are present). --subset N keeps the first N training
examples. lenet5 and autoencoder take 28x28 images (digits are enlarged 3x and padded);
vgg11 takes 3x32x32 (cifar10, svhn); the others flatten the inputs. Loss: cross-entropy;
squared hinge for linear_svm; squared error on sigmoid outputs for the autoencoder."""


def _evaluate_every_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--evaluate-every",
        type=_int_at_least(1),
        metavar="N",
        help="also measure the full training loss every N steps inside epochs "
        "(the record's interim_loss, for loss-vs-time finer than epochs; "
        "not counted in solver time)",
    )


def _problem_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("problem")
    group.add_argument(
        "--model",
        type=_choice(ex.MODELS, "model"),
        default="mlp",
        metavar="{" + ",".join(ex.MODELS) + "}",
        help="default: mlp",
    )
    group.add_argument(
        "--activation",
        type=_choice(ex.ACTIVATIONS, "activation"),
        metavar="{" + ",".join(ex.ACTIVATIONS) + "}",
        help="default: the model's (sigmoid; elu for vgg11); none = identity",
    )
    group.add_argument(
        "--hidden",
        type=_list_of(_int_at_least(1)),
        default=[32],
        metavar="N,...",
        help="mlp hidden layer sizes (default 32)",
    )
    group.add_argument(
        "--dataset",
        type=_choice(ex.DATASETS, "dataset"),
        default="digits",
        metavar="{" + ",".join(ex.DATASETS) + "}",
        help="default: digits",
    )
    group.add_argument(
        "--data-dir", metavar="DIR", help="data folder (default: $MCNET_DATA or ~/.mcnet/data)"
    )
    group.add_argument("--train-file", metavar="PATH", help="LIBSVM training file")
    group.add_argument("--test-file", metavar="PATH", help="LIBSVM test file")
    group.add_argument(
        "--train-split",
        type=_choice(("train", "test"), "split"),
        default="train",
        metavar="{train,test}",
        help="the split to train on (default: train)",
    )
    group.add_argument(
        "--holdout",
        type=_int_at_least(0),
        metavar="N",
        help="test on the last N training examples (default: 297 for digits, "
        "else 0 = the test split)",
    )
    group.add_argument(
        "--subset",
        type=_int_at_least(1),
        metavar="N",
        help="train on the first N training examples",
    )
    group.add_argument(
        "--test-subset",
        type=_int_at_least(1),
        metavar="N",
        help="evaluate on the first N test examples",
    )
    group.add_argument(
        "--dtype",
        type=_choice(ex.DTYPES, "dtype"),
        default="float64",
        metavar="{float32,float64}",
        help="default: float64",
    )
    group.add_argument(
        "--device",
        type=_choice(ex.DEVICES, "device"),
        default="cpu",
        metavar="{cpu,cuda}",
        help="default: cpu (cuda needs CuPy)",
    )


def _solver_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--lr",
        type=_positive_float,
        help="learning rate of a solver that has one (default: the solver's; 0.01 for sgd)",
    )
    parser.add_argument(
        "--eta",
        type=_eta,
        help="Newton-Krylov's Taylor ratio, 0 < eta < 1 (default: the solver's own)",
    )


def _training_flags(parser: argparse.ArgumentParser, epochs: int) -> None:
    parser.add_argument(
        "--epochs", type=_int_at_least(1), default=epochs, help=f"default: {epochs}"
    )
    parser.add_argument("--batch-size", type=_int_at_least(1), default=128, help="default: 128")
    parser.add_argument(
        "--seed",
        type=_int_at_least(0),
        default=0,
        help="initial parameters and batch order (default 0)",
    )


def _output_flags(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument("--out-dir", default=default, metavar="DIR", help=f"default: {default}/")
    parser.add_argument(
        "--no-plots", action="store_true", help="skip the PNGs (no matplotlib needed)"
    )
