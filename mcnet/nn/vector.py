"""A module's parameters as one flat vector, and back (PyTorch's helpers, same order)."""

from __future__ import annotations

import math

import numpy as np

from mcnet.algebra.multicomplex import array_module
from mcnet.nn.module import Module
from mcnet.tensor import Tensor, tensor


def parameters_to_vector(module: Module) -> np.ndarray:
    """The real parts of all parameters, flattened in ``named_parameters`` order (a copy)."""
    parts = []
    for p in module.parameters():
        real = p.value.real
        parts.append((real if array_module(real) is np else real.get()).ravel())
    if not parts:
        return np.zeros(0)
    return np.concatenate(parts)


def parameter_count(module: Module) -> int:
    """The length of ``parameters_to_vector(module)``."""
    return sum(p.numel() for p in module.parameters())


def vector_to_parameters(vec, module: Module) -> None:
    """Set every parameter from consecutive slices of ``vec`` (in ``named_parameters`` order).

    ``vec`` is a 1-D array (copied into each parameter's dtype and device) or a 1-D
    multicomplex Tensor of any order, whose slices become the parameters' values (views, so
    ``w + i h v`` reaches every parameter without a copy).
    """
    params = module.parameters()
    shapes = [p.shape for p in params]
    sizes = [math.prod(shape) for shape in shapes]
    expected = sum(sizes)
    is_tensor = isinstance(vec, Tensor)
    if not is_tensor:
        vec = np.asarray(vec) if array_module(vec) is np else vec
    shape = vec.shape
    if len(shape) != 1 or shape[0] != expected:
        raise ValueError(
            f"expected a parameter vector of shape ({expected},) for "
            f"{type(module).__name__}, got shape {shape}"
        )
    offset = 0
    for p, shape, n in zip(params, shapes, sizes):
        if is_tensor:  # a slice of the component data: a view, as vec[a:b].reshape(shape)
            piece = Tensor(vec.data[:, offset : offset + n].reshape((len(vec.data), *shape)))
            value = p.value
            piece = piece if piece.dtype == value.dtype else piece.astype(value.dtype)
            p.value = piece if piece.device == value.device else piece.to(value.device)
        else:
            piece = vec[offset : offset + n].reshape(shape)
            p.value = tensor(piece, dtype=p.value.dtype, device=p.value.device)
        offset += n
