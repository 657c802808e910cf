"""`check_module`: a gradient check of a module's hand-written backward against its forward.

A module's forward alone determines every derivative: the multicomplex step reads
``df[v]`` and ``d²f[u, v]`` off one forward pass at a complex or bicomplex point.  Its
backward is a second, hand-written route to the same numbers, and this compares the two
on ``f = loss(module(inputs), targets)``:

- the gradient of the input and of every parameter, as ``g · v`` against ``df[v]`` along a
  random direction and along the claimed gradient itself (which exposes a gradient that is
  wrong by a common factor, however the direction is drawn);
- ``H v`` (one complex forward and backward) against ``d²f[u, v]`` (one bicomplex forward,
  no backward), per parameter and for the input;
- the symmetry ``u · H v = v · H u``, which a backward that is not the holomorphic
  continuation of the real one (it drops or conjugates an imaginary part) breaks.

Each comparison's error is relative to the sum of the magnitudes of the products it adds up
(``sum |g_i v_i|``), so cancellation in the dot product cannot pass off roundoff as a defect.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mcnet.algebra.multicomplex import array_module
from mcnet.derivatives import default_step, directional, perturb
from mcnet.nn.loss import Loss, MSELoss
from mcnet.nn.module import Module
from mcnet.nn.objective import Objective
from mcnet.nn.vector import parameters_to_vector
from mcnet.tensor import Tensor, as_tensor, tensor

# The two routes agree to below 1e-11 of the products' magnitudes on the built-in layers in
# float64 (a batch norm's centring costs most), while a defect of 1e-6 in one gradient
# shows as about 5e-7 along the claimed gradient; float32 roundoff shows as ~1e-7.
_DEFAULT_RTOL = {np.dtype(np.float64): 1e-8, np.dtype(np.float32): 1e-3}


class LinearFunctional(Loss):
    """``sum(c * output)`` for fixed coefficients ``c``: a loss that any output admits,
    linear, so every curvature it shows is the module's own."""

    def __init__(self, coefficients: np.ndarray) -> None:
        super().__init__()
        self.coefficients = np.asarray(coefficients)

    def forward(self, input: Tensor, target=None) -> Tensor:  # noqa: A002 - PyTorch's name
        if input.shape != self.coefficients.shape:
            raise ValueError(
                f"LinearFunctional expected an output of shape {self.coefficients.shape}, "
                f"got shape {input.shape}"
            )
        self.saved = tensor(self.coefficients, dtype=input.dtype, device=input.device)
        return (input * self.saved).sum()

    def backward(self, grad=None) -> Tensor:
        return self.saved if grad is None else self.saved * grad


def check_module(
    module: Module,
    inputs,
    targets=None,
    loss: Loss | None = None,
    seed: int = 0,
    rtol: float | None = None,
) -> dict[str, dict[str, float]]:
    """Check ``module``'s backward against complex-step derivatives of its own forward.

    ``f = loss(module(inputs), targets)``; without a loss, ``sum(c * output)`` with fixed
    random coefficients ``c`` (drawn from ``seed``), or ``MSELoss`` when ``targets`` are
    given.  ``inputs`` is one array (or order-0 Tensor), as the module's ``forward`` takes it.
    Checked: the input's and every parameter's gradient, ``H v`` per parameter and
    for the input, and the symmetry of ``H v`` (see the module docstring).  Integer inputs
    (labels, indices) are not differentiated.  Put the module in the mode to check (a
    Dropout in train mode keeps one mask for every pass); its parameters, gradients and
    buffers are left as they were.

    Returns the measured relative errors, ``{"gradient": {name: error}, "hvp": {name:
    error}, "symmetry": {"parameters": error, "input": error}}``, the names being ``"input"``
    and those of ``named_parameters``.  Raises ``AssertionError`` naming the module's class, each
    parameter (or the input) whose error exceeds ``rtol`` (default 1e-8 in float64, 1e-3 in
    float32) and the error.
    """
    params = dict(module.named_parameters())
    kept_grads = {name: p.grad for name, p in params.items()}
    kept_buffers = {name: np.array(b, copy=True) for name, b in module.named_buffers()}
    try:
        return _Check(module, inputs, targets, loss, seed, rtol).run()
    finally:
        for name, p in params.items():
            p.grad = kept_grads[name]
        if kept_buffers:
            module.load_state_dict(kept_buffers, strict=False)


class _Check:
    def __init__(self, module, inputs, targets, loss, seed, rtol) -> None:
        self.module, self.targets = module, targets
        self.params = list(module.named_parameters())
        self.dtype = (
            self.params[0][1].value.dtype if self.params else _float_dtype(inputs, np.float64)
        )
        self.rtol = _DEFAULT_RTOL[self.dtype] if rtol is None else float(rtol)
        self.rng = np.random.default_rng(seed)
        self.x = _as_array(inputs, self.dtype)
        self.differentiable_input = self.x.dtype.kind == "f"
        self.loss = self._loss(loss)
        self.objective = Objective(module, self.loss)
        self.w = parameters_to_vector(module).astype(self.dtype)
        self.comparisons: list[_Comparison] = []
        self.failures: list[tuple[float, str]] = []

    def _loss(self, loss: Loss | None) -> Loss:
        if loss is not None:
            if not isinstance(loss, Module):
                raise TypeError(
                    f"check_module needs a loss module with a backward (nn.MSELoss(), "
                    f"nn.CrossEntropyLoss(), ...), got {type(loss).__name__}"
                )
            return loss
        if self.targets is not None:
            return MSELoss()
        out = self.module(tensor(self.x) if self.differentiable_input else self.x)
        return LinearFunctional(self.rng.standard_normal(out.shape))

    # --- the checks ---------------------------------------------------------------------------
    def run(self) -> dict[str, dict[str, float]]:
        input_grad, param_grads = self._backward()
        for name, p in self.params:
            self._check_parameter_gradient(name, p, param_grads[name])
        if self.differentiable_input:
            self._check_input_gradient(input_grad)
        if self.params:
            self._check_parameter_hvp()
        if self.differentiable_input:
            self._check_input_hvp()
        errors = self._errors()
        if self.failures:
            self.failures.sort(reverse=True)
            lines = "\n".join(f"  - {line}" for _, line in self.failures)
            raise AssertionError(
                f"check_module({type(self.module).__name__}): the backward disagrees with the "
                f"forward's derivatives (rtol {self.rtol:g}):\n{lines}"
            )
        return errors

    def _backward(self) -> tuple[Any, dict[str, Tensor | None]]:
        """One real forward and backward: the claimed input and parameter gradients."""
        for _, p in self.params:
            p.grad = None
        self.loss(self.module(self.x), self.targets)
        input_grad = self.module.backward(self.loss.backward())
        return input_grad, {name: p.grad for name, p in self.params}

    def _check_parameter_gradient(self, name: str, p, grad: Tensor | None) -> None:
        claimed = np.zeros(p.shape, dtype=self.dtype) if grad is None else _real(grad)
        if claimed.shape != p.shape:
            self._fail(
                np.inf,
                f"parameter {name!r}: backward accumulated a gradient of shape "
                f"{claimed.shape} into a parameter of shape {p.shape}",
            )
            return
        hint = (
            f" (backward never accumulated a gradient into it: does it call "
            f"self.{name.rsplit('.', 1)[-1]}.accumulate(...)?)"
            if grad is None
            else ""
        )
        for v in self._directions(claimed):
            want = self.objective.directional(self.w, [self._embed(name, v)], self._batch())
            self._compare(
                "gradient", name, claimed * v, want, f"gradient of parameter {name!r}", hint
            )

    def _check_input_gradient(self, input_grad) -> None:
        if input_grad is None or isinstance(input_grad, tuple):
            self._fail(
                np.inf,
                f"input: backward returned {type(input_grad).__name__}, not the input's gradient",
            )
            return
        claimed = _real(input_grad)
        if claimed.shape != self.x.shape:
            self._fail(
                np.inf,
                f"input: backward returned a gradient of shape {claimed.shape} "
                f"for an input of shape {self.x.shape}",
            )
            return
        for v in self._directions(claimed):
            want = directional(self._loss_of_input, self.x, [v])
            self._compare("gradient", "input", claimed * v, want, "gradient of the input")

    def _check_parameter_hvp(self) -> None:
        u, v = (self.rng.standard_normal(self.w.shape).astype(self.dtype) for _ in range(2))
        hv = self.objective.hvp(self.w, v, self._batch())
        hu = self.objective.hvp(self.w, u, self._batch())
        offset = 0
        for name, p in self.params:
            part = slice(offset, offset + p.numel())
            offset += p.numel()
            u_p = np.zeros_like(u)
            u_p[part] = u[part]
            want = self.objective.directional(self.w, [u_p, v], self._batch())
            self._compare("hvp", name, u[part] * hv[part], want, f"H v of parameter {name!r}")
        self._compare_symmetry("parameters", u * hv, v * hu)

    def _check_input_hvp(self) -> None:
        u, v = (self.rng.standard_normal(self.x.shape).astype(self.dtype) for _ in range(2))
        hu, hv = self._input_hvp(u), self._input_hvp(v)
        want = directional(self._loss_of_input, self.x, [u, v])
        self._compare("hvp", "input", u * hv, want, "H v of the input")
        self._compare_symmetry("input", u * hv, v * hu)

    # --- machinery -----------------------------------------------------------------------------
    def _input_hvp(self, v: np.ndarray) -> np.ndarray:
        """H v in the input: the i-part of the input gradient at x + i h v, over h (v is
        O(1), so the default step suits it)."""
        h = default_step(self.dtype, 1)
        for _, p in self.params:
            p.grad = None
        self.loss(self.module(perturb(self.x, [v], h)), self.targets)
        grad = as_tensor(self.module.backward(self.loss.backward()))
        return _host(grad.coef((1,))) / h

    def _loss_of_input(self, x: Tensor) -> Tensor:
        return self.loss(self.module(x), self.targets)

    def _batch(self):
        return self.x, self.targets

    def _directions(self, claimed: np.ndarray) -> list[np.ndarray]:
        """A random direction, and the claimed gradient itself when it is not zero."""
        directions = [self.rng.standard_normal(claimed.shape).astype(self.dtype)]
        if np.any(claimed):
            directions.append(claimed)
        return directions

    def _embed(self, name: str, v: np.ndarray) -> np.ndarray:
        """A direction in the flat parameter vector that moves only parameter ``name``."""
        full, offset = np.zeros_like(self.w), 0
        for other, p in self.params:
            if other == name:
                full[offset : offset + p.numel()] = v.reshape(-1)
            offset += p.numel()
        return full

    def _compare(
        self, check: str, name: str, terms, want: float, what: str, hint: str = ""
    ) -> None:
        """The backward's ``sum(terms)`` against the forward's ``want``."""
        got = float(np.sum(terms))
        self.comparisons.append(
            _Comparison(
                check,
                name,
                abs(got - float(want)),
                float(np.sum(np.abs(terms))) + abs(float(want)),
                f"{what}: backward gives {got:.17g}, forward {float(want):.17g}",
                hint,
            )
        )

    def _compare_symmetry(self, name: str, terms_uhv, terms_vhu) -> None:
        uhv, vhu = float(np.sum(terms_uhv)), float(np.sum(terms_vhu))
        self.comparisons.append(
            _Comparison(
                "symmetry",
                name,
                abs(uhv - vhu),
                float(np.sum(np.abs(terms_uhv)) + np.sum(np.abs(terms_vhu))),
                f"H v of the {name} is not symmetric: u·Hv = {uhv:.17g} but v·Hu = {vhu:.17g}",
            )
        )

    def _errors(self) -> dict[str, dict[str, float]]:
        """Each comparison's difference relative to its scale, floored at _FLOOR times the
        largest scale of its kind: a derivative that is zero in exact arithmetic (the bias
        before a batch norm) is computed as roundoff of the other terms' size."""
        errors: dict[str, dict[str, float]] = {"gradient": {}, "hvp": {}, "symmetry": {}}
        for check, measured in errors.items():
            mine = [c for c in self.comparisons if c.check == check]
            floor = _FLOOR * max((c.scale for c in mine), default=0.0)
            for c in mine:
                error = c.difference / max(c.scale + floor, np.finfo(np.float64).tiny)
                if not np.isfinite(c.difference):
                    error = np.inf
                measured[c.name] = max(measured.get(c.name, 0.0), error)
                if not error <= self.rtol:
                    self._fail(error, f"{c.what}, relative error {error:.3g}{c.hint}")
        return errors

    def _fail(self, error: float, line: str) -> None:
        self.failures.append((error, line))


# The floor of the scale of a comparison, relative to the largest of its kind: a defect of
# 1e-6 in a derivative 1e-4 times smaller than the largest still shows as 1e-8, while
# roundoff (~1e-16 of the largest) stays at ~1e-12.
_FLOOR = 1e-4


@dataclass
class _Comparison:
    check: str
    name: str
    difference: float
    scale: float
    what: str
    hint: str = ""


def _float_dtype(inputs, default) -> np.dtype:
    dtype = np.dtype(inputs.dtype if hasattr(inputs, "dtype") else default)
    return dtype if dtype in _DEFAULT_RTOL else np.dtype(default)


def _as_array(inputs, dtype: np.dtype) -> np.ndarray:
    """The inputs as a host array: floating data in the parameters' dtype, integer data
    (labels, indices) as it is."""
    if isinstance(inputs, Tensor):
        inputs = inputs.to("cpu").numpy()
    x = np.asarray(inputs)
    return x.astype(dtype) if x.dtype.kind == "f" else x


def _real(t) -> np.ndarray:
    return _host(as_tensor(t).real)


def _host(a) -> np.ndarray:
    return np.asarray(a) if array_module(a) is np else a.get()
