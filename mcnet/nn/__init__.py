"""PyTorch-shaped modules with hand-written backward, generic over the algebra."""

from mcnet.nn.container import Sequential
from mcnet.nn.init import manual_seed
from mcnet.nn.linear import Linear
from mcnet.nn.module import Module, Parameter

__all__ = ["Linear", "Module", "Parameter", "Sequential", "manual_seed"]
