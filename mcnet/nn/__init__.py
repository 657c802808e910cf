"""PyTorch-shaped modules with hand-written backward, generic over the algebra."""

from mcnet.nn import models
from mcnet.nn.activation import ELU, Identity, ReLU, Sigmoid, Sin, Softplus, Tanh
from mcnet.nn.batchnorm import BatchNorm1d, BatchNorm2d, recompute_running_statistics
from mcnet.nn.container import Sequential
from mcnet.nn.conv import Conv2d
from mcnet.nn.dropout import Dropout, resample_dropout
from mcnet.nn.elementwise import Elementwise
from mcnet.nn.flatten import Flatten
from mcnet.nn.init import manual_seed
from mcnet.nn.linear import Linear
from mcnet.nn.loss import BCEWithLogitsLoss, CrossEntropyLoss, Loss, MSELoss, SquaredHingeLoss
from mcnet.nn.merge import Add, Concat
from mcnet.nn.module import Module, Parameter
from mcnet.nn.objective import Objective
from mcnet.nn.pooling import AvgPool2d, MaxPool2d
from mcnet.nn.vector import parameters_to_vector, vector_to_parameters

__all__ = [
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "Conv2d",
    "Dropout",
    "MaxPool2d",
    "models",
    "recompute_running_statistics",
    "resample_dropout",
    "Add",
    "BCEWithLogitsLoss",
    "Concat",
    "CrossEntropyLoss",
    "ELU",
    "Elementwise",
    "Flatten",
    "Identity",
    "Linear",
    "Loss",
    "MSELoss",
    "Module",
    "Objective",
    "Parameter",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "Sin",
    "Softplus",
    "SquaredHingeLoss",
    "Tanh",
    "manual_seed",
    "parameters_to_vector",
    "vector_to_parameters",
]
