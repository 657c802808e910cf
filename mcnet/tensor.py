"""`mcnet.Tensor`: the user-facing array of multicomplex numbers.

A tensor of order n keeps one array ``data`` of shape ``(C, *shape)``: real with C = 1 for
order 0, complex with C = 2**(n-1) for order n >= 1 (see ``mcnet.algebra.multicomplex``).
The order is read off that array, so there is no state to keep in step.  The API layout
``parts`` (``2**n`` real coefficients, bit k of the index <-> unit i_{k+1}) is produced on
request; keeping the i_1 pair as one complex number lets order 1 run on plain NumPy complex
arithmetic and matrix products on complex GEMMs.

Every operation is one of four kinds, lifted to every order here and in ``mcnet.functions``:
- linear (reshape, indexing, sums, convolution's im2col): the same map on every component;
- bilinear (product, matmul, tensordot): the multicomplex product rule over a real/complex
  base product, ``algebra.mul``;
- analytic (exp, log, ...): the exact recursions in ``algebra.multicomplex``;
- branch on the real part (relu, max, clip): a real mask selects whole elements.
"""

from __future__ import annotations

import math
import numbers
import operator
import os
from collections.abc import Callable, Sequence

import numpy as np

from mcnet.algebra import fast_paths, kernels, symmetric
from mcnet.algebra import multicomplex as mc_alg
from mcnet.algebra.devices import cuda_module
from mcnet.algebra.multicomplex import array_module

# Arrays at least this large go through the fused kernels (mcnet.algebra.kernels) where
# one exists; below it the per-array recursion costs less than a kernel call.
FUSE_MIN_SIZE = 4096

_REAL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


_REFLECTED_OPERATORS = {
    "add": "__radd__", "subtract": "__rsub__", "multiply": "__rmul__", "divide": "__rtruediv__",
    "true_divide": "__rtruediv__", "matmul": "__rmatmul__", "power": "__rpow__",
    "less": "__gt__", "less_equal": "__ge__", "greater": "__lt__", "greater_equal": "__le__",
}  # fmt: skip
_MCNET_FUNCTIONS = {
    name: name
    for name in (
        "exp",
        "log",
        "log1p",
        "sqrt",
        "sin",
        "cos",
        "tan",
        "sinh",
        "cosh",
        "tanh",
        "arctan",
        "power",
        "maximum",
        "minimum",
        "matmul",
    )
} | {"absolute": "abs", "fabs": "abs"}


def _complex_of(real: np.dtype) -> np.dtype:
    return np.dtype(np.complex64) if real == np.float32 else np.dtype(np.complex128)


_REAL_OF = {np.dtype(t): np.dtype(np.float32) for t in (np.float32, np.complex64)} | {
    np.dtype(t): np.dtype(np.float64) for t in (np.float64, np.complex128)
}


def _real_of(dtype: np.dtype) -> np.dtype:
    real = _REAL_OF.get(dtype)  # every Tensor.dtype asks, several times per layer and pass
    if real is not None:
        return real
    return np.dtype(np.float32) if dtype in (np.float32, np.complex64) else np.dtype(np.float64)


def check_memory(nbytes: int, what: str) -> None:
    """Refuse up front to build an array larger than this machine's memory."""
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return
    if nbytes > total:
        raise MemoryError(
            f"{what} would need {nbytes:,} bytes ({nbytes / 2**30:.1f} GiB), "
            f"more than the {total:,} bytes of memory on this machine"
        )


# Operators implemented by the higher layer `mcnet.functions` (``**`` through exp and log,
# ``abs`` through the sign of the real part, ``@`` through the product rule's GEMMs), which
# installs them when it is imported, so that this module never imports it.
_OPERATORS: dict[str, Callable] = {}


def install_operators(**implementations: Callable) -> None:
    """Set the functions behind ``Tensor.__pow__`` (``power``), ``__abs__`` (``abs``) and
    ``__matmul__`` (``matmul``)."""
    _OPERATORS.update(implementations)


class Tensor:
    """An array of multicomplex numbers of order n >= 0 on "cpu" (NumPy) or "cuda" (CuPy)."""

    __slots__ = ("data",)
    __array_priority__ = 1000

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        """``ndarray op tensor`` arrives as a ufunc call and goes to the tensor's reflected
        operator; any other NumPy ufunc would drop the imaginary parts, so it is refused
        with the mcnet function to call instead."""
        name = ufunc.__name__
        reflected = _REFLECTED_OPERATORS.get(name)
        if reflected and method == "__call__" and not kwargs and inputs[-1] is self:
            return getattr(self, reflected)(inputs[0])
        instead = _MCNET_FUNCTIONS.get(name)
        raise TypeError(
            f"NumPy's {name} does not compute on mcnet Tensors (it would drop their imaginary "
            f"parts); use "
            + (
                f"mc.{instead}(...)"
                if instead
                else "mcnet's functions (mc.exp, mc.log, ...) and operators"
            )
            + " instead, or .real for the real part"
        )

    def __init__(self, data) -> None:
        """Wrap component data ``(C, *shape)``; users build tensors with ``mc.tensor`` or
        ``mc.from_parts``."""
        try:  # attribute reads, not getattr with defaults: every layer makes several
            count, kind = data.shape[0], data.dtype.kind
        except (AttributeError, IndexError, TypeError):
            count, kind = 0, ""
        if not count or kind not in "fc" or (kind == "c" and count & (count - 1)):
            raise TypeError(
                "Tensor(data) takes component data of shape (C, *shape): complex with C a "
                "power of two, or real (C = 1 for order 0, C = k + 1 for a one-direction "
                f"number), got {getattr(data, 'dtype', type(data))} of shape "
                f"{getattr(data, 'shape', None)}; use mc.tensor(...) or mc.from_parts(...)"
            )
        self.data = data

    # --- construction from components ---------------------------------------------------
    @classmethod
    def _from_comps(cls, comps: list) -> Tensor:
        xp = array_module(comps[0])
        if len(comps) > 1 and len({np.shape(c) for c in comps}) > 1:
            comps = xp.broadcast_arrays(*comps)
        if len(comps) == 1:  # orders 0 and 1: a view, no copy
            return cls(xp.asarray(comps[0])[None])
        # complex components: the general layout; real ones: a one-direction number
        dtype = np.result_type(*[c.dtype for c in comps])
        return cls(xp.stack([xp.asarray(c, dtype=dtype) for c in comps]))

    @property
    def comps(self) -> list:
        """The components as a list of views (see ``mcnet.algebra.multicomplex``)."""
        return list(self.data)

    # --- description ----------------------------------------------------------------------
    @property
    def order(self) -> int:
        if self.data.dtype.kind == "c":
            return len(self.data).bit_length()
        return len(self.data) - 1  # 0 for real numbers, k for a one-direction number

    @property
    def one_direction(self) -> bool:
        """Whether the tensor is held as a perturbation along one direction in every unit:
        k + 1 real coefficients, s_c for every product of c units (``algebra.symmetric``)."""
        return self.data.dtype.kind == "f" and len(self.data) > 1

    def general(self) -> Tensor:
        """The same numbers in the general layout of 2**(n-1) complex components."""
        if not self.one_direction:
            return self
        return Tensor._from_comps(symmetric.expand(self.comps))

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape[1:])

    @property
    def ndim(self) -> int:
        return self.data.ndim - 1

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def dtype(self) -> np.dtype:
        """The real base dtype (float32 or float64)."""
        return _real_of(self.data.dtype)

    @property
    def device(self) -> str:
        return "cuda" if array_module(self.data) is not np else "cpu"

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __repr__(self) -> str:
        return (
            f"Tensor(order={self.order}, shape={self.shape}, dtype={self.dtype.name}, "
            f"device={self.device!r}, real=\n{self.real!r})"
        )

    # --- views on the coefficients ----------------------------------------------------------
    @property
    def parts(self):
        """Array ``(2**n, *shape)``: index m holds the coefficient of prod(i_{k+1}, bit k of m)."""
        if self.order == 0:
            return self.data.copy()
        if self.one_direction:
            return self.general().parts
        xp = array_module(self.data)
        out = xp.empty((2 * len(self.data),) + self.shape, dtype=self.dtype)
        out[0::2] = self.data.real
        out[1::2] = self.data.imag
        return out

    @property
    def real(self):
        return self.data[0].real.copy() if self.order else self.data[0].copy()

    def coef(self, units: Sequence[int]):
        """Coefficient array of the product of the given (1-based, distinct) units."""
        units = tuple(int(u) for u in units)
        if any(u < 1 for u in units) or len(set(units)) != len(units):
            raise ValueError(f"units must be distinct integers >= 1, got {units}")
        if any(u > self.order for u in units):
            # a unit the number does not carry: its coefficient is zero
            return array_module(self.data).zeros(self.shape, dtype=self.dtype)
        m = sum(1 << (u - 1) for u in units)
        if self.data.dtype.kind == "f":  # order 0, or one direction: s_(number of units)
            return self.data[len(units)].copy()
        c = self.data[m >> 1]
        return (c.imag if m & 1 else c.real).copy()

    def numpy(self) -> np.ndarray:
        """The values as a NumPy array; only for order 0 (imaginary parts are never dropped)."""
        if self.order:
            raise TypeError(
                f"cannot convert an order-{self.order} multicomplex tensor to a real array: "
                "it would drop its imaginary parts; use .real, .parts or .coef(units)"
            )
        d = self.data[0]
        return d if array_module(d) is np else d.get()

    def __array__(self, dtype=None, copy=None):
        a = self.numpy()
        return a if dtype is None else a.astype(dtype)

    def item(self) -> float:
        if self.size != 1:
            raise ValueError(f"item() needs a tensor of one element, got shape {self.shape}")
        return float(self.numpy().reshape(()))

    def __float__(self) -> float:
        return self.item()

    def to(self, device: str) -> Tensor:
        """A copy on "cpu" (NumPy) or "cuda" (CuPy)."""
        if device == "cpu":
            d = self.data
            return Tensor(d.copy() if array_module(d) is np else d.get())
        if device == "cuda":
            return Tensor(cuda_module().asarray(self.data))
        raise ValueError(f'device must be "cpu" or "cuda", got {device!r}')

    def astype(self, dtype) -> Tensor:
        dtype = _check_dtype(dtype)
        target = _complex_of(dtype) if self.data.dtype.kind == "c" else dtype
        return Tensor(self.data.astype(target, copy=False))

    def copy(self) -> Tensor:
        return Tensor(self.data.copy())

    # --- arithmetic ---------------------------------------------------------------------------
    def __add__(self, other):
        return _binary(self, other, "add", lambda algebra: algebra.add)

    def __radd__(self, other):
        return _binary(other, self, "add", lambda algebra: algebra.add)

    def __sub__(self, other):
        return _binary(self, other, "sub", lambda algebra: algebra.sub)

    def __rsub__(self, other):
        return _binary(other, self, "sub", lambda algebra: algebra.sub)

    def __mul__(self, other):
        return _binary(self, other, "mul", lambda algebra: algebra.mul)

    def __rmul__(self, other):
        return _binary(other, self, "mul", lambda algebra: algebra.mul)

    def __truediv__(self, other):
        if isinstance(other, numbers.Real):  # by a real number: no inverse needed
            return Tensor(self.data / other)
        return _binary(self, other, "div", lambda algebra: algebra.div)

    def __rtruediv__(self, other):
        return _binary(other, self, "div", lambda algebra: algebra.div)

    def __matmul__(self, other):
        return _OPERATORS["matmul"](self, other)

    def __rmatmul__(self, other):
        return _OPERATORS["matmul"](other, self)

    def __pow__(self, exponent):
        return _OPERATORS["power"](self, exponent)

    def __rpow__(self, base):
        return _OPERATORS["power"](as_tensor(base, like=self), self)

    def __neg__(self) -> Tensor:
        return Tensor(-self.data)

    def __pos__(self) -> Tensor:
        return self

    def __abs__(self) -> Tensor:
        return _OPERATORS["abs"](self)

    # comparisons decide on real parts and give boolean arrays
    def __lt__(self, other):
        return self.real < _real_of_operand(other)

    def __le__(self, other):
        return self.real <= _real_of_operand(other)

    def __gt__(self, other):
        return self.real > _real_of_operand(other)

    def __ge__(self, other):
        return self.real >= _real_of_operand(other)

    # --- linear operations: the same map on every component ----------------------------------
    def __getitem__(self, key) -> Tensor:
        return Tensor(self.data[_component_key(key)])

    def __setitem__(self, key, value) -> None:
        value = as_tensor(value, like=self)
        if value.order > self.order:
            raise ValueError(
                f"cannot assign an order-{value.order} value into an order-{self.order} tensor "
                "(its imaginary parts would be lost); promote the target first"
            )
        if value.order and value.one_direction != self.one_direction:
            if self.one_direction:
                self.data = self.general().data
            value = value.general()
        xp = array_module(self.data)
        padded = xp.zeros((len(self.data),) + value.shape, dtype=self.data.dtype)
        padded[: len(value.data)] = value.data
        self.data[_component_key(key)] = padded

    def reshape(self, *shape) -> Tensor:
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return Tensor(self.data.reshape((len(self.data),) + tuple(shape)))

    def transpose(self, *axes) -> Tensor:
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        if not axes:
            axes = tuple(range(self.ndim))[::-1]
        axes = tuple(int(a) % self.ndim for a in axes)
        return Tensor(self.data.transpose((0,) + tuple(a + 1 for a in axes)))

    @property
    def T(self) -> Tensor:
        return self.transpose()

    def sum(self, axis=None, keepdims: bool = False) -> Tensor:
        return Tensor(self.data.sum(axis=_component_axis(axis, self.ndim), keepdims=keepdims))

    def mean(self, axis=None, keepdims: bool = False) -> Tensor:
        return Tensor(self.data.mean(axis=_component_axis(axis, self.ndim), keepdims=keepdims))

    def flatten(self) -> Tensor:
        return self.reshape(-1)


# --- coercion -----------------------------------------------------------------------------------


def _check_dtype(dtype) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype not in _REAL_DTYPES:
        raise TypeError(f"the base dtype must be float32 or float64, got {dtype}")
    return dtype


def tensor(data, dtype=None, device: str = "cpu") -> Tensor:
    """An order-0 tensor (order 1 for complex data); float64 unless data is float32 or dtype
    says so."""
    if isinstance(data, Tensor):
        t = data if dtype is None else data.astype(dtype)
        return t if t.device == device else t.to(device)
    if device not in ("cpu", "cuda"):
        raise ValueError(f'device must be "cpu" or "cuda", got {device!r}')
    xp = cuda_module() if device == "cuda" else np
    arr = xp.asarray(data)
    if dtype is None:
        dtype = np.float32 if arr.dtype in (np.float32, np.complex64) else np.float64
    dtype = _check_dtype(dtype)
    if arr.dtype.kind == "c":
        return Tensor(arr.astype(_complex_of(dtype))[None])
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"tensor data must be numeric, got dtype {arr.dtype}")
    return Tensor(arr.astype(dtype)[None])


def from_parts(parts, device: str | None = None) -> Tensor:
    """A tensor from its API-layout coefficients, an array of shape ``(2**n, *shape)``."""
    xp = array_module(parts)
    parts = xp.asarray(parts)
    count = parts.shape[0] if parts.ndim else 0
    if count < 1 or count & (count - 1):
        raise ValueError(
            f"parts must have a leading axis of length 2**n (n >= 0), got shape {parts.shape}"
        )
    dtype = np.float32 if parts.dtype == np.float32 else np.float64
    parts = parts.astype(dtype, copy=False)
    t = Tensor(parts.copy()) if count == 1 else Tensor(parts[0::2] + 1j * parts[1::2])
    if t.data.dtype.kind == "c":
        t.data = t.data.astype(_complex_of(np.dtype(dtype)), copy=False)
    return t if device is None or t.device == device else t.to(device)


def as_tensor(x, like: Tensor | None = None) -> Tensor:
    """Tensors pass through; Python numbers take ``like``'s dtype; arrays become order 0."""
    if isinstance(x, Tensor):
        return x
    if like is None:
        return tensor(x)
    xp = array_module(like.data)
    if isinstance(x, numbers.Number) and not isinstance(x, bool):
        arr = xp.asarray(x, dtype=_complex_of(like.dtype) if isinstance(x, complex) else like.dtype)
        return Tensor(arr[None])
    arr = xp.asarray(x)
    if arr.dtype.kind == "c":
        real = np.result_type(_real_of(arr.dtype), like.dtype)
        return Tensor(arr.astype(_complex_of(real))[None])
    if arr.dtype.kind in "biu":
        arr = arr.astype(like.dtype)
    elif arr.dtype.kind != "f":
        raise TypeError(f"cannot combine a tensor with data of dtype {arr.dtype}")
    return Tensor(arr[None])


def _common(a: Tensor, b: Tensor):
    """The algebra both operands live in, and their components in their common base dtype.

    One-direction numbers of one order combine with each other and with real numbers in
    ``algebra.symmetric``; anything else is done in the general layout.
    """
    if a.device != b.device:
        raise ValueError(f"operands live on different devices: {a.device} and {b.device}")
    algebra = algebra_of(a, b)
    if algebra is mc_alg:
        a, b = a.general(), b.general()
    real = np.result_type(a.dtype, b.dtype)
    return algebra, list(_cast_data(a, real)), list(_cast_data(b, real))


def _cast_data(t: Tensor, real: np.dtype):
    """``t``'s component data in the base dtype ``real`` (a view when it already is)."""
    return t.data.astype(_complex_of(real) if t.data.dtype.kind == "c" else real, copy=False)


def algebra_of(*tensors: Tensor):
    """``algebra.symmetric`` when one-direction numbers of one order meet only each other and
    real numbers; ``algebra.multicomplex`` (the general layout) otherwise."""
    if not any(t.one_direction for t in tensors):
        return mc_alg
    order = max(t.order for t in tensors)
    if all(t.order == 0 or (t.one_direction and t.order == order) for t in tensors):
        return symmetric
    return mc_alg


def _binary(a, b, name: str, op: Callable) -> Tensor:
    """``op(algebra)`` is the component-list function to apply in the operands' algebra, after
    the fast paths of the primitive ``name`` (`mcnet.algebra.fast_paths`)."""
    like = a if isinstance(a, Tensor) else b
    if _takes_over(b if like is a else a):
        return NotImplemented
    a, b = as_tensor(a, like), as_tensor(b, like)
    out = fast_paths.first(name, a, b)
    if out is not None:
        return out
    algebra, ca, cb = _common(a, b)
    return Tensor._from_comps(op(algebra)(ca, cb))


def _takes_over(x) -> bool:
    """Whether ``x`` does mcnet's operations itself (the placeholders that trace a module's
    forward): then ``tensor op x`` gives way to x's reflected operator."""
    return hasattr(type(x), "__mcnet_function__")


def _component_arrays(op: Callable) -> Callable[[Tensor, Tensor], Tensor | None]:
    """Two real or two complex (order-1) operands' operation on their component data
    directly: a pass's many small operations skip the algebra's dispatch (the same numbers:
    at orders 0 and 1 the algebra applies that real or complex operation)."""

    def run(a: Tensor, b: Tensor) -> Tensor | None:
        try:
            return Tensor(op(a.data, b.data))
        except ValueError:  # shapes that do not broadcast: the general path says which
            return None

    return run


def _fusable_product(a: Tensor, b: Tensor) -> bool:
    return (
        a.order == b.order
        and a.shape == b.shape
        and a.data.dtype == b.data.dtype
        and a.size >= FUSE_MIN_SIZE
        and kernels.applies("mul", a.order, a.one_direction, a.device)
    )


def _one_component(a: Tensor, b: Tensor) -> bool:
    """Both real numbers (order 0) or both complex (order 1), of one dtype on one device."""
    da, db = a.data, b.data
    return da.shape[0] == 1 == db.shape[0] and da.dtype == db.dtype and type(da) is type(db)


def _both_real(a: Tensor, b: Tensor) -> bool:
    """Both real numbers (order 0) of one dtype on one device."""
    return _one_component(a, b) and a.data.dtype.kind == "f"


# The fast paths of the arithmetic, in order (``fast_paths.first`` consults them).
fast_paths.register(
    "mul",
    _fusable_product,
    lambda a, b: Tensor(kernels.run("mul", a.order, a.data, b.data, one_direction=a.one_direction)),
)
fast_paths.register("add", _one_component, _component_arrays(operator.add))
fast_paths.register("sub", _one_component, _component_arrays(operator.sub))
fast_paths.register("mul", _one_component, _component_arrays(operator.mul))


def _real_of_operand(x):
    return x.real if isinstance(x, Tensor) else x


def _component_key(key):
    if isinstance(key, Tensor):
        raise TypeError("index with integers, slices or boolean/integer arrays, not a Tensor")
    return (slice(None),) + (key if isinstance(key, tuple) else (key,))


def _component_axis(axis, ndim: int):
    """Shift tensor axes past the leading component axis."""
    if axis is None:
        return tuple(range(1, ndim + 1))
    if isinstance(axis, (tuple, list)):
        return tuple(_check_axis(a, ndim) + 1 for a in axis)
    return _check_axis(axis, ndim) + 1


def _check_axis(axis: int, ndim: int) -> int:
    if not -ndim <= axis < max(ndim, 1):
        raise ValueError(f"axis {axis} is out of range for a tensor with {ndim} dimensions")
    return axis % ndim if ndim else 0
