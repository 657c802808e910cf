"""mcnet: multicomplex arrays and networks for exact higher-order derivatives."""

from mcnet import algebra
from mcnet.derivatives import default_step, derivative, directional, perturb
from mcnet.functions import (
    abs,
    arctan,
    clip,
    concatenate,
    cos,
    cosh,
    elu,
    embed,
    erf,
    exp,
    log,
    log1p,
    log_softmax,
    logsumexp,
    max,
    maximum,
    mean,
    minimum,
    power,
    relu,
    reshape,
    sigmoid,
    sin,
    sinh,
    softmax,
    softplus,
    sqrt,
    stack,
    sum,
    tan,
    tanh,
    transpose,
    where,
    zeros,
)
from mcnet.tensor import (
    Tensor,
    as_tensor,
    einsum,
    from_parts,
    lift_bilinear,
    lift_linear,
    matmul,
    tensor,
    tensordot,
)

__version__ = "0.1.0"

__all__ = [
    "Tensor", "abs", "algebra", "arctan", "as_tensor", "clip", "concatenate", "cos", "cosh",
    "default_step", "derivative", "directional", "einsum", "elu", "embed", "erf", "exp",
    "from_parts", "lift_bilinear", "lift_linear", "log", "log1p", "log_softmax", "logsumexp",
    "matmul", "max", "maximum", "mean", "minimum", "perturb", "power", "relu", "reshape",
    "sigmoid", "sin", "sinh", "softmax", "softplus", "sqrt", "stack", "sum", "tan", "tanh",
    "tensor", "tensordot", "transpose", "where", "zeros",
]
