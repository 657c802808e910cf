"""`Elementwise`: a module applying an elementwise function, its derivative from the algebra.

The backward multiplies by f'(x), and f'(x) is read off one more unit: for x of order n,
f(x + h i_{n+1}) = f(x) + h f'(x) i_{n+1} + O(h^2), so the coefficient of i_{n+1} over h is
f'(x) at the multicomplex point x itself -- the holomorphic continuation a complex (H v)
pass needs, with no subtraction and no hand-written derivative.  h is the order-1 default
step: its O(h^2) remainder is far below roundoff, and its products with the units the
caller's step put into x stay normal numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mcnet.algebra.multicomplex import array_module
from mcnet.derivatives import default_step
from mcnet.functions import embed
from mcnet.nn.module import Module
from mcnet.tensor import Tensor, _complex_of, as_tensor


def derivative_at(fn: Callable[[Tensor], Any], x: Tensor) -> Tensor:
    """f'(x) for an elementwise ``fn`` at a tensor ``x`` of any order (same order as x)."""
    x = x.general()
    n = x.order
    h = default_step(x.dtype, 1)
    xp = array_module(x.data)
    # order n + 1 holds 2**n complex components; i_{n+1} alone is the real part of
    # component 2**(n-1) (for n = 0: the imaginary part of component 0)
    data = xp.zeros((2**n,) + x.shape, dtype=_complex_of(x.dtype))
    data[: len(x.data)] = x.data
    if n == 0:
        data[0].imag[...] = h
    else:
        data[2 ** (n - 1)].real[...] = h
    y = embed(as_tensor(fn(Tensor(data)), like=x), n + 1)
    if y.shape != x.shape:
        raise ValueError(
            f"Elementwise expected {_name(fn)} to keep its input's shape {x.shape}, got shape "
            f"{y.shape}: an elementwise function maps each entry to one entry"
        )
    if n == 0:
        return Tensor(y.data[0].imag[None] * (1.0 / h))  # dividing by a power of two: exact
    return Tensor(y.data[2 ** (n - 1) :] * (1.0 / h))


class Elementwise(Module):
    """y = fn(x) entry by entry, for ``fn`` built from mcnet functions and arithmetic
    (e.g. ``lambda t: t * mc.sigmoid(t)``, ``lambda t: mc.where(t > 0, t, 0.1 * t)``).

    No backward to write: it multiplies by fn'(x), derived from fn by one more
    multicomplex unit, so it is right at every order (the complex point of an H v pass
    included).  Branches decide on the real part, as mcnet's own functions do.
    """

    def __init__(self, fn: Callable[[Tensor], Any]) -> None:
        super().__init__()
        if not callable(fn):
            raise TypeError(f"Elementwise expected a function of a tensor, got {type(fn).__name__}")
        self.fn = fn

    def forward(self, x: Tensor) -> Tensor:
        y = as_tensor(self.fn(x), like=x)
        if y.shape != x.shape:
            raise ValueError(
                f"Elementwise expected {_name(self.fn)} to keep its input's shape {x.shape}, "
                f"got shape {y.shape}: an elementwise function maps each entry to one entry"
            )
        self.saved = x
        return y

    def backward(self, grad_out: Tensor) -> Tensor:
        return grad_out * derivative_at(self.fn, self.saved)

    def extra_repr(self) -> str:
        return _name(self.fn)


def _name(fn: Any) -> str:
    return getattr(fn, "__name__", None) or repr(fn)
