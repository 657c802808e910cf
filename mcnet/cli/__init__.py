"""The ``mcnet`` command: train, compare solvers, ablate Newton-Krylov, measure curvature.

    mcnet train      one solver on one problem; JSON with the loss curves and the command
    mcnet compare    several solvers (first-order ones over an lr grid): JSON, Markdown, PNGs
    mcnet ablate     the supplement's studies of Newton-Krylov: eta, step rule, batch, activation
    mcnet curvature  top Hessian eigenvalues, trace and spectral density at given parameters
    mcnet download   fetch a data set's files

With no flags, ``mcnet compare`` is the quick check of the paper's claim: Newton-Krylov
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
import sys
import traceback
from collections.abc import Sequence

import numpy as np

from mcnet.cli.arguments import COMMANDS, CLIError, build_parser
from mcnet.cli.commands import HANDLERS
from mcnet.errors import MCNetError

__all__ = ["CLIError", "build_parser", "main"]


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
            raise CLIError(
                f"mcnet {args.command}",
                f"{unknown[0]}: not a flag of mcnet "
                f"{args.command} (expected one of those in mcnet {args.command} "
                "--help)",
            )
        if unknown:
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
        if args.command is None:
            parser.print_usage(sys.stderr)
            print(
                f"mcnet: error: a command is required (expected one of {', '.join(COMMANDS)})",
                file=sys.stderr,
            )
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
        return _report(
            args,
            _prog(args),
            f"{type(exc).__name__}: {exc} (unexpected: rerun "
            "with --debug for the traceback, and report it)",
            1,
            exc,
        )


def _prog(args: argparse.Namespace | None) -> str:
    command = getattr(args, "command", None)
    return f"mcnet {command}" if command else "mcnet"


def _report(
    args: argparse.Namespace | None,
    prog: str,
    message: str,
    status: int,
    cause: BaseException | None,
) -> int:
    """The one-line error (after the traceback of ``cause`` under --debug); the status."""
    if cause is not None and getattr(args, "debug", False):
        traceback.print_exception(cause)
    print(f"{prog}: error: {' '.join(message.split())}", file=sys.stderr)
    return status
