"""Tracing a composite module into a graph of steps, and replaying it.

``Graph.trace`` runs the composite's ``forward`` once on placeholder values (``TraceValue``)
and records a step for each module call and for each operation the forward applies to its
values: ``+ - * /``, ``**`` by a number, unary ``-``, ``reshape``/``view``/``flatten``/
``transpose``/indexing, ``sum``/``mean``, and mcnet functions (``mc.sigmoid(h)``,
``mc.relu``, ``mc.maximum``, ``mc.log_softmax``, ...).  Each operation is a step whose
backward is written once for its kind (``mcnet.nn.recorded``; analytic functions are
``nn.Elementwise``).  Composites met on the way are inlined, so the graph holds leaf steps
only.  Constants (numbers, arrays, tensors) are kept as they were when traced.

``Graph.forward`` replays the steps on tensors of any order and dtype and keeps each call's
``saved`` context (so a module called twice keeps both); ``Graph.backward`` walks the steps
in reverse, summing the gradients of nodes that feed several steps (branches that merge,
residual connections).

A forward that asks for the shape of a value (``h.shape``, ``h.ndim``, ``len(h)``) is traced
again at its first call with inputs of new shapes, on those inputs: every step then runs as
it is recorded, so shapes are known, and the graph, which holds them as constants, serves
inputs of those shapes.

A forward that does something else -- reads a parameter's value or a buffer, compares
values, hands them to NumPy -- raises ``Untraceable``; the module (the innermost composite
whose forward did it) is then forward-only: its calls run its forward directly (see
``mcnet.nn.module``).
"""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

from mcnet.functions import ANALYTIC, exp, log_softmax, logsumexp, power
from mcnet.nn import recorded
from mcnet.nn.activation import ReLU
from mcnet.nn.elementwise import Elementwise
from mcnet.nn.flatten import Flatten
from mcnet.nn.merge import Add, Concat
from mcnet.nn.module import ShapesNeeded, Untraceable, active_tracers, run_backward
from mcnet.tensor import _REFLECTED_OPERATORS, Tensor, as_tensor


class TraceValue:
    """A placeholder that flows through a composite's forward while it is traced."""

    __slots__ = ("node", "tracer", "example")

    def __init__(self, tracer: Tracer, node: int, example: Any = None) -> None:
        self.node = node
        self.tracer = tracer
        self.example = example  # its value, when the trace runs on example inputs

    # --- arithmetic (mcnet.nn.recorded) ---------------------------------------------------
    def __add__(self, other):
        return self.tracer.arithmetic("add", self, other)

    def __radd__(self, other):
        return self.tracer.arithmetic("add", other, self)

    def __sub__(self, other):
        return self.tracer.arithmetic("sub", self, other)

    def __rsub__(self, other):
        return self.tracer.arithmetic("sub", other, self)

    def __mul__(self, other):
        return self.tracer.arithmetic("mul", self, other)

    def __rmul__(self, other):
        return self.tracer.arithmetic("mul", other, self)

    def __truediv__(self, other):
        return self.tracer.arithmetic("div", self, other)

    def __rtruediv__(self, other):
        return self.tracer.arithmetic("div", other, self)

    def __neg__(self) -> TraceValue:
        return self.tracer.step(recorded.Shift(None, -1), self)

    def __pos__(self) -> TraceValue:
        return self

    def __pow__(self, exponent):
        if isinstance(exponent, TraceValue):
            raise self.tracer.refuse("it raises to a traced power; use mc.exp(p * mc.log(x))")
        return self.tracer.step(Elementwise(_With(power, exponent)), self)

    def __rpow__(self, base):
        if not isinstance(base, numbers.Real):
            return NotImplemented
        return self.tracer.step(Elementwise(_Power(base)), self)

    # --- linear maps --------------------------------------------------------------------------
    def reshape(self, *shape) -> TraceValue:
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return self.tracer.step(recorded.Reshape(tuple(int(n) for n in shape)), self)

    view = reshape  # PyTorch's name

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> TraceValue:
        """PyTorch's ``flatten``: dimensions start_dim..end_dim merged into one."""
        return self.tracer.step(Flatten(start_dim, end_dim), self)

    def transpose(self, *axes) -> TraceValue:
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        return self.tracer.step(recorded.Transpose(tuple(int(a) for a in axes)), self)

    @property
    def T(self) -> TraceValue:
        return self.transpose()

    def sum(self, axis=None, keepdims: bool = False) -> TraceValue:
        return self.tracer.step(recorded.Sum(axis, keepdims, mean=False), self)

    def mean(self, axis=None, keepdims: bool = False) -> TraceValue:
        return self.tracer.step(recorded.Sum(axis, keepdims, mean=True), self)

    def __getitem__(self, key) -> TraceValue:
        parts = key if isinstance(key, tuple) else (key,)
        if any(isinstance(k, TraceValue) for k in parts):
            raise self.tracer.refuse("it indexes with a traced value")
        return self.tracer.step(recorded.Index(key), self)

    # --- mcnet functions (``mcnet.functions`` hands calls on traced values here) -----------
    def __mcnet_function__(self, fn: Callable, args: tuple, kwargs: dict):
        return self.tracer.function(fn, args, kwargs)

    # --- shapes: known when the trace runs on example inputs ----------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return self._example("shape").shape

    @property
    def ndim(self) -> int:
        return self._example("ndim").ndim

    @property
    def size(self) -> int:
        return self._example("size").size

    def __len__(self) -> int:
        return len(self._example("len()"))

    def _example(self, what: str) -> Any:
        if self.example is None:
            raise ShapesNeeded(
                f"in {self.tracer.where[-1]}.forward, it asks for the {what} "
                "of a value; traced again with the inputs of each call"
            )
        return self.example

    # --- what the trace cannot record ----------------------------------------------------------

    def _refuse_comparison(self, other):
        raise self.tracer.refuse(
            "it compares traced values; use mc.relu, mc.maximum, mc.minimum, mc.clip, "
            "or nn.Elementwise(lambda t: mc.where(t > 0, t, 0.1 * t)) for a branch"
        )

    __lt__ = __le__ = __gt__ = __ge__ = __eq__ = __ne__ = _refuse_comparison
    __hash__ = object.__hash__

    def _refuse_value(self, *args, **kwargs):
        raise self.tracer.refuse(
            "it needs the numbers of a traced value (NumPy, float(), bool(), iteration or "
            "mcnet.Tensor methods); use mcnet functions and arithmetic on it, or "
            "nn.Elementwise for an elementwise function"
        )

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        """``ndarray op value`` goes to the reflected operator; other ufuncs are refused."""
        reflected = _REFLECTED_OPERATORS.get(ufunc.__name__)
        if reflected and method == "__call__" and not kwargs and inputs[-1] is self:
            return getattr(self, reflected)(inputs[0])
        return self._refuse_value()

    __array__ = __bool__ = __float__ = __int__ = __iter__ = _refuse_value

    def _refuse_matmul(self, other):
        raise self.tracer.refuse(
            "it multiplies a traced value with @; use nn.Linear, whose "
            "weight is a parameter, or a module with its own backward"
        )

    __matmul__ = __rmatmul__ = _refuse_matmul

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        raise self.tracer.refuse(
            f"it reads .{name} of a traced value, which only has the operations a composite "
            "forward may record (+ - * /, reshape, view, flatten, transpose, sum, mean, "
            "indexing, mc.<function>)"
        )


def is_tracing(inputs: tuple) -> bool:
    return any(isinstance(x, TraceValue) for x in inputs)


@dataclass
class Step:
    module: Any
    inputs: tuple[int, ...]
    output: int


@dataclass
class Tracer:
    """What a trace has recorded: the steps, and the constants some steps read as inputs."""

    steps: list[Step] = field(default_factory=list)
    nodes: int = 0
    constants: dict[int, Any] = field(default_factory=dict)
    where: list[str] = field(default_factory=list)  # the forwards being traced, outermost first
    # on example inputs: every step runs as it is recorded, keeping its saved context here
    runs: bool = False
    saved: list[Any] = field(default_factory=list)

    def new_value(self, example: Any = None) -> TraceValue:
        self.nodes += 1
        return TraceValue(self, self.nodes - 1, example)

    def refuse(self, reason: str) -> Untraceable:
        return Untraceable(f"in {self.where[-1]}.forward, {reason}")

    def node(self, x: Any) -> int:
        """The node of a traced value, or a new constant node holding ``x``."""
        if isinstance(x, TraceValue):
            return x.node
        value = self.new_value(x)
        self.constants[value.node] = x
        return value.node

    def step(self, module: Any, *inputs: Any) -> TraceValue:
        nodes = tuple(self.node(x) for x in inputs)
        example = None
        if self.runs:
            active_tracers().append(None)  # the module's own forward may read its parameters
            try:
                example = module.forward(*(_example_of(x) for x in inputs))
            finally:
                active_tracers().pop()
            self.saved.append(module.saved)
        out = self.new_value(example)
        self.steps.append(Step(module, nodes, out.node))
        return out

    @staticmethod
    def record(module: Any, inputs: tuple) -> Any:
        """A module called on traced values: a step for a leaf, inlined for a composite.
        A composite whose own forward cannot be traced becomes a forward-only step."""
        tracer = _tracer_of(inputs)
        if not module.has_backward() and module._untraceable is None:
            steps = len(tracer.steps)
            tracer.where.append(type(module).__name__)
            try:
                return module.forward(*inputs)
            except ShapesNeeded:  # the whole forward is traced again on example inputs
                raise
            except Untraceable as reason:
                del tracer.steps[steps:], tracer.saved[steps:]  # what it recorded before failing
                module.mark_untraceable(str(reason))
            finally:
                tracer.where.pop()
        return tracer.step(module, *inputs)

    def arithmetic(self, kind: str, a: Any, b: Any) -> Any:
        """``a op b`` with at least one of them traced (mcnet.nn.recorded)."""
        if isinstance(a, TraceValue) and isinstance(b, TraceValue):
            if kind == "div":
                return self.step(recorded.Multiply(), a, self.step(Elementwise(_reciprocal), b))
            op = {"add": Add, "sub": recorded.Subtract, "mul": recorded.Multiply}[kind]()
            return self.step(op, a, b)
        traced_first = isinstance(a, TraceValue)
        value, constant = (a, b) if traced_first else (b, a)
        if not isinstance(constant, (numbers.Number, np.ndarray, Tensor)):
            return NotImplemented
        if kind == "add":
            return self.step(recorded.Shift(constant, 1), value)
        if kind == "sub":
            negated = -cast(Any, constant)  # a number, array or tensor: all negate
            op = recorded.Shift(negated, 1) if traced_first else recorded.Shift(constant, -1)
            return self.step(op, value)
        if kind == "mul":
            return self.step(recorded.Scale(constant), value)
        if traced_first:
            return self.step(recorded.Scale(constant, divide=True), value)
        return self.step(recorded.Scale(constant), self.step(Elementwise(_reciprocal), value))

    def function(self, fn: Callable, args: tuple, kwargs: dict) -> TraceValue | Tensor:
        """``fn(*args, **kwargs)`` of ``mcnet.functions`` with traced arguments."""
        name = fn.__name__
        bound = inspect.signature(fn).bind(*args, **kwargs)
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        if name in _BINARY:
            a, b = arguments["x"], arguments["y"]
            return self.step(recorded.Select(name), a, b)
        if name == "where":
            if isinstance(arguments["condition"], TraceValue):
                raise self.refuse("mc.where's condition is a traced value")
            op = recorded.Select("where", arguments["condition"])
            return self.step(op, arguments["x"], arguments["y"])
        if name == "concatenate":
            items = list(arguments["tensors"])
            return self.step(Concat(arguments["axis"]), *items)
        x = arguments.pop(next(iter(arguments)))  # the first parameter: the traced value
        if not isinstance(x, TraceValue) or any(
            isinstance(v, TraceValue) for v in arguments.values()
        ):
            raise self.refuse(f"mc.{name} gets a traced value where the trace takes a constant")
        if name in _ELEMENTWISE:
            return self.step(Elementwise(_With(fn, **arguments)), x)
        if name == "relu":
            return self.step(ReLU(), x)
        if name == "abs":
            return self.step(recorded.Abs(), x)
        if name == "transpose":
            return x.transpose(*(arguments["axes"] or ()))
        if name in ("sum", "mean", "reshape"):
            return getattr(x, name)(*arguments.values())
        if name == "logsumexp":
            return self.step(recorded.LogSumExp(arguments["axis"], arguments["keepdims"]), x)
        if name == "log_softmax":
            return x - logsumexp(x, axis=arguments["axis"], keepdims=True)
        if name == "softmax":
            return exp(log_softmax(x, axis=arguments["axis"]))
        raise self.refuse(
            f"it calls mc.{name} on a traced value, which the trace does not record; put it "
            "in a module with its own backward"
        )


_ELEMENTWISE = {*ANALYTIC, "elu", "power", "clip"}
_BINARY = {"maximum", "minimum"}


class _With:
    """``fn(x, **arguments)``: an mcnet function with its constant arguments, as a function
    of x alone (a class, not a lambda, so that modules holding it can be pickled)."""

    def __init__(self, fn: Callable, *args: Any, **arguments: Any) -> None:
        self.fn, self.args, self.arguments = fn, args, arguments
        self.__name__ = fn.__name__

    def __call__(self, x: Tensor) -> Tensor:
        return self.fn(x, *self.args, **self.arguments)


class _Power:
    """``base ** x`` for a real number ``base``."""

    def __init__(self, base: float) -> None:
        self.base = base
        self.__name__ = f"{base}**x"

    def __call__(self, x: Tensor) -> Tensor:
        return power(as_tensor(self.base, like=x), x)


def _reciprocal(x: Tensor) -> Tensor:
    return 1.0 / x


def _example_of(x: Any) -> Any:
    return x.example if isinstance(x, TraceValue) else x


def _tracer_of(inputs: tuple) -> Tracer:
    return next(x.tracer for x in inputs if isinstance(x, TraceValue))


class Graph:
    """The leaf steps of a composite, replayable for any order and dtype."""

    def __init__(
        self, steps: list[Step], inputs: tuple[int, ...], output: int, constants: dict[int, Any]
    ) -> None:
        self.steps = steps
        self.inputs = inputs
        self.output = output
        self.constants = constants
        self._saved: list[Any] = []

    @classmethod
    def trace(cls, module: Any, examples: tuple[Tensor, ...] | None = None) -> tuple[Graph, Any]:
        """The graph of ``module.forward`` (see ``trace_function``)."""
        inputs = _positional_arity(module.forward) if examples is None else examples
        return cls.trace_function(module.forward, type(module).__name__, inputs)

    @classmethod
    def trace_function(
        cls, fn: Callable, name: str, inputs: int | tuple[Tensor, ...], *constants: Any
    ) -> tuple[Graph, Any]:
        """The graph of ``fn(x_1, ..., x_k, *constants)`` as a function of the x's, and
        its output on them.  ``inputs``: k, or the x's themselves, on which the steps then
        run as they are recorded (the forward may ask for shapes; the graph is for inputs
        of these shapes, and comes with the run's saved contexts and output; None
        without). Raises Untraceable (ShapesNeeded) for what the trace cannot record."""
        runs = not isinstance(inputs, int)
        tracer = Tracer(where=[name], runs=runs)
        if isinstance(inputs, int):
            placeholders = [tracer.new_value() for _ in range(inputs)]
        else:
            placeholders = [tracer.new_value(x) for x in inputs]
        active_tracers().append(tracer)
        try:
            out = fn(*placeholders, *constants)
        finally:
            active_tracers().pop()
        if not isinstance(out, TraceValue) or out.tracer is not tracer:
            raise tracer.refuse(
                f"it returns {type(out).__name__}, not one value computed from its inputs"
            )
        graph = cls(tracer.steps, tuple(p.node for p in placeholders), out.node, tracer.constants)
        graph._saved = tracer.saved
        return graph, out.example

    def forward(self, *inputs: Tensor) -> Tensor:
        if len(inputs) != len(self.inputs):
            raise ValueError(f"expected {len(self.inputs)} input(s), got {len(inputs)}")
        values: dict[int, Any] = dict(self.constants)
        values.update(zip(self.inputs, inputs))
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
    ) -> Tensor | tuple[Tensor | None, ...] | None:
        """Gradients of the graph's inputs; every parameter's gradient is accumulated.

        With ``input_grads=False`` the calls that read only graph inputs and constants (the
        data) are told that their input gradient is not needed, which spares the first
        layer's largest product when only parameter gradients are wanted.
        """
        if len(self._saved) != len(self.steps):
            raise RuntimeError("backward needs a forward pass first")
        data_nodes = set(self.inputs) | set(self.constants)
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
                grad_in = run_backward(module, grad)
            finally:
                object.__setattr__(module, "input_grad_needed", True)
            if not isinstance(grad_in, tuple):
                grad_in = (grad_in,)
            for node, g in zip(step.inputs, grad_in):
                if g is not None and node not in self.constants:
                    grads[node] = g if node not in grads else grads[node] + g
        if not input_grads:
            return None
        result = tuple(grads.get(i) for i in self.inputs)
        return result[0] if len(result) == 1 else result


def _positional_arity(fn) -> int:
    params = inspect.signature(fn).parameters.values()
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)
