"""Losses as leaf modules: ``forward(input, target)`` -> scalar, ``backward(grad=None)``.

Every loss is the mean over the batch (PyTorch's default ``reduction="mean"``).  The target
is data, never differentiated: integer class labels stay a NumPy integer array, real targets
become order-0 tensors of the input's dtype.  ``backward`` returns the gradient with respect
to the input, the holomorphic continuation of the real one (so it also serves complex and
higher-order passes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from mcnet.algebra.multicomplex import array_module
from mcnet.functions import exp, log_softmax, sigmoid, softplus, where
from mcnet.nn.module import Module, Untraceable
from mcnet.tensor import Tensor, as_tensor, tensor


class Loss(Module):
    """Base of the losses: the target passes to ``forward`` unconverted."""

    def __call__(self, input, target) -> Tensor:  # noqa: A002 - PyTorch's name
        return self.forward(as_tensor(input), target)

    def forward(self, input: Tensor, target) -> Tensor:  # noqa: A002
        raise NotImplementedError

    def backward(self, grad: Tensor | float | None = None) -> Tensor:
        """Gradient of (grad * loss) with respect to the input; grad defaults to 1."""
        raise NotImplementedError

    def _name(self) -> str:
        return type(self).__name__


def _scaled(t: Tensor, grad) -> Tensor:
    """t times the incoming scalar gradient (skipped when it is the default 1)."""
    return t if grad is None else t * grad


def _real_target(loss: Loss, input: Tensor, target) -> Tensor:  # noqa: A002
    """A real target of the input's shape, as an order-0 tensor of the input's dtype."""
    if isinstance(target, Tensor):
        if target.order:
            raise ValueError(
                f"{loss._name()} expected a real (order-0) target, got an order-{target.order} "
                "tensor"
            )
        target = target.astype(input.dtype)
    else:
        target = tensor(target, dtype=input.dtype, device=input.device)
    if target.shape != input.shape:
        raise ValueError(
            f"{loss._name()} expected a target of the input's shape {input.shape}, "
            f"got shape {target.shape}"
        )
    return target


def _class_labels(loss: Loss, input: Tensor, target) -> np.ndarray:
    """Validated integer labels (N,) for logits (N, C)."""
    if input.ndim != 2:
        raise ValueError(f"{loss._name()} expected logits of shape (N, C), got shape {input.shape}")
    n, classes = input.shape
    if isinstance(target, Tensor):
        raise ValueError(
            f"{loss._name()} expected integer class labels as a NumPy integer array of shape "
            f"({n},), got an mcnet Tensor"
        )
    labels = target if hasattr(target, "dtype") else np.asarray(target)
    if labels.dtype.kind not in "iu":
        raise ValueError(f"{loss._name()} expected integer class labels, got dtype {labels.dtype}")
    if labels.shape != (n,):
        raise ValueError(
            f"{loss._name()} expected labels of shape ({n},) for logits of shape {input.shape}, "
            f"got shape {labels.shape}"
        )
    xp = array_module(input.data)
    labels = xp.asarray(labels)
    if n and (int(labels.min()) < 0 or int(labels.max()) >= classes):
        raise ValueError(
            f"{loss._name()} expected labels in [0, {classes - 1}] for {classes} classes, "
            f"got values in [{int(labels.min())}, {int(labels.max())}]"
        )
    return labels


def _one_hot(labels, classes: int, dtype):
    xp = array_module(labels)
    out = xp.zeros((labels.shape[0], classes), dtype=dtype)
    out[xp.arange(labels.shape[0]), labels] = 1
    return out


class CrossEntropyLoss(Loss):
    """mean_n -log softmax(x_n)[y_n] for logits (N, C) and integer labels (N,)."""

    def forward(self, input: Tensor, target) -> Tensor:  # noqa: A002
        labels = _class_labels(self, input, target)
        log_p = log_softmax(input, axis=1)
        self.saved = (log_p, labels)
        n = input.shape[0]
        xp = array_module(input.data)
        return -log_p[xp.arange(n), labels].mean()

    def backward(self, grad=None) -> Tensor:
        log_p, labels = self.saved
        n, classes = log_p.shape
        # d/dx of -log_softmax(x)[y] / N is (softmax(x) - onehot(y)) / N
        return _scaled((exp(log_p) - _one_hot(labels, classes, log_p.dtype)) / n, grad)


class MSELoss(Loss):
    """mean over all elements of (x - target)^2."""

    def forward(self, input: Tensor, target) -> Tensor:  # noqa: A002
        diff = input - _real_target(self, input, target)
        self.saved = diff
        return (diff * diff).mean()

    def backward(self, grad=None) -> Tensor:
        diff = self.saved
        return _scaled(diff * (2.0 / max(diff.size, 1)), grad)


class BCEWithLogitsLoss(Loss):
    """mean over all elements of softplus(x) - y x (= -y log s(x) - (1-y) log(1 - s(x)))."""

    def forward(self, input: Tensor, target) -> Tensor:  # noqa: A002
        y = _real_target(self, input, target)
        self.saved = (input, y)
        return (softplus(input) - y * input).mean()

    def backward(self, grad=None) -> Tensor:
        x, y = self.saved
        return _scaled((sigmoid(x) - y) / max(x.size, 1), grad)


class SquaredHingeLoss(Loss):
    """PyTorch's MultiMarginLoss(p=2, margin=1): mean_n sum_{j != y_n} max(0, 1 - x_y + x_j)^2 / C.

    A margin of exactly 0 counts as inactive (the loss and its first derivative are
    continuous there; only the second derivative jumps).
    """

    def forward(self, input: Tensor, target) -> Tensor:  # noqa: A002
        labels = _class_labels(self, input, target)
        n, classes = input.shape
        xp = array_module(input.data)
        rows = xp.arange(n)
        margins = (1.0 - input[rows, labels].reshape(n, 1)) + input
        active = margins.real > 0
        active[rows, labels] = False
        hinge = where(active, margins, 0.0)
        self.saved = (hinge, labels)
        return (hinge * hinge).sum() / (n * classes)

    def backward(self, grad=None) -> Tensor:
        hinge, labels = self.saved
        n, classes = hinge.shape
        per_class = hinge * (2.0 / (n * classes))  # d/dx_j for j != y
        # x_y enters every margin of its row with sign -1
        label_part = per_class.sum(axis=1, keepdims=True) * _one_hot(labels, classes, hinge.dtype)
        return _scaled(per_class - label_part, grad)


class FunctionLoss(Loss):
    """A loss given as a function ``fn(outputs, targets) -> scalar`` built from mcnet
    operations (or a loss module without ``backward``): traced on every call, on its
    outputs with the targets as constants (``mcnet.nn.graph``), so its backward comes from
    the trace.  One the trace cannot record is forward-only: values work, ``backward``
    raises NotImplementedError."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        super().__init__()
        self.fn = fn.forward if isinstance(fn, Loss) else fn
        self.name = getattr(fn, "__name__", None) or type(fn).__name__
        self._untraceable: str | None = None

    def _name(self) -> str:
        return self.name

    def forward(self, input: Tensor, target) -> Tensor:  # noqa: A002
        from mcnet.nn.graph import Graph

        graph = None
        if self._untraceable is None:
            try:
                graph, loss = Graph.trace_function(self.fn, self.name, (input,), target)
            except Untraceable as reason:
                self._untraceable = str(reason)
        if graph is None:
            loss = as_tensor(self.fn(input, target), like=input)
        if loss.size != 1:
            raise ValueError(f"the loss {self.name} must return a scalar, got shape {loss.shape}")
        self.saved = None if graph is None else (graph, input)
        return loss.reshape(())

    def backward(self, grad: Tensor | float | None = None) -> Tensor:
        if self.saved is None:
            raise NotImplementedError(
                f"the loss {self.name} is forward-only: its trace failed ({self._untraceable}). "
                "Value, curvature and directional work, gradients and H v do not. Build it "
                "from + - * /, indexing, sum/mean and mc.<function> calls on the outputs, or "
                "write an nn.Loss with its own backward"
            )
        graph, like = self.saved
        return graph.backward(
            tensor(1.0 if grad is None else grad, dtype=like.dtype, device=like.device)
        )


def as_loss(loss: Any) -> Loss:
    """``loss`` as a Loss with a backward: loss modules with their own backward as they are,
    functions (and loss modules without backward) traced by `FunctionLoss`."""
    if isinstance(loss, Loss) and type(loss).backward is not Loss.backward:
        return loss
    if not callable(loss):
        raise TypeError(
            "the loss must be a loss module (e.g. nn.CrossEntropyLoss()) or a function "
            "(outputs, targets) -> scalar built from mcnet operations, got "
            f"{type(loss).__name__}"
        )
    return FunctionLoss(loss)
