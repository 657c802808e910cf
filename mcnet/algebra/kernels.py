"""Fused elementwise kernels, generated from the algebra's own recursions.

The algorithms in ``multicomplex.py`` are written over lists of components with Python
operators and ``array_module(x).exp``-style base functions.  Running them on *symbols*
instead of arrays records straight-line scalar code for one element: the whole
multicomplex number stays in registers and memory is read and written once, instead of
once per intermediate array.  The same source is compiled by Numba for the CPU (a loop
over elements) and by Numba CUDA for the GPU (one thread per element), so a primitive is
declared once and lifted to every order and device.

Kernels are specialised per order (the unrolled code) and per dtype (Numba's dispatch).
Generated sources are written to a cache folder (``$MCNET_CACHE`` or ``~/.cache/mcnet``)
so that Numba's on-disk cache keeps the compiled machine code between runs.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mcnet.algebra import multicomplex as alg
from mcnet.algebra import symmetric

# Orders with a fused kernel: above this the unrolled code grows as n 4**n and the
# per-array recursion is already compute-bound.
MAX_KERNEL_ORDER = 4


class _Emitter:
    """Collects the lines of one kernel body."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.count = 0

    def let(self, expr: str, is_complex: bool) -> Sym:
        name = f"t{self.count}"
        self.count += 1
        self.lines.append(f"{name} = {expr}")
        return Sym(name, is_complex, self)


def _code(x) -> str:
    if isinstance(x, Sym):
        return x.name
    if isinstance(x, (bool, np.bool_)):
        return repr(bool(x))
    if isinstance(x, complex):
        return f"complex({x.real!r}, {x.imag!r})"
    return repr(float(x))


def _is_complex(x) -> bool:
    return x.is_complex if isinstance(x, Sym) else isinstance(x, complex)


class Sym:
    """A scalar variable of a generated kernel; arithmetic on it emits code."""

    __slots__ = ("name", "is_complex", "emitter")
    shape = ()

    def __init__(self, name: str, is_complex: bool, emitter: _Emitter) -> None:
        self.name, self.is_complex, self.emitter = name, is_complex, emitter

    @property
    def namespace(self) -> _SymbolicNamespace:
        return _SymbolicNamespace(self.emitter)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.complex128 if self.is_complex else np.float64)

    @property
    def real(self) -> Sym:
        return self.emitter.let(f"{self.name}.real", False) if self.is_complex else self

    @property
    def imag(self) -> Sym:
        return self.emitter.let(f"{self.name}.imag" if self.is_complex else "0.0", False)

    def astype(self, dtype) -> Sym:
        return self

    def _binary(self, other, op: str, reflected: bool = False) -> Sym:
        a, b = (other, self) if reflected else (self, other)
        return self.emitter.let(f"({_code(a)} {op} {_code(b)})", _is_complex(a) or _is_complex(b))

    def __add__(self, o):
        return self._binary(o, "+")

    def __radd__(self, o):
        return self._binary(o, "+", True)

    def __sub__(self, o):
        return self._binary(o, "-")

    def __rsub__(self, o):
        return self._binary(o, "-", True)

    def __mul__(self, o):
        return self._binary(o, "*")

    def __rmul__(self, o):
        return self._binary(o, "*", True)

    def __truediv__(self, o):
        return self._binary(o, "/")

    def __rtruediv__(self, o):
        if self.is_complex and not isinstance(o, Sym) and o == 1:
            return self.emitter.let(f"complex_inv({self.name})", True)
        return self._binary(o, "/", True)

    def __neg__(self):
        return self.emitter.let(f"(-{self.name})", self.is_complex)

    def __ge__(self, o):
        return self.emitter.let(f"({_code(self)} >= {_code(o)})", False)

    def __gt__(self, o):
        return self.emitter.let(f"({_code(self)} > {_code(o)})", False)


class _SymbolicNamespace:
    """The slice of the NumPy API that the recursions call, emitting scalar code."""

    def __init__(self, emitter: _Emitter) -> None:
        self.emitter = emitter

    def _call(self, fn: str, x) -> Sym:
        name = f"complex_{fn}" if _is_complex(x) else f"math.{fn}"
        return self.emitter.let(f"{name}({_code(x)})", _is_complex(x))

    def exp(self, x):
        return self._call("exp", x)

    def sin(self, x):
        return self._call("sin", x)

    def cos(self, x):
        return self._call("cos", x)

    def sinh(self, x):
        return self._call("sinh", x)

    def cosh(self, x):
        return self._call("cosh", x)

    def tanh(self, x):
        return self._call("tanh", x)

    def abs(self, x):
        return self.emitter.let(f"abs({_code(x)})", False)

    def expm1(self, x):
        return self.emitter.let(f"math.expm1({_code(x)})", False)

    def where(self, cond, a, b):
        return self.emitter.let(
            f"({_code(a)} if {_code(cond)} else {_code(b)})", _is_complex(a) or _is_complex(b)
        )

    def zeros_like(self, x):
        return self.emitter.let("0j" if _is_complex(x) else "0.0", _is_complex(x))


# --- source generation ----------------------------------------------------------------------

_HEADER = "import cmath\nimport math\n"

# Complex base functions with a fast path for tiny imaginary parts, the derivative case:
# for |y| < 2**-27, cos y and cosh y round to 1 and sin y, sinh y to y in float64, so the
# real-function forms below are the correctly rounded values, not approximations.
_TINY_IMAGINARY_FORMS = {  # f(x + iy) for tiny y: (real part, imaginary part)
    "exp": ("math.exp(x)", "math.exp(x) * y"),
    "sin": ("math.sin(x)", "math.cos(x) * y"),
    "cos": ("math.cos(x)", "-math.sin(x) * y"),
    "sinh": ("math.sinh(x)", "math.cosh(x) * y"),
    "cosh": ("math.cosh(x)", "math.sinh(x) * y"),
    # sech^2 as 1/cosh^2, not 1 - tanh^2, which cancels for large |x|
    "tanh": ("math.tanh(x)", "y / (math.cosh(x) * math.cosh(x))"),
}
_COMPLEX_BASE = (
    "\nTINY = 2.0**-27\n"
    + "".join(
        f"""

@{{decorator}}
def complex_{name}(z):
    x = z.real
    y = z.imag
    if y != 0.0 and abs(y) < TINY:
        return complex({real}, {imag})
    return cmath.{name}(z)
"""
        for name, (real, imag) in _TINY_IMAGINARY_FORMS.items()
    )
    + """

@{decorator}
def complex_inv(z):
    # 1/(a + bi) = (1/a, -b/a^2) when b^2 is below a^2's last bit; the general division
    # forms b*b or b*(b/a), which turn subnormal (slow) for tiny b
    a = z.real
    b = z.imag
    if abs(b) < TINY * abs(a):
        r = 1.0 / a
        return complex(r, -b * r * r)
    return 1.0 / z


"""
)


def _body(fn: Callable, n_inputs: int, order: int, one_direction: bool) -> tuple[list[str], int]:
    """Trace ``fn`` on symbolic inputs: (lines computing outputs o0.., number of outputs)."""
    emitter = _Emitter()
    if one_direction:  # k + 1 real coefficients
        n_comps, is_complex = order + 1, False
    else:
        n_comps, is_complex = (2 ** (order - 1) if order else 1), order > 0
    inputs = [
        [Sym(f"a{i}_{j}", is_complex, emitter) for j in range(n_comps)] for i in range(n_inputs)
    ]
    outputs = fn(*inputs)
    lines = [f"a{i}_{j} = x{i}[{j}, e]" for i in range(n_inputs) for j in range(n_comps)]
    lines += emitter.lines
    lines += [f"out[{j}, e] = {_code(o)}" for j, o in enumerate(outputs)]
    return lines, len(outputs)


def generate_source(
    fn: Callable, n_inputs: int, order: int, target: str, one_direction: bool = False
) -> str:
    """Python source of a kernel ``kernel(x0, [x1,] out)`` over arrays of shape (C, N)."""
    lines, _ = _body(fn, n_inputs, order, one_direction)
    args = ", ".join(f"x{i}" for i in range(n_inputs))
    body = "\n".join("        " + line for line in lines)
    if target == "cpu":
        helpers = _COMPLEX_BASE.replace("{decorator}", "njit(cache=True, inline='always')")
        return (
            f"{_HEADER}from numba import njit\n{helpers}\n\n"
            f"@njit(cache=True, nogil=True, error_model='numpy')\n"
            f"def kernel({args}, out):\n"
            f"    for e in range(out.shape[1]):\n{body}\n"
        )
    helpers = _COMPLEX_BASE.replace("{decorator}", "cuda.jit(device=True)")
    return (
        f"{_HEADER}from numba import cuda\n{helpers}\n\n"
        f"@cuda.jit\n"
        f"def kernel({args}, out):\n"
        f"    e = cuda.grid(1)\n"
        f"    if e < out.shape[1]:\n{body}\n"
    )


def _cache_dir() -> Path:
    root = os.environ.get("MCNET_CACHE") or os.path.join(Path.home(), ".cache", "mcnet")
    return Path(root) / "kernels"


def _load(source: str, name: str):
    """Import generated source from a file (so Numba can cache it); fall back to exec."""
    digest = hashlib.sha1(source.encode()).hexdigest()[:12]
    module_name = f"mcnet_kernel_{name}_{digest}"
    try:
        folder = _cache_dir()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{module_name}.py"
        if not path.exists():  # atomic: concurrent processes never see half a file
            with tempfile.NamedTemporaryFile("w", dir=folder, suffix=".tmp", delete=False) as f:
                f.write(source)
            os.replace(f.name, path)
        spec = importlib.util.spec_from_file_location(module_name, path)
        assert spec is not None and spec.loader is not None  # a .py file has a source loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
        return module.kernel
    except OSError:  # read-only home: compile without the disk cache
        namespace: dict = {}
        exec(compile(source.replace("cache=True", "cache=False"), module_name, "exec"), namespace)
        return namespace["kernel"]


# --- the fused primitives -------------------------------------------------------------------

FUSED: dict[str, tuple[Callable, int, int, int]] = {
    # name: (recursion, number of inputs, lowest order worth fusing on the CPU, on the GPU).
    # On the GPU order-1 exp, tanh and products are single CuPy passes already, and a Numba
    # launch costs more than the tiny-imaginary-part path saves (measured on an H100).
    "mul": (alg.mul, 2, 2, 2),
    "exp": (alg.exp, 1, 1, 2),
    "tanh": (alg.tanh, 1, 1, 2),
    "sigmoid": (alg.sigmoid, 1, 0, 0),
    "sin": (alg.sin, 1, 2, 2),
    "cos": (alg.cos, 1, 2, 2),
}

_compiled: dict[tuple[str, int, str, bool, bool], Any] = {}


def kernel(
    name: str, order: int, target: str = "cpu", one_direction: bool = False, series: bool = False
) -> Any:  # a Numba dispatcher: called, or indexed by a CUDA launch configuration
    """The compiled kernel of a fused primitive at one order, built on first use.  For
    ``one_direction`` numbers it is traced through ``algebra.symmetric``: its Taylor ``series``
    (tiny perturbations) or its ``exact`` path through the general layout."""
    key = (name, order, target, one_direction, series)
    if key not in _compiled:
        fn, n_inputs = FUSED[name][:2]
        if one_direction:
            fn = (
                symmetric.mul
                if name == "mul"
                else (symmetric.series(name) if series else symmetric.exact(name))
            )
        source = generate_source(fn, n_inputs, order, target, one_direction)
        layout = ("t" if series else "d") if one_direction else "o"
        _compiled[key] = _load(source, f"{name}_{layout}{order}_{target}")
    return _compiled[key]


def applies(name: str, order: int, one_direction: bool = False, device: str = "cpu") -> bool:
    """Whether ``name`` has a fused kernel worth using at this order on this device.  Not for
    one-direction numbers with nilpotent units: those skip exactly-zero coefficients
    (``symmetric.zero_components``), which straight-line code cannot."""
    if name not in FUSED or order > MAX_KERNEL_ORDER:
        return False
    if one_direction and symmetric.nilpotent():
        return False
    _, _, lowest_on_cpu, lowest_on_gpu = FUSED[name]
    return (
        order >= 2
        if one_direction
        else order >= (lowest_on_cpu if device == "cpu" else lowest_on_gpu)
    )


def run(name: str, order: int, *inputs, one_direction: bool = False):
    """Apply a fused primitive to same-shaped component arrays of shape (C, *shape)."""
    first = inputs[0]
    xp = alg.array_module(first)
    # Elements can be visited in memory order: a transposed view (a convolution's NCHW
    # output, say) is walked as the contiguous buffer it is, and the result gets its layout.
    axes = _memory_order(first)
    if axes is None or any(not x.transpose(axes).flags.c_contiguous for x in inputs):
        axes = tuple(range(first.ndim))
    laid_out = [xp.ascontiguousarray(x.transpose(axes)) for x in inputs]
    flat = [x.reshape(x.shape[0], -1) for x in laid_out]
    out = xp.empty_like(flat[0])
    series = one_direction and name != "mul" and symmetric.is_tiny(name, list(flat[0]))
    if xp is np:
        kernel(name, order, "cpu", one_direction, series)(*flat, out)
    else:  # pragma: no cover - GPU only
        if not hasattr(np, "row_stack"):
            # numba-cuda 0.2x still registers np.row_stack, which NumPy 2.5 removed; the
            # alias is what NumPy itself had (np.row_stack was np.vstack)
            np.row_stack = np.vstack  # noqa: NPY201
        threads = 256
        blocks = (out.shape[1] + threads - 1) // threads
        if blocks:
            kernel(name, order, "cuda", one_direction, series)[blocks, threads](*flat, out)
    return out.reshape(laid_out[0].shape).transpose(np.argsort(axes))


def _memory_order(x) -> tuple[int, ...] | None:
    """Axes from the largest stride to the smallest, the component axis first; None when
    the components are not the outermost axis of one buffer."""
    rest = sorted(range(1, x.ndim), key=lambda i: -x.strides[i])
    axes = (0, *rest)
    return axes if all(x.strides[0] >= x.strides[i] for i in rest) else None
