"""`Module` and `Parameter`: PyTorch-shaped building blocks with hand-written backward.

A *leaf* module (Linear, Conv2d, ReLU, ...) implements ``forward(*inputs)`` and
``backward(grad_out)``.  ``forward`` keeps what ``backward`` needs in ``self.saved`` (one
object of its choice; tensors in it, alone or in tuples, lists and dataclasses, are what
``map_saved`` transforms, e.g. to their real parts for the Gauss-Newton product);
``backward`` reads it, adds the parameter gradients into each ``Parameter.grad`` and returns
the gradient of the input (a tuple for several inputs).
Both are written once with mcnet operations, so they run unchanged on tensors of any
multicomplex order; ``backward`` is the holomorphic continuation of the real backward
(transposes, never conjugates), which is what makes one complex pass yield H v.

A module without ``backward`` is a *composite*: its ``forward`` calls other modules and may
combine their values with ``+ - * /``, ``mc.<function>`` calls and ``reshape``/``flatten``; it
is traced once (once per input shapes if it reads shapes) into a graph of steps
(``mcnet.nn.graph``) which replays forward and backward for every order and dtype without
being rebuilt.  A forward the trace cannot record (one that reads a parameter's value or
calls NumPy) makes the module *forward-only*: calls run its ``forward`` directly, which is
all that values, ``curvature`` and ``directional`` need; ``backward`` raises
NotImplementedError saying what to write.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import threading
import warnings
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from mcnet.algebra import gemm
from mcnet.errors import UnaccumulatedGradientWarning
from mcnet.functions import matmul_by_terms
from mcnet.tensor import Tensor, as_tensor, tensor

if TYPE_CHECKING:
    from mcnet.nn.graph import Graph

_THREAD = threading.local()

# Counts the Parameters and Modules registered on any module: a change says that a cached
# parameter list (`Module.parameters`) may be out of date.
_STRUCTURE_VERSION = [0]

# Set by `derivative_parts_only`: parameter gradients need only their i-part (H v passes).
_DERIVATIVE_PARTS_ONLY: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "derivative_parts_only", default=False
)


@contextlib.contextmanager
def derivative_parts_only() -> Iterator[None]:
    """Within it, the parameter gradients that backward passes build with `gradient_product`
    carry only their i-part (their real part is zero): in a complex pass at w + i h v that
    part is h H v, all that ``Objective.hvp`` reads, and it costs one real GEMM less per
    product than the whole complex product (two of three for two complex operands)."""
    token = _DERIVATIVE_PARTS_ONLY.set(True)
    try:
        yield
    finally:
        _DERIVATIVE_PARTS_ONLY.reset(token)


def derivative_parts_wanted() -> bool:
    """Whether this backward pass runs within `derivative_parts_only`."""
    return _DERIVATIVE_PARTS_ONLY.get()


def gradient_product(a: Tensor, b: Tensor, into: Parameter | None = None) -> Tensor:
    """``a @ b`` for a parameter's gradient in a backward pass: within
    `derivative_parts_only`, for 2-D real or complex (order 0 or 1) NumPy operands, or two
    of order 1 in the one-direction layout, only the product's i-part, with a zero real
    part.  Real operands whose product is the first
    gradient of ``into`` are multiplied straight into its ``slot``."""
    if derivative_parts_wanted() and _order_one_matrix(a) and _order_one_matrix(b):
        da, db = a.data, b.data  # one-direction: (real part, i-part) each
        product, imag = derivative_part((da.shape[1], db.shape[2]), da.dtype)
        np.matmul(da[0], db[1], out=imag)
        imag += da[1] @ db[0]
        return product
    if derivative_parts_wanted() and _real_or_complex_matrix(a) and _real_or_complex_matrix(b):
        da, db = a.data[0], b.data[0]
        real = np.result_type(da.real.dtype, db.real.dtype)
        product, imag = derivative_part((da.shape[0], db.shape[1]), real)
        gemm.imaginary_part(da, db, out=imag)
        return product
    matrices = _real_or_complex_matrix(a) and _real_or_complex_matrix(b)
    if into is not None and matrices and a.data.dtype == b.data.dtype:
        # a view: a filter bank's (O, C*kh*kw)
        out = into.free_slot((a.shape[0], b.shape[1]), a.data.dtype)
        if out is not None:
            np.matmul(a.data[0], b.data[0], out=out)
            return Tensor(out[None])
    if matrices:  # NumPy operands (`_real_or_complex_matrix`)
        return matmul_by_terms(a, b)
    return a @ b


def add_to_fresh(y: Tensor, b: Tensor) -> Tensor:
    """``y + b`` for a fresh result ``y`` of the layer's own (a GEMM's) that nothing else
    holds: written into y, without a new array, when y's components hold the sum already
    (b broadcasts to y's shape, b's order is at most y's, in the same layout, and its
    dtype fits y's); else a new tensor."""
    yd, bd = y.data, b.data
    if (
        isinstance(yd, np.ndarray)
        and type(bd) is type(yd)
        and b.order <= y.order
        and b.one_direction == y.one_direction
        and yd.flags.writeable
        and (bd.dtype == yd.dtype or yd.dtype == np.result_type(yd.dtype, bd.dtype))
        and _broadcasts_to(b.shape, y.shape)
    ):
        yd[: len(bd)] += bd.reshape(len(bd), *(1,) * (y.ndim - b.ndim), *b.shape)
        return y
    return y + b


def _broadcasts_to(shape: tuple[int, ...], target: tuple[int, ...]) -> bool:
    """Whether ``shape`` broadcasts to ``target`` itself: a trailing part of it (a bias)
    without NumPy's general rule, which costs more than a small layer's add."""
    if len(shape) <= len(target) and target[len(target) - len(shape) :] == shape:
        return True
    return np.broadcast_shapes(shape, target) == target


def derivative_part(shape: tuple[int, ...], dtype) -> tuple[Tensor, np.ndarray]:
    """An order-1 tensor with a zero real part, in the one-direction layout (real part,
    i-part), and its i-part for the caller to fill: half the memory of a complex array
    whose real part is zero, and the i-part contiguous."""
    data = np.empty((2, *shape), dtype=dtype)
    data[0] = 0
    return Tensor(data), data[1]


def real_or_order_one(data) -> bool:
    """NumPy component data of one real or complex (order-1) component: what the CPU's
    order-0 and order-1 fast paths of a layer take."""
    return isinstance(data, np.ndarray) and data.shape[0] == 1 and data.dtype.kind in "fc"


def _order_one_matrix(t: Tensor) -> bool:
    """A 2-D NumPy tensor of order 1 in the one-direction layout."""
    return t.ndim == 2 and len(t.data) == 2 and isinstance(t.data, np.ndarray) and t.one_direction


def _real_or_complex_matrix(t: Tensor) -> bool:
    return t.ndim == 2 and len(t.data) == 1 and isinstance(t.data, np.ndarray)


def active_tracers() -> list:
    """The tracers at work in this thread (``mcnet.nn.graph``), innermost last: while one
    is, a composite's forward sees placeholders, and reading a parameter's value or a buffer
    cannot be recorded.  None on top: a leaf's forward runs on example inputs for the
    trace, and may read them."""
    try:
        return _THREAD.tracers
    except AttributeError:
        _THREAD.tracers = []
        return _THREAD.tracers


def _tracing() -> bool:
    tracers = active_tracers()
    return bool(tracers) and tracers[-1] is not None


class Untraceable(TypeError):
    """An operation in a composite's forward that the trace cannot record."""


class ShapesNeeded(Untraceable):
    """A forward asks for a shape while it is traced without example inputs: it is traced
    again at its first call, for the shapes of that call's inputs."""


class Parameter:
    """A learnable array: its value (a Tensor of any order) and its accumulated gradient.

    ``slot``, while a caller sets it (``Objective`` in a real backward pass), is a NumPy array
    of the parameter's shape that a layer's backward may write the first gradient into
    (``free_slot``): the parameter's piece of a flat gradient vector, which then needs no copy."""

    __slots__ = ("_value", "grad", "slot")

    def __init__(self, data: Any) -> None:
        self.value = tensor(data) if not isinstance(data, Tensor) else data
        self.grad: Tensor | None = None
        self.slot: np.ndarray | None = None

    @property
    def value(self) -> Tensor:
        if _tracing():  # the value read now would be replayed for every later input
            raise active_tracers()[-1].refuse(
                f"it reads the value of a parameter of shape {self._value.shape}"
            )
        return self._value

    @value.setter
    def value(self, value: Tensor) -> None:
        self._value = value

    @property
    def shape(self) -> tuple[int, ...]:
        # a shape is fixed by the module's structure, not the value: a trace may read it
        return tuple(self._value.data.shape[1:])

    def numel(self) -> int:
        return math.prod(self.shape)

    def accumulate(self, grad: Tensor) -> None:
        self.grad = grad if self.grad is None else self.grad + grad

    def free_slot(self, shape: tuple[int, ...], dtype) -> np.ndarray | None:
        """``slot`` as an array of ``shape`` (a view; its leading axis the slot's), when the
        first gradient of this backward, of ``dtype``, can be written straight into it."""
        slot = self.slot
        if slot is None or self.grad is not None or slot.dtype != dtype:
            return None
        if slot.shape[0] != shape[0] or slot.size != math.prod(shape):
            return None
        return slot.reshape(shape) if slot.flags.c_contiguous else None

    def __repr__(self) -> str:
        return f"Parameter(shape={self.shape}, order={self.value.order})"


class Module:
    """Base class of every layer, loss and network."""

    # Set in __init__ through object.__setattr__, which bypasses the registration below.
    _parameters: dict[str, Parameter]
    _buffers: dict[str, np.ndarray]
    _modules: dict[str, Module]
    training: bool
    saved: Any
    _graph: Graph | None
    _untraceable: str | None
    _graphs_by_shape: dict[Any, Graph] | None
    input_grad_needed: bool

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_buffers", {})
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "saved", None)
        object.__setattr__(self, "_graph", None)
        # why the forward could not be traced (then the module is forward-only), once known
        object.__setattr__(self, "_untraceable", None)
        # for a forward that reads shapes: its graphs by the shapes of the inputs
        object.__setattr__(self, "_graphs_by_shape", None)
        # set by the graph while running backward: False when the caller needs only the
        # parameter gradients, so a layer may return None instead of its input gradient
        object.__setattr__(self, "input_grad_needed", True)

    # --- registration: attributes that are Parameters or Modules are tracked by name ---
    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, Parameter):
            self._parameters[name] = value
            _STRUCTURE_VERSION[0] += 1
        elif isinstance(value, Module):
            self._modules[name] = value
            _STRUCTURE_VERSION[0] += 1
        object.__setattr__(self, name, value)

    def register_buffer(self, name: str, value: np.ndarray) -> None:
        """A named real array that is saved in the state dict but not learned."""
        self._buffers[name] = np.asarray(value)

    def buffer(self, name: str) -> np.ndarray:
        if _tracing():  # the value read now would be replayed for every later input
            raise active_tracers()[-1].refuse(f"it reads the buffer {name!r}")
        return self._buffers[name]

    # --- the computation -------------------------------------------------------------------
    def forward(self, *inputs: Any, **kwargs: Any) -> Tensor:
        """Leaf modules override this, with their own parameters; composites call their
        submodules in it."""
        raise NotImplementedError

    def backward(self, grad_out: Tensor) -> Tensor | tuple[Tensor | None, ...] | None:
        """Gradient of the input(s) from the gradient of the output (leaves override);
        a leaf may return None when ``self.input_grad_needed`` is False."""
        return self._traced_graph().backward(grad_out)

    def backward_parameters(self, grad_out: Tensor) -> None:
        """Accumulate the parameter gradients only; input gradients that nothing needs
        (those of the data) are skipped where a layer can skip them."""
        if not self.is_leaf():
            self._traced_graph().backward(grad_out, input_grads=False)
            return
        object.__setattr__(self, "input_grad_needed", False)
        try:
            run_backward(self, grad_out)
        finally:
            object.__setattr__(self, "input_grad_needed", True)

    def map_saved(self, transform: Callable[[Any], Any]) -> None:
        """Replace what the last forward kept for backward (every leaf call's ``saved``) by
        ``transform(saved)``."""
        if self.is_leaf():
            object.__setattr__(self, "saved", transform(self.saved))
        else:
            self._traced_graph().map_saved(transform)

    def has_backward(self) -> bool:
        """Whether the module's class writes its own ``backward``."""
        return type(self).backward is not Module.backward

    def is_leaf(self) -> bool:
        """Whether a call runs this module's own ``forward``: it has a hand-written
        ``backward``, or it is forward-only (its forward could not be traced)."""
        if self.has_backward():
            return True
        self._trace()
        return self._graph is None and self._graphs_by_shape is None

    def graph(self):
        """The traced graph of a composite (built on first use): for a forward that reads
        the shapes of its values, the graph of its last call; None for a forward-only
        module."""
        if not self.has_backward():
            self._trace()
        return self._graph

    def _trace(self) -> None:
        """Trace the forward on first use: one graph for every input; or, if the forward
        reads shapes, one graph per input shapes, traced at the first call with them
        (``_run_graph``); or none, forward-only."""
        if (
            self._graph is not None
            or self._untraceable is not None
            or (self._graphs_by_shape is not None)
        ):
            return
        from mcnet.nn.graph import Graph

        try:
            object.__setattr__(self, "_graph", Graph.trace(self)[0])
        except ShapesNeeded:
            object.__setattr__(self, "_graphs_by_shape", {})
        except Untraceable as reason:
            self.mark_untraceable(str(reason))

    def _run_graph(self, inputs: tuple[Tensor, ...]) -> Tensor | None:
        """The call through the traced graph (None if the module turns out forward-only)."""
        graph = self._graph
        if self._graphs_by_shape is not None:
            if graph is not None:  # backward reads the last call's graph only
                graph._saved = []
            key = tuple(x.shape for x in inputs)
            graph = self._graphs_by_shape.get(key)
            if graph is None:
                from mcnet.nn.graph import Graph

                try:
                    graph, out = Graph.trace(self, examples=inputs)
                except Untraceable as reason:
                    self.mark_untraceable(str(reason))
                    return None
                self._graphs_by_shape[key] = graph
                object.__setattr__(self, "_graph", graph)
                return out  # the trace ran the forward on these inputs
            object.__setattr__(self, "_graph", graph)
        assert graph is not None  # traced above, or kept from an earlier call
        return graph.forward(*inputs)

    def mark_untraceable(self, reason: str) -> None:
        """Make the module forward-only, for ``reason`` (said by its backward's error)."""
        object.__setattr__(self, "_untraceable", reason)
        object.__setattr__(self, "_graph", None)
        object.__setattr__(self, "_graphs_by_shape", None)

    def _traced_graph(self):
        if self.is_leaf():
            name = type(self).__name__
            why = (
                f": its forward cannot be traced ({self._untraceable})"
                if (self._untraceable)
                else ""
            )
            raise NotImplementedError(
                f"{name} has no backward{why}. It is forward-only: value, curvature and "
                f"directional work, gradients and H v do not. Write {name}.backward(grad_out) "
                "(see nn.Module), or build its forward from modules, + - * /, reshape and "
                "mc.<function> calls on their outputs, and nn.Elementwise, which the trace "
                "differentiates"
            )
        if self._graph is None:
            raise RuntimeError("backward needs a forward pass first")
        return self._graph

    def __call__(self, *inputs: Any) -> Tensor:
        from mcnet.nn.graph import Tracer, is_tracing

        if is_tracing(inputs):
            return Tracer.record(self, inputs)
        inputs = tuple(as_tensor(x) for x in inputs)
        if not self.is_leaf():
            out = self._run_graph(inputs)
            if out is not None:
                return out
        return self.forward(*inputs)

    # --- parameters and state -----------------------------------------------------------------
    def named_children(self) -> Iterator[tuple[str, Module]]:
        yield from self._modules.items()

    def children(self) -> Iterator[Module]:
        yield from self._modules.values()

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator[Module]:
        for _, m in self.named_modules():
            yield m

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """Parameters in PyTorch's order: own first, then each child's, depth first."""
        for name, p in self._parameters.items():
            yield (f"{prefix}.{name}" if prefix else name), p
        for name, child in self._modules.items():
            yield from child.named_parameters(f"{prefix}.{name}" if prefix else name)

    def parameters(self) -> list[Parameter]:
        # every evaluation asks several times, and on a small network the walks were a
        # visible part of a pass: redone only after a Parameter or a Module was registered
        cached = self.__dict__.get("_parameter_list")
        if cached is None or cached[0] != _STRUCTURE_VERSION[0]:
            cached = (_STRUCTURE_VERSION[0], [p for _, p in self.named_parameters()])
            object.__setattr__(self, "_parameter_list", cached)
        return list(cached[1])

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, np.ndarray]]:
        for name, b in self._buffers.items():
            yield (f"{prefix}.{name}" if prefix else name), b
        for name, child in self._modules.items():
            yield from child.named_buffers(f"{prefix}.{name}" if prefix else name)

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    def state_dict(self) -> dict[str, np.ndarray]:
        """Parameters and buffers as real NumPy arrays, in PyTorch's order and names."""
        state: dict[str, np.ndarray] = {}
        for prefix, m in self.named_modules():
            for name, p in m._parameters.items():
                state[f"{prefix}.{name}" if prefix else name] = p.value.to("cpu").numpy().copy()
            for name, b in m._buffers.items():
                state[f"{prefix}.{name}" if prefix else name] = np.array(b, copy=True)
        return state

    def load_state_dict(self, state: dict[str, Any], strict: bool = True) -> None:
        """Load real arrays by name; shapes must match.  Nothing changes if any entry is bad."""
        own = self.state_dict()
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        if strict and (missing or unexpected):
            raise KeyError(f"state dict mismatch: missing {missing}, unexpected {unexpected}")
        staged = {}
        for key, value in state.items():
            if key not in own:
                continue
            arr = np.asarray(value.detach().cpu().numpy() if hasattr(value, "detach") else value)
            if arr.shape != own[key].shape:
                raise ValueError(
                    f"state dict entry {key!r} has shape {arr.shape}; expected {own[key].shape}"
                )
            staged[key] = arr
        for prefix, m in self.named_modules():
            for name, p in m._parameters.items():
                key = f"{prefix}.{name}" if prefix else name
                if key in staged:
                    p.value = tensor(staged[key], dtype=p.value.dtype, device=p.value.device)
            for name in list(m._buffers):
                key = f"{prefix}.{name}" if prefix else name
                if key in staged:
                    m._buffers[name] = staged[key].astype(m._buffers[name].dtype)

    def train(self, mode: bool = True) -> Module:
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self) -> Module:
        return self.train(False)

    def to(self, device: str | None = None, dtype: Any = None) -> Module:
        """Move (and/or cast) every parameter in place; returns self."""
        for p in self.parameters():
            value = p.value if dtype is None else p.value.astype(dtype)
            p.value = value if device is None else value.to(device)
            p.grad = None
        return self

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        if not self._modules:
            return f"{type(self).__name__}({self.extra_repr()})"
        lines = [
            f"  ({name}): {child!r}".replace("\n", "\n  ") for name, child in self._modules.items()
        ]
        return f"{type(self).__name__}(\n" + "\n".join(lines) + "\n)"


def run_backward(module: Module, grad_out: Tensor) -> Any:
    """``module.backward(grad_out)``, warning when a parameter of the module that had no
    gradient still has none: a backward that forgets ``p.accumulate(...)`` would otherwise
    leave a silently zero gradient.  A warning, not an error, so that a gradient check
    (``mcnet.testing.check_module``) can go on to measure and name it."""
    missing = [name for name, p in module._parameters.items() if p.grad is None]
    grad_in = module.backward(grad_out)
    missing = [name for name in missing if module._parameters[name].grad is None]
    if missing:
        name = type(module).__name__
        warnings.warn(
            f"{name}.backward gave no gradient to its parameter(s) {', '.join(missing)}, "
            f"taken as zero: add self.{missing[0]}.accumulate(<gradient of the loss in "
            f"{missing[0]}>) to {name}.backward (zeros for a parameter the output does not "
            "depend on)",
            UnaccumulatedGradientWarning,
            stacklevel=2,
        )
    return grad_in


@contextlib.contextmanager
def call_state_set_aside(*roots: Module) -> Iterator[None]:
    """Within the block the modules under ``roots`` hold nothing of their last evaluation
    (every leaf's ``saved``, every graph's per-call contexts), which can be many times the
    parameters: for copying or pickling them. Put back on the way out."""
    modules: dict[int, Module] = {}
    graphs: dict[int, Any] = {}
    for root in roots:
        for m in root.modules():
            modules[id(m)] = m
            for graph in [m._graph, *(m._graphs_by_shape or {}).values()]:
                if graph is not None:
                    graphs[id(graph)] = graph
                    # the recorded operations are modules of the graph, not of the network
                    modules.update((id(step.module), step.module) for step in graph.steps)
    kept = [(m, m.saved) for m in modules.values()]
    kept_graphs = [(graph, graph._saved) for graph in graphs.values()]
    for m, _ in kept:
        object.__setattr__(m, "saved", None)
    for graph, _ in kept_graphs:
        graph._saved = []
    try:
        yield
    finally:
        for m, saved in kept:
            object.__setattr__(m, "saved", saved)
        for graph, graph_saved in kept_graphs:
            graph._saved = graph_saved
