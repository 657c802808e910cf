"""Tracing a composite module into a graph of leaf-module calls, and replaying it.

``Graph.trace`` runs the composite's ``forward`` once on placeholder values: every module
call is recorded as a step (module, input nodes, output node); composites met on the way are
inlined, so the graph holds leaf modules only.  ``Graph.forward`` replays the steps on
tensors of any order and dtype and keeps each call's ``saved`` context (so a module called
twice keeps both); ``Graph.backward`` walks the steps in reverse, summing the gradients of
nodes that feed several calls (branches that merge, residual connections).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mcnet.tensor import Tensor

_ACTIVE: list[Tracer] = []


class TraceValue:
    """A placeholder that flows through a composite's forward during tracing."""

    __slots__ = ("node",)

    def __init__(self, node: int) -> None:
        self.node = node

    def _refuse(self, *args: Any, **kwargs: Any):
        raise TypeError(
            "a composite module's forward may only call modules on its values; wrap any "
            "other operation in a Module with its own backward (e.g. nn.Add, nn.Concat)"
        )

    __array__ = __add__ = __radd__ = __mul__ = __rmul__ = __sub__ = __rsub__ = _refuse
    __truediv__ = __matmul__ = __neg__ = __getitem__ = __pow__ = _refuse


def is_tracing(inputs: tuple) -> bool:
    return any(isinstance(x, TraceValue) for x in inputs)


@dataclass
class Step:
    module: Any
    inputs: tuple[int, ...]
    output: int


@dataclass
class Tracer:
    steps: list[Step] = field(default_factory=list)
    nodes: int = 0

    def new_node(self) -> TraceValue:
        self.nodes += 1
        return TraceValue(self.nodes - 1)

    @staticmethod
    def record(module: Any, inputs: tuple) -> TraceValue:
        tracer = _ACTIVE[-1]
        if not all(isinstance(x, TraceValue) for x in inputs):
            raise TypeError(
                f"{type(module).__name__} was called on a mix of traced values and constants; "
                "make the constant a parameter or buffer of a module"
            )
        if not module.is_leaf():  # inline composites: the graph holds leaves only
            return module.forward(*inputs)
        out = tracer.new_node()
        tracer.steps.append(Step(module, tuple(x.node for x in inputs), out.node))
        return out


class Graph:
    """The leaf-module calls of a composite, replayable for any order and dtype."""

    def __init__(self, steps: list[Step], inputs: tuple[int, ...], output: int) -> None:
        self.steps = steps
        self.inputs = inputs
        self.output = output
        self._saved: list[Any] = []

    @classmethod
    def trace(cls, module: Any) -> Graph:
        n_inputs = _positional_arity(module.forward)
        tracer = Tracer()
        placeholders = [tracer.new_node() for _ in range(n_inputs)]
        _ACTIVE.append(tracer)
        try:
            out = module.forward(*placeholders)
        finally:
            _ACTIVE.pop()
        if not isinstance(out, TraceValue):
            raise TypeError(f"{type(module).__name__}.forward must return one module output")
        return cls(tracer.steps, tuple(p.node for p in placeholders), out.node)

    def forward(self, *inputs: Tensor) -> Tensor:
        if len(inputs) != len(self.inputs):
            raise ValueError(f"expected {len(self.inputs)} input(s), got {len(inputs)}")
        values: dict[int, Tensor] = dict(zip(self.inputs, inputs))
        saved = []
        for step in self.steps:
            values[step.output] = step.module.forward(*(values[i] for i in step.inputs))
            saved.append(step.module.saved)
        self._saved = saved
        return values[self.output]

    def map_saved(self, transform: Callable[[Any], Any]) -> None:
        """Replace every call's saved state of the last forward by ``transform(saved)``."""
        self._saved = [transform(saved) for saved in self._saved]

    def backward(
        self, grad_out: Tensor, input_grads: bool = True
    ) -> Tensor | tuple[Tensor, ...] | None:
        """Gradients of the graph's inputs; every parameter's gradient is accumulated.

        With ``input_grads=False`` the calls that read only graph inputs (the data) are told
        that their input gradient is not needed, which spares the first layer's largest
        product when only parameter gradients are wanted.
        """
        if len(self._saved) != len(self.steps):
            raise RuntimeError("backward needs a forward pass first")
        data_nodes = set(self.inputs)
        grads: dict[int, Tensor] = {self.output: grad_out}
        for step, saved in zip(reversed(self.steps), reversed(self._saved)):
            grad = grads.pop(step.output, None)
            if grad is None:  # this call does not reach the output
                continue
            module = step.module
            object.__setattr__(module, "saved", saved)
            skip = not input_grads and data_nodes.issuperset(step.inputs)
            object.__setattr__(module, "input_grad_needed", not skip)
            try:
                grad_in = module.backward(grad)
            finally:
                object.__setattr__(module, "input_grad_needed", True)
            if not isinstance(grad_in, tuple):
                grad_in = (grad_in,)
            for node, g in zip(step.inputs, grad_in):
                if g is not None:
                    grads[node] = g if node not in grads else grads[node] + g
        if not input_grads:
            return None
        result = tuple(grads.get(i) for i in self.inputs)
        return result[0] if len(result) == 1 else result


def _positional_arity(fn) -> int:
    params = inspect.signature(fn).parameters.values()
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)
