"""Newton-Krylov (Algorithm 1 of Shen et al.) and its variants, built from four parts: a
curvature operator, a Krylov solver, a step rule and a global-gradient estimator."""

from mcnet.solvers.newton_krylov.curvature import CurvatureOperator
from mcnet.solvers.newton_krylov.gradient import GlobalGradient
from mcnet.solvers.newton_krylov.krylov import ConjugateGradient, KrylovResult
from mcnet.solvers.newton_krylov.solver import (
    NewtonKrylov,
    NewtonKrylovCheap,
    NewtonKrylovFast,
    NewtonKrylovGaussNewton,
    NewtonKrylovHessian,
)
from mcnet.solvers.newton_krylov.step_rules import Armijo, LevenbergMarquardt, TaylorRatio

__all__ = [
    "Armijo",
    "ConjugateGradient",
    "CurvatureOperator",
    "GlobalGradient",
    "KrylovResult",
    "LevenbergMarquardt",
    "NewtonKrylov",
    "NewtonKrylovCheap",
    "NewtonKrylovFast",
    "NewtonKrylovGaussNewton",
    "NewtonKrylovHessian",
    "TaylorRatio",
]
