"""mcnet's exceptions: each subclasses the built-in error a caller would already catch."""

from __future__ import annotations


class MCNetError(Exception):
    """Base class of mcnet's own errors."""


class DerivativeError(MCNetError, ArithmeticError):
    """A derivative that cannot be computed to the promised accuracy (names the points, the
    order and the reason)."""


class UnaccumulatedGradientWarning(UserWarning):
    """A hand-written backward left one of its module's parameters without gradient (names
    the module and the parameter; the gradient is taken as zero)."""


class DataError(MCNetError, ValueError):
    """A data file or array that is not what it should be (names the file and the fault)."""


class CheckpointError(MCNetError, OSError):
    """A checkpoint that cannot be read, written or resumed (names the path and what to do)."""


class CheckpointMismatchError(CheckpointError, ValueError):
    """A readable checkpoint that this run may not use as asked: another run's, one that an
    unasked-for fresh start would replace, or one past the epochs asked for (a ValueError
    too: the arguments, not the file, must change)."""


class OutputError(MCNetError, OSError):
    """A path that a result cannot be written to as asked: a directory, a symbolic link, a
    device or FIFO, or a folder that cannot be written (names the path and what to do)."""


class TrainingError(MCNetError, RuntimeError):
    """Training cannot go on: the loss or the parameters became non-finite and no step
    could be taken that kept them finite (names the epoch and the iteration)."""
