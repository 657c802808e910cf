"""The multicomplex number system: component-list algorithms and their lifting to tensors."""

from mcnet.algebra.multicomplex import (
    add,
    arctan,
    array_module,
    cos,
    cosh,
    div,
    erf,
    exp,
    int_power,
    inv,
    log,
    log1p,
    mul,
    neg,
    power,
    sigmoid,
    sin,
    sinh,
    softplus,
    sqrt,
    sub,
    tan,
    tanh,
    where,
)

__all__ = [
    "add", "arctan", "array_module", "cos", "cosh", "div", "erf", "exp", "int_power", "inv",
    "log", "log1p", "mul", "neg", "power", "sigmoid", "sin", "sinh", "softplus", "sqrt",
    "sub", "tan", "tanh", "where",
]
