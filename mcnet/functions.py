"""Functions on tensors: elementwise ones and reductions (``mc.exp``, ``mc.relu``, ...), and
products (``mc.matmul``, ``mc.tensordot``, ``mc.einsum``) with the lifting of linear and
bilinear maps to every order.

Analytic functions are exact for any argument in their domain (``mcnet.algebra``).
Branching functions decide on the real part and carry the whole multicomplex number of the
chosen branch.  Ties go to the first operand (``maximum``, ``minimum``, ``max``: the first
index), ``relu`` and ``elu`` take the ``x <= 0`` branch at 0, ``abs`` takes ``+z`` at 0.
"""

from __future__ import annotations

import builtins
import functools
import numbers
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from mcnet.algebra import fast_paths, gemm, kernels, loops, multicomplex, symmetric
from mcnet.algebra.multicomplex import array_module, sign_of_real
from mcnet.tensor import (
    FUSE_MIN_SIZE,
    Tensor,
    _binary,
    _both_real,
    _cast_data,
    _complex_of,
    _component_axis,
    algebra_of,
    as_tensor,
    check_memory,
    install_operators,
    tensor,
)

# Functions with a CPU path in ``algebra.loops`` (NumPy's SIMD ufuncs for the real-part
# functions, one Numba pass for the rest) at the orders it covers; None falls through.
_LOOPS = {"sigmoid": loops.sigmoid, "tanh": loops.tanh, "softplus": loops.softplus}


def _tensor(data) -> Tensor | None:
    return None if data is None else Tensor(data)


# ReLU's forward (the result and the mask Re x > 0) and backward (g where the mask holds) in
# one CPU pass at orders 0 and 1.
fast_paths.register(
    "relu_forward",
    lambda x: x.device == "cpu",
    lambda x: _tensor_and_mask(loops.relu(x.data)),
)
fast_paths.register(
    "relu_backward",
    lambda grad_out, positive: grad_out.device == "cpu" and len(grad_out.data) == 1,
    lambda grad_out, positive: _one_component(loops.select(positive, grad_out.data[0], 0)),
)


# ELU's forward (the result and the mask Re x > 0) in one CPU pass at orders 0 and 1 and on
# one-direction numbers of order 2, its backward at orders 0 and 1, for any dense layout (a
# convolution's channel-major output included).
fast_paths.register(
    "elu_forward",
    lambda x, alpha: x.device == "cpu",
    lambda x, alpha: _tensor_and_mask(loops.elu(x.data, alpha, symmetric.nilpotent())),
)
fast_paths.register(
    "elu_backward",
    lambda grad_out, positive, y, alpha: grad_out.device == "cpu" and y.device == "cpu",
    lambda grad_out, positive, y, alpha: _tensor(
        loops.elu_backward(grad_out.data, positive, y.data, alpha)
    ),
)


def _tensor_and_mask(result):
    return None if result is None else (Tensor(result[0]), result[1])


def _one_component(data) -> Tensor | None:
    return None if data is None else Tensor(data[None])


# Sigmoid's backward g * y (1 - y) in one CPU pass at orders 0 and 1 (same layout and dtype).
fast_paths.register(
    "sigmoid_backward",
    lambda grad_out, y: y.device == "cpu",
    lambda grad_out, y: _tensor(loops.sigmoid_backward(grad_out.data, y.data)),
)


ANALYTIC: list[str] = []  # the names `_analytic` has lifted, in order


def _analytic(name: str, doc: str) -> Callable[[Tensor], Tensor]:
    ANALYTIC.append(name)
    # the fast paths of `name`, in order: the exact Taylor mode (nilpotent units, which no
    # fused path knows), the CPU loops, the fused kernels
    fast_paths.register(
        name,
        lambda x: x.one_direction and symmetric.nilpotent(),
        lambda x: Tensor._from_comps(getattr(symmetric, name)(x.comps)),
    )
    if name in _LOOPS:
        fast_paths.register(
            name, lambda x: x.device == "cpu", lambda x: _tensor(_LOOPS[name](x.data))
        )
    fast_paths.register(
        name,
        lambda x: (
            x.size >= FUSE_MIN_SIZE and kernels.applies(name, x.order, x.one_direction, x.device)
        ),
        lambda x: Tensor(kernels.run(name, x.order, x.data, one_direction=x.one_direction)),
    )

    def lifted(x) -> Tensor:
        x = as_tensor(x)
        out = fast_paths.first(name, x)
        return out if out is not None else Tensor._from_comps(getattr(algebra_of(x), name)(x.comps))

    lifted.__name__ = name
    lifted.__qualname__ = name
    lifted.__doc__ = doc
    return lifted


exp = _analytic("exp", "Exponential, exact for any multicomplex argument.")
log = _analytic("log", "Principal natural logarithm.")
log1p = _analytic("log1p", "log(1 + x), exact for tiny real x at orders 0 and 1.")
sqrt = _analytic("sqrt", "Principal square root.")
sin = _analytic("sin", "Sine.")
cos = _analytic("cos", "Cosine.")
tan = _analytic("tan", "Tangent.")
sinh = _analytic("sinh", "Hyperbolic sine.")
cosh = _analytic("cosh", "Hyperbolic cosine.")
tanh = _analytic("tanh", "Hyperbolic tangent (no overflow for large real parts).")
arctan = _analytic("arctan", "Principal arctangent.")
sigmoid = _analytic("sigmoid", "Logistic function 1 / (1 + exp(-x)).")
softplus = _analytic("softplus", "log(1 + exp(x)), stable for large |x|.")
erf = _analytic("erf", "Error function (Taylor series about the real part).")
expm1 = _analytic("expm1", "exp(x) - 1, exact for tiny x.")
arcsin = _analytic("arcsin", "Principal arcsine (real domain [-1, 1]).")
arccos = _analytic("arccos", "Principal arccosine (real domain [-1, 1]).")
arctanh = _analytic("arctanh", "Inverse hyperbolic tangent (real domain (-1, 1)).")
arcsinh = _analytic("arcsinh", "Inverse hyperbolic sine.")


def power(x, p) -> Tensor:
    """x**p for an integer, real or tensor exponent p (principal branch for non-integers)."""
    x = as_tensor(x, p if isinstance(p, Tensor) else None)
    if isinstance(p, numbers.Real):
        return Tensor._from_comps(algebra_of(x).power(x.comps, p))
    p = as_tensor(p, x)
    if p.order == 0 and x.order == 0:
        return Tensor(array_module(x.data).power(*_binary_data(x, p)))
    return exp(p * log(x))


def _binary_data(a: Tensor, b: Tensor):
    return a.data, b.data.astype(a.data.dtype, copy=False)


# --- branch on the real part ---------------------------------------------------------------


def where(condition, x, y) -> Tensor:
    """Elements of x where condition holds, else of y (whole multicomplex numbers)."""
    like = x if isinstance(x, Tensor) else y
    like = like if isinstance(like, Tensor) else None
    x, y = as_tensor(x, like), as_tensor(y, like)
    cond = condition.real if isinstance(condition, Tensor) else condition

    def select(algebra):
        return lambda a, b: algebra.where(array_module(a[0]).asarray(cond, dtype=bool), a, b)

    return _binary(x, y, "where", select)


def relu(x) -> Tensor:
    x = as_tensor(x)
    return where(~(x.real <= 0), x, 0.0)  # not `> 0`: NaN must pass through, never become 0


def elu(x, alpha: float = 1.0) -> Tensor:
    """x for Re x > 0, alpha (exp(x) - 1) elsewhere; exp sees only the negative branch."""
    x = as_tensor(x)
    positive = x.real > 0
    negative_part = where(positive, 0.0, x)
    return where(positive, x, alpha * (exp(negative_part) - 1.0))


def abs(x) -> Tensor:  # noqa: A001 - the API's name
    """sign(Re x) * x: the derivative of |x| is sign(x), never z/|z| (docs/numerics.md)."""
    x = as_tensor(x)
    return x * sign_of_real(x.comps)


install_operators(power=power, abs=abs)


def maximum(x, y) -> Tensor:
    """Elementwise maximum by real part; ties give x."""
    like = x if isinstance(x, Tensor) else y
    x, y = as_tensor(x, like), as_tensor(y, like)
    return where((x.real >= y.real) | _isnan(x.real), x, y)  # NaN in either one wins


def minimum(x, y) -> Tensor:
    """Elementwise minimum by real part; ties give x."""
    like = x if isinstance(x, Tensor) else y
    x, y = as_tensor(x, like), as_tensor(y, like)
    return where((x.real <= y.real) | _isnan(x.real), x, y)


def _isnan(a):
    return array_module(a).isnan(a)


def clip(x, a_min=None, a_max=None) -> Tensor:
    """Clamp by real part; at a bound x itself is kept (derivative 1, as PyTorch's clamp)."""
    x = as_tensor(x)
    if a_min is not None:
        x = maximum(x, a_min)
    if a_max is not None:
        x = minimum(x, a_max)
    return x


def max(x, axis=None, keepdims: bool = False) -> Tensor:  # noqa: A001 - the API's name
    """Maximum along an axis by real part, carrying the chosen element (first on ties)."""
    x = as_tensor(x)
    if axis is None:
        x, axis = x.reshape(-1), 0
    xp = array_module(x.data)
    index = xp.expand_dims(xp.argmax(x.real, axis=axis), axis)
    picked = xp.take_along_axis(x.data, index[None], axis=_component_axis(axis, x.ndim))
    out = Tensor(picked)
    return out if keepdims else Tensor(xp.squeeze(out.data, axis=_component_axis(axis, x.ndim)))


# --- reductions -----------------------------------------------------------------------------


def logsumexp(x, axis=-1, keepdims: bool = False) -> Tensor:
    """log(sum(exp(x))) shifted by the real maximum (a constant), so exp never overflows."""
    x = as_tensor(x)
    xp = array_module(x.data)
    shift = xp.max(x.real, axis=axis, keepdims=True)
    shift = xp.where(xp.isfinite(shift), shift, 0.0).astype(x.dtype)
    total = log(exp(x - shift).sum(axis=axis, keepdims=True)) + shift
    return total if keepdims else total.reshape(_drop_axes(total.shape, axis))


def log_softmax(x, axis=-1) -> Tensor:
    x = as_tensor(x)
    data = x.data
    if len(data) == 1 and isinstance(data, np.ndarray) and data.dtype.kind == "f":
        return Tensor(_log_softmax_real(data[0], axis)[None])
    return x - logsumexp(x, axis=axis, keepdims=True)


def _log_softmax_real(a: np.ndarray, axis) -> np.ndarray:
    """`log_softmax` of a real NumPy array: `logsumexp`'s operations in its order, on the
    array itself (a loss's logits: a dozen tensor operations cost more than the work)."""
    shift = np.max(a, axis=axis, keepdims=True)
    shift = np.where(np.isfinite(shift), shift, 0.0).astype(a.dtype)
    return a - (np.log(np.exp(a - shift).sum(axis=axis, keepdims=True)) + shift)


def softmax(x, axis=-1) -> Tensor:
    return exp(log_softmax(x, axis=axis))


def _drop_axes(shape: tuple, axis) -> tuple:
    axes = {a % len(shape) for a in (axis if isinstance(axis, (tuple, list)) else (axis,))}
    return tuple(n for i, n in enumerate(shape) if i not in axes)


def sum(x, axis=None, keepdims: bool = False) -> Tensor:  # noqa: A001 - NumPy's name
    return as_tensor(x).sum(axis=axis, keepdims=keepdims)


def mean(x, axis=None, keepdims: bool = False) -> Tensor:
    return as_tensor(x).mean(axis=axis, keepdims=keepdims)


def reshape(x, shape) -> Tensor:
    return as_tensor(x).reshape(shape)


def transpose(x, axes=None) -> Tensor:
    return as_tensor(x).transpose(*(axes or ()))


def concatenate(tensors: Sequence, axis: int = 0) -> Tensor:
    """Join tensors along an existing axis; orders promote to the highest."""
    parts = _same_order(tensors)
    xp = array_module(parts[0].data)
    axis = _component_axis(axis, parts[0].ndim)
    return Tensor(xp.concatenate([t.data for t in parts], axis=axis))


def stack(tensors: Sequence, axis: int = 0) -> Tensor:
    """Join tensors along a new axis; orders promote to the highest."""
    parts = _same_order(tensors)
    xp = array_module(parts[0].data)
    ndim = parts[0].ndim + 1
    return Tensor(xp.stack([t.data for t in parts], axis=_component_axis(axis, ndim)))


def _same_order(tensors: Sequence) -> list[Tensor]:
    if not tensors:
        raise ValueError("need at least one tensor")
    like = next((t for t in tensors if isinstance(t, Tensor)), None)
    ts = [as_tensor(t, like) for t in tensors]
    order = builtins.max(t.order for t in ts)
    if algebra_of(*ts) is symmetric:  # real ones join as s_0, with s_1.. = 0
        return [t if t.one_direction else _one_direction_of_real(t, order) for t in ts]
    return [embed(t, order) for t in ts]


def _one_direction_of_real(x: Tensor, order: int) -> Tensor:
    data = array_module(x.data).zeros((order + 1,) + x.shape, dtype=x.data.dtype)
    data[0] = x.data[0]
    return Tensor(data)


def embed(x, order: int) -> Tensor:
    """The same numbers as a tensor of a higher order (zero coefficients for the new units)."""
    x = as_tensor(x).general()
    if order < x.order:
        raise ValueError(f"cannot embed an order-{x.order} tensor into order {order}")
    if order == x.order:
        return x
    xp = array_module(x.data)
    count = 2 ** (order - 1)
    nbytes = count * x.size * 2 * x.dtype.itemsize
    check_memory(nbytes, f"an order-{order} tensor of shape {x.shape}")
    data = xp.zeros((count,) + x.shape, dtype=_complex_of(x.dtype))
    data[: len(x.data)] = x.data
    return Tensor(data)


def zeros(shape, order: int = 0, dtype=np.float64, device: str = "cpu") -> Tensor:
    """A tensor of zeros of the given order."""
    return embed(tensor(np.zeros(shape), dtype=dtype, device=device), order)


# --- linear and bilinear maps: lifting by kind ---------------------------------------------


def lift_linear(fn: Callable) -> Callable[..., Tensor]:
    """Lift a linear map of arrays (reshape, slicing, im2col, sums) to tensors of any order."""

    def lifted(t: Tensor, *args, **kwargs) -> Tensor:
        return Tensor._from_comps([fn(c, *args, **kwargs) for c in as_tensor(t).comps])

    lifted.__name__ = getattr(fn, "__name__", "linear")
    lifted.__doc__ = fn.__doc__
    return lifted


def lift_bilinear(
    base: Callable, batches_leading_axis: bool = False
) -> Callable[[Tensor, Tensor], Tensor]:
    """Lift a bilinear product of arrays (matmul, tensordot, convolution) to any order.

    ``batches_leading_axis`` says that ``base`` broadcasts over a leading batch axis (as
    matmul does); a complex x real product is then one real product on the stacked real and
    imaginary parts instead of two.
    """
    product = gemm.real_aware(base, batches_leading_axis)

    def lifted(a, b) -> Tensor:
        return _binary(a, b, "bilinear", lambda algebra: lambda x, y: algebra.mul(x, y, product))

    lifted.__name__ = getattr(base, "__name__", "bilinear")
    return lifted


def _matmul(x, y):
    return array_module(x).matmul(x, y)


def _check_matmul(a: Tensor, b: Tensor) -> None:
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError("matmul needs operands with at least one dimension")
    k_a = a.shape[-1]
    k_b = b.shape[-2] if b.ndim > 1 else b.shape[0]
    if k_a != k_b:
        raise ValueError(f"matmul: inner dimensions differ: {a.shape} @ {b.shape} ({k_a} != {k_b})")


_lifted_matmul = lift_bilinear(_matmul, batches_leading_axis=True)


def matmul(a, b) -> Tensor:
    """Matrix product of multicomplex arrays, built from 4**(n-1) complex GEMMs."""
    like = a if isinstance(a, Tensor) else b
    a, b = as_tensor(a, like), as_tensor(b, like)
    _check_matmul(a, b)
    if a.ndim == 2 and b.ndim == 2 and a.device == "cpu":
        da, db = a.data, b.data
        small = len(da) == 1 == len(db) and da.shape[1] * da.shape[2] * db.shape[2] <= _SMALL_GEMM
        if small:  # one GEMM of the components as they are
            return Tensor(np.matmul(da[0], db[0])[None])
        return _matmul_by_terms(a, b)
    return _lifted_matmul(a, b)


def matmul_by_terms(a: Tensor, b: Tensor) -> Tensor:
    """``a @ b`` of 2-D CPU operands through `gemm.Product` at any size: the product rule's
    terms as real GEMMs, so that a complex product's i-part is rounded as
    `gemm.imaginary_part` rounds it (a full backward's weight gradient is then bit for bit
    the one of a pass within `derivative_parts_only`)."""
    _check_matmul(a, b)
    return _matmul_by_terms(a, b)


def _matmul_by_terms(a: Tensor, b: Tensor) -> Tensor:
    if _both_real(a, b):
        return Tensor(np.matmul(a.data[0], b.data[0])[None])
    return _gemm_product(a, b)(b)


# Multiply-adds up to which a product of real or complex (order 1) matrices is one NumPy
# matmul: preparing the real GEMMs of `gemm.Product` costs more than it saves there
# (measured in the commit that set it).
_SMALL_GEMM = 1 << 19


install_operators(matmul=matmul)


def matmul_each(
    a: Tensor, chunks: Iterable[Tensor], largest: list[float] | None = None
) -> Iterator[Tensor]:
    """``a @ b`` for each 2-D ``b`` of ``chunks`` (all of one kind): a's side of the products
    (the product rule's terms, a block matrix) is prepared once.  A convolution's weight times
    its columns, a batch chunk at a time, spends no time on it per chunk.  ``largest``: max
    |component| of the chunks' components over the whole operand they cut, for one-direction
    chunks (``gemm.Product``: negligible corrections are then left out)."""
    product: Any = None
    kind = None
    for b in chunks:
        b = as_tensor(b, a)
        _check_matmul(a, b)
        if a.ndim != 2 or b.ndim != 2 or a.device != "cpu" or _both_real(a, b):
            yield matmul(a, b)
            continue
        if kind != (len(b.data), b.data.dtype, b.order, b.one_direction):
            kind = (len(b.data), b.data.dtype, b.order, b.one_direction)
            product = _gemm_product(a, b, skip_zeros_of_like=False)
        yield product(b, largest)


def _gemm_product(a: Tensor, like: Tensor, skip_zeros_of_like: bool = True) -> Callable:
    """``b -> a @ b`` (``algebra.gemm``) for 2-D CPU right operands of ``like``'s kind."""
    algebra = algebra_of(a, like)
    real = np.result_type(a.dtype, like.dtype)

    def data_of(t: Tensor):
        return _cast_data(t.general() if algebra is multicomplex else t, real)

    product = gemm.Product(algebra, data_of(a), data_of(like), skip_zeros_of_like)
    return lambda b, largest=None: Tensor(product(data_of(b), largest))


def tensordot(a, b, axes=2) -> Tensor:
    """``numpy.tensordot`` of multicomplex arrays."""
    return lift_bilinear(lambda x, y: array_module(x).tensordot(x, y, axes=axes))(a, b)


def einsum(subscripts: str, a, b) -> Tensor:
    """Two-operand ``numpy.einsum`` of multicomplex arrays (any contraction, e.g. convolution)."""
    return lift_bilinear(lambda x, y: array_module(x).einsum(subscripts, x, y, optimize=True))(a, b)


# --- calls on values that are not tensors ------------------------------------------------------


def _handing_over(fn: Callable) -> Callable:
    """``fn``, except that an argument (or an item of a list/tuple argument) whose type has
    ``__mcnet_function__`` takes the call: the placeholders that trace a module's forward
    (``mcnet.nn.graph``) record it as a step instead of computing it."""

    @functools.wraps(fn)
    def call(*args, **kwargs):
        for arg in args:
            for item in arg if isinstance(arg, (list, tuple)) else (arg,):
                hook = getattr(type(item), "__mcnet_function__", None)
                if hook is not None:
                    return hook(item, call, args, kwargs)
        return fn(*args, **kwargs)

    return call


for _name in (
    *ANALYTIC,
    "power",
    "where",
    "relu",
    "elu",
    "abs",
    "maximum",
    "minimum",
    "clip",
    "max",
    "logsumexp",
    "log_softmax",
    "softmax",
    "sum",
    "mean",
    "reshape",
    "transpose",
    "concatenate",
    "stack",
):
    globals()[_name] = _handing_over(globals()[_name])
del _name
