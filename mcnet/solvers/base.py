"""The protocol every solver follows, and the first-order solvers' shared step.

A solver is created with its hyperparameters and holds nothing else. Everything that
changes during training is its *state*: a flat dict of named arrays and Python scalars,
so that a checkpoint is an ``.npz`` file (never a pickle) and a rejected step is undone by
keeping the old dict. As in Optax, ``init`` builds the state and ``step`` returns a new one
without modifying the old.

``step(oracle, w, batch, state) -> (w_new, state, StepInfo)`` takes one iteration on a
minibatch. The oracle (`mcnet.training.oracle.Oracle`) evaluates the loss, gradient, H v,
v^T H v and Gauss-Newton products on that batch or, with ``batch=None``, on the full
training data, and counts and times every evaluation.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

State = dict[str, Any]


@dataclasses.dataclass
class StepInfo:
    """What one iteration did, for the training history."""

    loss: float  # the batch loss at the starting point
    step_size: float = math.nan  # the gamma (or learning rate) of the step taken
    krylov_iterations: int = 0
    skipped: bool = False  # a batch screened out: no step taken
    adjustments: int = 0  # step-size trials beyond the first (Taylor rule or backtracking)
    reason: str = ""  # why a Krylov loop stopped, why a batch was skipped, ...


class Solver:
    """Base class: hyperparameters in, ``init`` and ``step`` out."""

    name: ClassVar[str] = ""  # kebab-case, as on the command line
    #: A full-batch solver gets the whole training set as its batch, one step per epoch.
    full_batch: ClassVar[bool] = False

    def init(self, oracle, w) -> State:
        """The state before the first step."""
        return {}

    def step(self, oracle, w, batch, state: State) -> tuple[Any, State, StepInfo]:
        raise NotImplementedError

    def end_epoch(
        self,
        w,
        state: State,
        train_loss: float,
        loss_at: Callable[[Any], float] | None = None,
    ) -> tuple[Any, State, str]:
        """Called by `mcnet.fit` at the initial point and after every epoch with the full
        training loss at ``w`` and ``loss_at(v)``, the full training loss at any other point:
        the point to go on from, its state, and why, if it is not ``w`` (a solver may go back
        towards the end of an earlier epoch). The default keeps ``w``."""
        return w, state, ""

    @property
    def reads_epoch_loss(self) -> bool:
        """Whether `end_epoch` uses the training loss: then `mcnet.fit` counts its
        evaluation as the solver's time."""
        return False

    def evaluation_point(self, state: State, w):
        """The parameters to evaluate and to leave in the module: ``w`` itself, except for
        solvers that take gradients at one point and average into another (schedule-free)."""
        return w

    def config(self) -> dict[str, Any]:
        """The hyperparameters as given to the constructor (JSON-able)."""
        names = inspect.signature(type(self).__init__).parameters
        return {name: getattr(self, name) for name in names if name != "self"}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"


class FirstOrderSolver(Solver):
    """A solver whose step is ``w + update(grad, state, w)`` from the batch gradient alone
    (Optax's ``update(grads, state, params) -> (updates, state)``)."""

    lr: float  # the learning rate, set by each subclass's constructor

    def step(self, oracle, w, batch, state: State) -> tuple[Any, State, StepInfo]:
        loss, grad = oracle.value_and_grad(w, batch)
        delta, state = self.update(grad, state, w)
        return w + delta, state, StepInfo(loss=loss, step_size=float(self.lr))

    def update(self, grad, state: State, w) -> tuple[Any, State]:
        raise NotImplementedError


def check_positive(name: str, value: float, *, allow_zero: bool = False) -> float:
    """``value`` as a float, or a ValueError naming the hyperparameter."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {value!r}") from None
    ok = value >= 0 if allow_zero else value > 0
    if not ok or not math.isfinite(value):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return value


def check_in_range(name: str, value: float, low: float, high: float) -> float:
    """``value`` as a float in [low, high), or a ValueError naming the hyperparameter."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {value!r}") from None
    if not low <= value < high:
        raise ValueError(f"{name} must be in [{low}, {high}), got {value!r}")
    return value


def check_count(name: str, value: int, minimum: int = 1) -> int:
    """``value`` as an int >= minimum, or an error naming the hyperparameter."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_flag(name: str, value: bool) -> bool:
    """``value`` as a bool, or a TypeError naming the hyperparameter."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_fraction(name: str, value: float) -> float:
    """``value`` as a float in [0, 1], or an error naming the hyperparameter."""
    value = check_positive(name, value, allow_zero=True)
    if value > 1:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return value


def check_open_unit(name: str, value: float) -> float:
    """``value`` as a float in (0, 1), or an error naming the hyperparameter."""
    value = check_in_range(name, value, 0.0, 1.0)
    if value == 0:
        raise ValueError(f"{name} must be in (0, 1), got {value!r}")
    return value


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def variant_of(base: type[Solver], **defaults: Any) -> Callable[[type], type]:
    """Class decorator for a named variant of ``base``: the same solver with other defaults.
    Its ``__init__`` takes ``base``'s options with ``defaults`` filled in, and has ``base``'s
    signature with those defaults, which is what `make`, the command line and config() read."""

    def decorate(variant: type) -> type:
        def __init__(self, **options: Any) -> None:
            base.__init__(self, **{**defaults, **options})

        signature = inspect.signature(base.__init__)
        # inspect.signature reads a function's __signature__; typeshed does not declare it.
        __init__.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=[
                p.replace(default=defaults.get(p.name, p.default))
                for p in signature.parameters.values()
            ]
        )
        __init__.__doc__ = f"{base.__name__}'s options, defaults {defaults} changed."
        variant.__init__ = __init__  # type: ignore[misc]  # replacing it is the point
        return variant

    return decorate
