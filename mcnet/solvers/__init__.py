"""The optimisers, one file each.

Every solver follows one protocol (`mcnet.solvers.base`): constructed with its
hyperparameters, ``init(oracle, w) -> state`` and ``step(oracle, w, batch, state) ->
(w, state, StepInfo)``, its state a flat dict of named arrays and scalars. `make` builds one
from its command-line name; `mcnet.training.fit` runs any of them over minibatches.
"""

from __future__ import annotations

from typing import Any

from mcnet.errors import TrainingError
from mcnet.solvers.adagrad import AdaGrad
from mcnet.solvers.adahessian import AdaHessian
from mcnet.solvers.adam import Adam
from mcnet.solvers.base import FirstOrderSolver, Solver, StepInfo
from mcnet.solvers.hessian_free import HessianFree
from mcnet.solvers.lbfgs import LBFGS
from mcnet.solvers.lscg import LSCG
from mcnet.solvers.newton_cg import NewtonCG
from mcnet.solvers.newton_krylov import (
    NewtonKrylov,
    NewtonKrylovCheap,
    NewtonKrylovFast,
    NewtonKrylovGaussNewton,
    NewtonKrylovHessian,
)
from mcnet.solvers.rmsprop import RMSprop
from mcnet.solvers.schedule_free import ScheduleFreeAdamW
from mcnet.solvers.sgd import SGD
from mcnet.solvers.shampoo import GraftedShampoo, Shampoo
from mcnet.solvers.sophia import Sophia

SOLVERS: dict[str, type[Solver]] = {
    cls.name: cls
    for cls in (
        NewtonKrylov,
        NewtonKrylovHessian,
        NewtonKrylovCheap,
        NewtonKrylovGaussNewton,
        NewtonKrylovFast,
        SGD,
        Adam,
        AdaGrad,
        RMSprop,
        LBFGS,
        HessianFree,
        LSCG,
        Shampoo,
        GraftedShampoo,
        NewtonCG,
        ScheduleFreeAdamW,
        Sophia,
        AdaHessian,
    )
}


def make(name: str, **options: Any) -> Solver:
    """The solver called ``name`` (kebab-case, as on the command line) with ``options``;
    an unknown name or option is a ValueError listing what is accepted."""
    try:
        cls = SOLVERS[name]
    except KeyError:
        raise ValueError(f"unknown solver {name!r}; expected one of {sorted(SOLVERS)}") from None
    import inspect

    accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for solver {name!r}; it accepts {accepted}")
    return cls(**options)


__all__ = [
    "LBFGS",
    "LSCG",
    "SGD",
    "SOLVERS",
    "AdaGrad",
    "AdaHessian",
    "Adam",
    "FirstOrderSolver",
    "GraftedShampoo",
    "HessianFree",
    "NewtonCG",
    "NewtonKrylov",
    "NewtonKrylovCheap",
    "NewtonKrylovFast",
    "NewtonKrylovGaussNewton",
    "NewtonKrylovHessian",
    "RMSprop",
    "ScheduleFreeAdamW",
    "Shampoo",
    "Solver",
    "Sophia",
    "StepInfo",
    "TrainingError",
    "make",
]
