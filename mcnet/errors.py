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
