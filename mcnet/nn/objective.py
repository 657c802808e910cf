"""`Objective`: a network's loss as a function of its flat parameter vector w.

f(w) = loss(module(inputs), targets) on a batch ``(inputs, targets)``.  Derivatives come
from the modules' own forward and backward run on multicomplex parameters:

- gradient: one real forward + backward;
- H v (and the gradient, for free): one forward + backward at the complex point w + i h v;
  the gradient's i-part is h H v exactly up to O(h^3), with no subtraction (CSDD); ``hvp``
  alone builds only that part of the weight-gradient products (``derivative_parts_only``);
- v^T H v: one bicomplex forward at w + h (i_1 + i_2) v, the i_1 i_2 part over h^2 (CSDD2);
- d^k f(w)[v_1, ..., v_k]: one order-k forward.

The data stays real (order 0): only the parameters carry imaginary parts, so the first
layer multiplies real data by multicomplex weights, which the core does at real cost.
Every method puts the module's parameters (values and gradients) back as they were, even
when it raises.

Every method is a pure function of w: none updates BatchNorm's running statistics, in any
mode, whatever passes it runs.  ``update_running_statistics(w, batch)`` is the one call
that does (``mcnet.fit`` makes it once per training step), see ``mcnet.nn.batchnorm``.

``hvp``, ``grad_and_hvp`` and ``curvature`` take one direction v of shape (n,) or a block
V of shape (k, n), one direction per row.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from mcnet.algebra.multicomplex import array_module
from mcnet.derivatives import default_step, multicomplex_step, normal_exponents, perturb
from mcnet.functions import concatenate, zeros
from mcnet.nn.batchnorm import _BatchNorm, running_statistics_frozen
from mcnet.nn.loss import as_loss
from mcnet.nn.module import Module, derivative_parts_only
from mcnet.nn.vector import vector_to_parameters
from mcnet.tensor import Tensor, _complex_of, tensor


class Objective:
    """The loss of ``module`` under ``loss`` as a function of the flat parameter vector.

    ``loss`` is a loss module (``nn.CrossEntropyLoss()``, ...) or a function
    ``(outputs, targets) -> scalar`` built from mcnet operations (traced, see
    ``nn.loss.FunctionLoss``).  The methods never update BatchNorm's running statistics;
    ``update_running_statistics`` does.
    """

    def __init__(self, module: Module, loss: Any, *, keep_on_device: bool = False) -> None:
        self.module = module
        self.loss = as_loss(loss)
        # Solvers keep their vectors where the parameters are (CuPy for "cuda"); other
        # users get NumPy arrays.
        self.keep_on_device = keep_on_device
        self._perturbed: Any = None  # the buffer of w + i h v, see _perturb

    # --- the public derivatives (docs/api.md §3) --------------------------------------------
    def value(self, w, batch) -> float:
        """f(w)."""
        return float(self._evaluate(self._point(w), batch, backward=False)[0].real)

    def value_and_grad(self, w, batch) -> tuple[float, np.ndarray]:
        """(f(w), grad f(w)) by one real forward and backward."""
        loss, grad = self._evaluate(self._point(w), batch, backward=True)
        assert grad is not None  # a backward pass gives one
        return float(loss.real), self._out(grad.data[0])  # a fresh array: no copy

    def grad_and_hvp(self, w, v, batch) -> tuple[np.ndarray, np.ndarray]:
        """(grad f(w), H v) from one complex forward and backward at w + i h v; for a block
        V (k, n), (grad f(w), the k products H v as rows)."""
        return self.value_grad_and_hvp(w, v, batch)[1:]

    def value_grad_and_hvp(self, w, v, batch) -> tuple[float, np.ndarray, np.ndarray]:
        """(f(w), grad f(w), H v) from one complex forward and backward at w + i h v: the
        real parts are f and its gradient at w up to O(h^2), far below roundoff.  A block
        V (k, n) gives H v per row, (k, n)."""
        w = self._point(w)
        block = self._block(v, w)
        if block is not None:
            return self._block_value_grad_and_hvp(w, block, batch)
        return self._value_grad_and_hvp_along(w, self._direction(v, w, "v"), batch)

    def _value_grad_and_hvp_along(self, w: Tensor, v, batch) -> tuple[float, Any, Any]:
        v, step, divisor = _step_along(v, default_step(w.dtype, 1))
        loss, grad = self._evaluate(self._perturb(w, v, step), batch, backward=True)
        assert grad is not None  # a backward pass gives one
        # Multiplying by a power of two is exact: Hv = coef_i(grad) / (h * scale).
        hv = grad.coef((1,)) * (1.0 / divisor)
        return float(loss.real), self._out(grad.real), self._out(hv)

    def _hvp_along(self, w: Tensor, v, batch):
        """H v alone from one complex pass: each parameter's i-part, scaled, written straight
        into the flat result (no flat complex gradient on the way)."""
        v, step, divisor = _step_along(v, default_step(w.dtype, 1))

        def scaled_i_parts(params, point: Tensor):
            xp = array_module(point.data)
            out = xp.empty(point.shape, dtype=point.dtype)
            scale = point.dtype.type(1.0 / divisor)  # a power of two: exact
            start = 0
            for p in params:
                piece = out[start : start + p.numel()]
                start += p.numel()
                if p.grad is None or p.grad.order == 0:
                    piece[...] = 0
                    continue
                data = p.grad.data  # coef((1,)) as a view: data[0]'s i-part, or s_1
                i_part = data[0].imag if data.dtype.kind == "c" else data[1]
                xp.multiply(i_part, scale, out=piece.reshape(i_part.shape))  # no copy of i_part
            return out

        return self._out(self._evaluate(self._perturb(w, v, step), batch, True, scaled_i_parts)[1])

    def hvp(self, w, v, batch) -> np.ndarray:
        """H v from one complex forward and backward at w + i h v; for a block V (k, n),
        H v per row, (k, n).  The parameters' gradient products keep only their i-part
        (``nn.module.derivative_parts_only``): the gradient itself is not returned."""
        w = self._point(w)
        block = self._block(v, w)
        with derivative_parts_only():
            if block is None:
                return self._hvp_along(w, self._direction(v, w, "v"), batch)
            if not block:
                return self._out(array_module(w.data).zeros((0,) + w.shape, dtype=w.dtype))
            rows = [self._hvp_along(w, row, batch) for row in block]
            return array_module(rows[0]).stack(rows)

    def curvature(self, w, v, batch) -> float | np.ndarray:
        """v^T H v from one bicomplex forward at w + h (i_1 + i_2) v; for a block V (k, n),
        v^T H v per row, (k,)."""
        point = self._point(w)
        block = self._block(v, point)
        if block is None:
            return self.directional(point, [v, v], batch)
        return np.array([self.directional(point, [row, row], batch) for row in block])

    def directional(self, w, directions: Sequence, batch) -> float:
        """d^k f(w)[v_1, ..., v_k], k = len(directions), from one order-k forward."""
        w = self._point(w)
        directions = [self._direction(v, w, f"direction {j}") for j, v in enumerate(directions)]
        if not directions:
            return self.value(w, batch)
        h = default_step(w.dtype, len(directions))

        def loss_at(point: Tensor) -> Tensor:
            return self._evaluate(point, batch, backward=False)[0]

        return float(multicomplex_step(loss_at, w, directions, h))

    def gauss_newton_product(self, w, v, batch) -> np.ndarray:
        """G v = J^T H_L J v (Martens 2010), J the Jacobian of the outputs, H_L the Hessian of
        the loss in the outputs; G is positive semi-definite for a convex loss.

        One complex forward at w + i h v carries h J v in the outputs' i-part and the loss's
        backward there carries h H_L J v in its i-part. J^T (H_L J v) is then the modules'
        backward of that real vector at w: in real arithmetic, from the real parts of what
        the forward kept (the forward at w, up to O(h^2), which is below roundoff), at half
        the cost of a backward through the complex values.
        """
        w = self._point(w)
        v, step, divisor = _step_along(self._direction(v, w, "v"), default_step(w.dtype, 1))
        inputs, targets = _unpack(batch)
        params = self.module.parameters()
        kept = [(p.value, p.grad) for p in params]
        point = self._perturb(w, v, step)
        try:
            with running_statistics_frozen():
                vector_to_parameters(point, self.module)
                self.loss(self.module(_as_data(inputs, point)), targets)
                hl_jv = self.loss.backward().coef((1,)) * (1.0 / divisor)
                vector_to_parameters(w, self.module)
                self.module.map_saved(_real_parts)
                for p in params:
                    p.grad = None
                slots = _slots(params, w)
                self.module.backward_parameters(tensor(hl_jv, dtype=w.dtype, device=w.device))
                flat = _gathered(params, slots, w)
                # real unless a layer kept complex values where _real_parts does not look
                return self._out(flat.data[0] if flat.order == 0 else flat.real)
        finally:
            for p, (value, grad) in zip(params, kept):
                p.value, p.grad, p.slot = value, grad, None

    def hessian(self, w, batch) -> np.ndarray:
        """The dense Hessian, one H e_j column per parameter, symmetrised (small models)."""
        w = self._point(w)
        rows = _host(self.hvp(w, np.eye(w.shape[0], dtype=w.dtype), batch))  # rows H e_j
        return (rows + rows.T) * 0.5

    def update_running_statistics(self, w, batch) -> None:
        """One real forward at w on the batch that updates the running statistics of every
        BatchNorm in train mode (PyTorch's once-per-forward rule); nothing to do, and no
        pass, without one."""
        if any(isinstance(m, _BatchNorm) and m.training for m in self.module.modules()):
            self._evaluate(self._point(w), batch, False, update_statistics=True)

    # --- machinery ------------------------------------------------------------------------
    def _block(self, v, w: Tensor) -> list | None:
        """The rows of a block of directions V (k, n), checked; None for one direction."""
        if np.ndim(v) != 2:
            return None
        rows = v.numpy() if isinstance(v, Tensor) else v
        return [self._direction(row, w, f"row {j} of V") for j, row in enumerate(rows)]

    def _block_value_grad_and_hvp(self, w: Tensor, block: list, batch) -> tuple[float, Any, Any]:
        """(f, grad f, H V) for the rows of a block: one complex pass per row, the value
        and gradient from the first (every row's real parts are them)."""
        if not block:
            value, grad = self.value_and_grad(w, batch)
            xp = array_module(w.data)
            return value, grad, self._out(xp.zeros((0,) + w.shape, dtype=w.dtype))
        passes = [self._value_grad_and_hvp_along(w, row, batch) for row in block]
        xp = array_module(passes[0][2])
        return passes[0][0], passes[0][1], xp.stack([hv for _, _, hv in passes])

    def _perturb(self, w: Tensor, v, step: float) -> Tensor:
        """w + i step v, written into one buffer kept for every call: the complex point is
        twice the parameters' size, and fresh pages of it cost more than filling them.
        Nothing outlives a call that reads it: the parameters are restored and
        the results are new arrays."""
        xp = array_module(w.data)
        shape, dtype = (1,) + w.shape, np.dtype(_complex_of(w.dtype))
        buffer = self._perturbed
        if (
            buffer is None
            or buffer.shape != shape
            or buffer.dtype != dtype
            or array_module(buffer) is not xp
        ):
            buffer = self._perturbed = xp.empty(shape, dtype=dtype)
        return perturb(w, [v], step, out=buffer)

    def _out(self, a):
        return a if self.keep_on_device else _host(a)

    def _dtype_and_device(self) -> tuple[np.dtype, str]:
        params = self.module.parameters()
        if not params:
            return np.dtype(np.float64), "cpu"
        return params[0].value.dtype, params[0].value.device

    def _point(self, w) -> Tensor:
        """w as an order-0 tensor of the parameters' dtype and device, checked for length."""
        dtype, device = self._dtype_and_device()
        expected = sum(p.numel() for p in self.module.parameters())
        if isinstance(w, Tensor):
            if w.order:
                raise ValueError(f"expected a real parameter vector, got an order-{w.order} tensor")
            w = w.data[0]
        elif array_module(w) is np:
            w = np.asarray(w)
        if w.shape != (expected,):
            raise ValueError(
                f"expected a parameter vector of shape ({expected},) for "
                f"{type(self.module).__name__}, got shape {w.shape}"
            )
        if device == "cpu" and isinstance(w, np.ndarray):
            # a view, not a copy (22 MB for a 2.8-million-parameter model): the parameters
            # are slices of it only during an evaluation, which never writes to them
            return Tensor(_aligned(w.astype(dtype, copy=False))[None])
        return tensor(w, dtype=dtype, device=device)

    @staticmethod
    def _direction(v, w: Tensor, name: str) -> np.ndarray:
        if isinstance(v, Tensor):
            v = v.data[0] if v.order == 0 else v.numpy()  # numpy() raises for order > 0
        elif array_module(v) is np or w.device == "cpu":
            v = np.asarray(_host(v))  # a CuPy v stays on the device for a "cuda" w
        if v.shape != w.shape:
            raise ValueError(
                f"expected {name} of the parameter vector's shape {w.shape}, got shape {v.shape}"
            )
        v = v.astype(w.dtype, copy=False)  # perturb moves it to w's device
        return _aligned(v) if isinstance(v, np.ndarray) else v

    def _evaluate(
        self,
        point: Tensor,
        batch,
        backward: bool,
        gradient: Callable[[list, Tensor], Any] | None = None,
        update_statistics: bool = False,
    ) -> tuple[Tensor, Any]:
        """Loss (and flat parameter gradient, or ``gradient(params, point)`` of the parameters
        after the backward pass) with the parameters set to ``point``; the running
        statistics stay as they are unless ``update_statistics``."""
        inputs, targets = _unpack(batch)
        params = self.module.parameters()
        kept = [(p.value, p.grad) for p in params]
        frozen = contextlib.nullcontext() if update_statistics else running_statistics_frozen()
        try:
            with frozen:
                vector_to_parameters(point, self.module)
                loss = self.loss(self.module(_as_data(inputs, point)), targets)
                if not backward:
                    return loss, None
                for p in params:
                    p.grad = None
                flat = _slots(params, point) if gradient is None else None
                self.module.backward_parameters(self.loss.backward())
                if gradient is not None:
                    return loss, gradient(params, point)
                return loss, _gathered(params, flat, point)
        finally:
            for p, (value, grad) in zip(params, kept):
                p.value, p.grad, p.slot = value, grad, None


def _unpack(batch):
    try:
        inputs, targets = batch
    except (TypeError, ValueError):
        raise ValueError(
            f"expected a batch (inputs, targets), got {type(batch).__name__}"
        ) from None
    shape = getattr(inputs, "shape", None)
    if shape is None and isinstance(inputs, (list, tuple)):
        shape = (len(inputs),)
    if shape and shape[0] == 0:
        raise ValueError(
            f"the batch is empty: inputs of shape {tuple(shape)} hold no examples; "
            "a batch needs at least one"
        )
    return inputs, targets


def _aligned(a: np.ndarray) -> np.ndarray:
    """``a``, or an aligned copy where its elements are not aligned to their size, as an
    array rebuilt from a network message can be.  NumPy hands unaligned operands to its own
    GEMM loop instead of BLAS, which sums in another order: the results would depend on
    where the bytes landed (a Dask worker's recomputed shard did not match its first sum)."""
    return a if a.flags.aligned else np.require(a, requirements="A")


def _as_data(x, point: Tensor) -> Tensor:
    """Input data as an order-0 tensor of the parameters' dtype (no copy when it already is)."""
    dtype, device = point.dtype, point.device
    if isinstance(x, Tensor):
        return x if x.dtype == dtype and x.device == device else x.astype(dtype).to(device)
    if isinstance(x, np.ndarray) and x.dtype == dtype and device == "cpu":
        return Tensor(_aligned(x)[None])  # a view: order-0 data, its array with a component axis
    return tensor(x, dtype=dtype, device=device)


def _slots(params, point: Tensor) -> np.ndarray | None:
    """For a real backward pass on the CPU: the flat gradient's buffer, with each parameter's
    ``slot`` set to its piece, so that a layer can write its gradient there (no copy into
    the flat vector afterwards); None otherwise."""
    if point.order or not isinstance(point.data, np.ndarray):
        return None
    flat = np.empty(point.shape, dtype=point.dtype)
    start = 0
    for p in params:
        p.slot = flat[start : start + p.numel()].reshape(p.shape)
        start += p.numel()
    return flat


def _gathered(params, flat: np.ndarray | None, point: Tensor) -> Tensor:
    """The flat gradient: in ``flat`` (from `_slots`), the pieces not written in place
    copied there; without it, `_flat_grad`."""
    if flat is None:
        return _flat_grad(params, point)
    for p in params:
        if p.grad is None:
            p.slot[...] = 0
        elif p.grad.order:  # a layer kept a complex gradient: the general path
            return _flat_grad(params, point)
        elif not np.may_share_memory(p.grad.data, p.slot):
            p.slot[...] = p.grad.data[0]
    return Tensor(flat[None])


def _flat_grad(params, point: Tensor) -> Tensor:
    """The parameter gradients as one flat tensor (zeros for unused parameters)."""
    pieces = [
        p.grad.reshape(-1) if p.grad is not None else zeros((p.numel(),), dtype=point.dtype)
        for p in params
    ]
    return concatenate(pieces, axis=0) if pieces else zeros((0,), dtype=point.dtype)


def _real_parts(saved: Any) -> Any:
    """``saved`` with every order-1 tensor in it (alone, or in tuples, lists and dataclasses),
    complex or in the one-direction layout, replaced by its real part (contiguous, so the
    backward's GEMMs read it at full speed), and every object with a ``real_part()`` (a
    convolution's planes) by that."""
    if callable(getattr(saved, "real_part", None)):
        return saved.real_part()
    if isinstance(saved, Tensor) and saved.order == 1:
        xp = array_module(saved.data)
        real = saved.data[:1] if saved.one_direction else saved.data.real  # (real, i-part)
        return Tensor(xp.ascontiguousarray(real))
    if isinstance(saved, (tuple, list)):
        return type(saved)(_real_parts(item) for item in saved)
    if dataclasses.is_dataclass(saved) and not isinstance(saved, type):
        fields = {f.name: _real_parts(getattr(saved, f.name)) for f in dataclasses.fields(saved)}
        return dataclasses.replace(saved, **fields)
    return saved


def _step_along(v, h: float) -> tuple[Any, float, float]:
    """(direction, step, divisor) for the complex step along v: the perturbation is
    step * direction = h (scale v), scale the power of two that brings v to max-norm about
    1, and a coefficient read off it is divided by h * scale (exact: powers of two). The
    scale goes into the step, sparing a copy of v."""
    size = max(float(v.max()), -float(v.min())) if v.size else 0.0
    if size == 0.0 or not math.isfinite(size):
        return v, h, h
    # exponents, not 2.0**e (which overflows for a subnormal v); e is kept where the divisor
    # h 2**e is a normal number of v's dtype (a subnormal or huge v: the perturbation is
    # then not quite h, which only the truncation error notices)
    lowest, largest = normal_exponents(v.dtype)
    step_exponent = math.frexp(h)[1] - 1
    e = min(max(-round(math.log2(size)), lowest - step_exponent), largest - step_exponent)
    divisor = math.ldexp(h, e)
    return v, divisor, divisor


def _host(a) -> np.ndarray:
    return a if array_module(a) is np else a.get()
