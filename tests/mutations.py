"""Small deliberate bugs, planted one at a time by tests/test_mutations.py.

``MCNET_MUTATION=<name> pytest ...`` makes tests/conftest.py call ``apply(name)`` before any
test module is imported; the suite must then FAIL.  Each bug is of the size the performance
work could introduce without anything looking wrong: a relative error of 1e-10 to 1e-7 in
one layer's H v, one term of a product, one Taylor coefficient, one fused kernel's output.
"""

from __future__ import annotations

import operator

import numpy as np

MUTATIONS: dict[str, str] = {}
_APPLY = {}
APPLIED: list[str] = []


def mutation(name: str, description: str):
    def register(fn):
        MUTATIONS[name] = description
        _APPLY[name] = fn
        return fn

    return register


def apply(name: str) -> None:
    if name not in _APPLY:
        raise ValueError(f"unknown mutation {name!r}; known: {sorted(_APPLY)}")
    _APPLY[name]()
    APPLIED.append(name)


# --- helpers ------------------------------------------------------------------------------


def _scale_i1(t, factor):
    """An order-1 (complex, the H v pass) tensor with its i_1 part scaled; others unchanged."""
    from mcnet.tensor import Tensor

    if not isinstance(t, Tensor) or t.order != 1 or t.data.dtype.kind != "c":
        return t
    data = t.data.copy()
    data.imag *= factor  # in place: no inf * 1j -> NaN on the way
    return Tensor(data)


def _backward_hv_off(cls, factor):
    """``cls.backward`` returns, and accumulates into its parameters, gradients whose i_1
    part (h H v in the complex pass) is off by ``factor``."""
    from mcnet.nn.module import Parameter

    original, accumulate = cls.backward, Parameter.accumulate
    active = []

    def backward(self, *args, **kwargs):
        active.append(True)
        try:
            out = original(self, *args, **kwargs)
        finally:
            active.pop()
        if isinstance(out, tuple):
            return tuple(_scale_i1(g, factor) for g in out)
        return _scale_i1(out, factor)

    def mutated_accumulate(self, grad):
        return accumulate(self, _scale_i1(grad, factor) if active else grad)

    cls.backward = backward
    Parameter.accumulate = mutated_accumulate


def _top3_off(t, factor):
    """A tensor of order >= 3 with its i_1 i_2 i_3 coefficient scaled (both layouts)."""
    from mcnet.tensor import Tensor

    if not isinstance(t, Tensor) or t.order < 3:
        return t
    data = t.data.copy()
    if data.dtype.kind == "f":  # one direction: s_3 is the coefficient of i_1 i_2 i_3
        data[3] = data[3] * factor
    else:  # general layout: component 3 = i_2 i_3, its imaginary part carries i_1
        data[3].imag *= factor
    return Tensor(data)


def _replace_function(name, wrapper):
    import mcnet
    import mcnet.functions

    original = getattr(mcnet.functions, name)
    mutated = wrapper(original)
    setattr(mcnet.functions, name, mutated)
    setattr(mcnet, name, mutated)


# --- layers' H v ----------------------------------------------------------------------------


# name: (module, layer class, relative error of its H v, what the bug is)
_LAYER_HV_BUGS = {
    "conv2d_hv_1e-7": (
        "mcnet.nn.conv",
        "Conv2d",
        1e-7,
        "Conv2d.backward: i-part (H v) of its gradients x (1 + 1e-7)",
    ),
    "conv2d_hv_1e-10": (
        "mcnet.nn.conv",
        "Conv2d",
        1e-10,
        "Conv2d.backward: i-part (H v) of its gradients x (1 + 1e-10)",
    ),
    "sigmoid_hv_1e-10": (
        "mcnet.nn.activation",
        "Sigmoid",
        1e-10,
        "Sigmoid.backward: i-part (H v) of its gradient x (1 + 1e-10)",
    ),
    "batchnorm_hv_1e-10": (
        "mcnet.nn.batchnorm",
        "_BatchNorm",
        1e-10,
        "BatchNorm backward: i-part (H v) of its gradients x (1 + 1e-10)",
    ),
    "maxpool_hv_1e-7": (
        "mcnet.nn.pooling",
        "MaxPool2d",
        1e-7,
        "MaxPool2d.backward: i-part (H v) of its gradient x (1 + 1e-7)",
    ),
    "squared_hinge_hv_1e-8": (
        "mcnet.nn.loss",
        "SquaredHingeLoss",
        1e-8,
        "SquaredHingeLoss.backward: i-part (H v) of its gradient x (1 + 1e-8)",
    ),
    "recorded_product_hv_1e-10": (
        "mcnet.nn.recorded",
        "Multiply",
        1e-10,
        "a traced forward's product h * g: i-part (H v) of its gradients x (1 + 1e-10)",
    ),
    "elementwise_hv_1e-10": (
        "mcnet.nn.elementwise",
        "Elementwise",
        1e-10,
        "Elementwise.backward (mc.sigmoid(h) in a traced forward): i-part "
        "(H v) of its gradient x (1 + 1e-10)",
    ),
}


def _layer_hv_bug(module: str, layer: str, error: float):
    def plant():
        import importlib

        _backward_hv_off(getattr(importlib.import_module(module), layer), 1 + error)

    return plant


for _name, (_module, _layer, _error, _description) in _LAYER_HV_BUGS.items():
    mutation(_name, _description)(_layer_hv_bug(_module, _layer, _error))


# --- the algebra ------------------------------------------------------------------------------


@mutation(
    "product_order3_term_dropped",
    "general-layout product at order 3: the a_(i1) b_(i2 i3) term of the i1 i2 i3 "
    "coefficient dropped",
)
def _():
    from mcnet.algebra import multicomplex as alg

    original = alg.mul

    def mul(a, b, base=operator.mul):
        out = original(a, b, base)
        if len(a) == 4 and len(b) == 4 and np.iscomplexobj(a[0]) and np.iscomplexobj(b[3]):
            # component 3 is i2 i3 (its imaginary part i1 i2 i3); a's i1 part is a[0].imag
            out[3] = out[3] - 1j * base(a[0].imag, b[3].real)
        return out

    alg.mul = mul


@mutation(
    "one_direction_product_order3_term_dropped",
    "one-direction product at order 3: the s_1 t_2 term of class 3 dropped",
)
def _():
    from mcnet.algebra import symmetric

    original = symmetric.mul

    def mul(a, b, base=operator.mul):
        out = original(a, b, base)
        if len(a) == 4 and len(b) == 4:
            out[3] = out[3] - 3 * base(a[1], b[2])  # weight C(3,1) C(0,0) of (s_1, t_2)
        return out

    symmetric.mul = mul


@mutation(
    "tanh_order3_coefficient_1e-9",
    "tanh: the i1 i2 i3 coefficient of its result x (1 + 1e-9), every layout and path",
)
def _():
    def wrap(original):
        def tanh(x):
            return _top3_off(original(x), 1 + 1e-9)

        return tanh

    _replace_function("tanh", wrap)


@mutation(
    "sigmoid_taylor_order3_1e-9",
    "sigmoid's Taylor recurrence (one-direction numbers): its order-3 coefficient x (1 + 1e-9)",
)
def _():
    from mcnet.algebra import symmetric

    jet, general, relative = symmetric._FUNCTIONS["sigmoid"]

    def mutated(t):
        y = jet(t)
        if len(y) > 3:
            y[3] = y[3] * (1 + 1e-9)
        return y

    symmetric._FUNCTIONS["sigmoid"] = (mutated, general, relative)
    symmetric.sigmoid = symmetric._dispatching("sigmoid")


@mutation(
    "exp_kernel_order2_1e-9",
    "the fused exp kernel at order 2 (arrays of >= 4096 elements): its i1 i2 "
    "coefficient x (1 + 1e-9)",
)
def _():
    from mcnet.algebra import kernels

    original = kernels.run

    def run(name, order, *inputs, one_direction=False):
        out = original(name, order, *inputs, one_direction=one_direction)
        if name == "exp" and order == 2:
            out = out.copy()
            if one_direction:
                out[2] *= 1 + 1e-9
            else:  # component 1 = i2, its imaginary part i1 i2
                out[1].imag *= 1 + 1e-9
        return out

    kernels.run = run


@mutation(
    "gauss_newton_product_1e-9",
    "Objective.gauss_newton_product (newton-krylov-gn's curvature): G v x (1 + 1e-9)",
)
def _():
    from mcnet.nn.objective import Objective

    original = Objective.gauss_newton_product

    def mutated(self, w, v, batch):
        return original(self, w, v, batch) * (1 + 1e-9)

    Objective.gauss_newton_product = mutated


@mutation(
    "imaginary_part_1e-9",
    "gemm.imaginary_part (the parameter gradients of Objective.hvp): a_i b_r x (1 + 1e-9)",
)
def _():
    from mcnet.algebra import gemm, loops

    def mutated(a, b, out=None):
        ar, ai = loops.split_parts(a)[:2] if np.iscomplexobj(a) else (a, None)
        br, bi = loops.split_parts(b)[:2] if np.iscomplexobj(b) else (b, None)
        if out is None:
            out = np.empty((a.shape[0], b.shape[1]), dtype=np.result_type(ar, br))
        out[...] = 0
        if bi is not None:
            out += ar @ bi
        if ai is not None:
            out += (ai @ br) * (1 + 1e-9)
        return out

    gemm.imaginary_part = mutated


@mutation(
    "softplus_loop_1e-9",
    "loops.softplus (the CPU softplus, BCEWithLogitsLoss's forward): the derivative parts of "
    "its complex and one-direction order-2 results x (1 + 1e-9)",
)
def _():
    from mcnet import functions

    exact = functions._LOOPS["softplus"]

    def mutated(data):
        out = exact(data)
        if out is not None and out.dtype.kind == "c":
            out.imag *= 1 + 1e-9
        elif out is not None and len(out) == 3:
            out[1:] *= 1 + 1e-9
        return out

    functions._LOOPS["softplus"] = mutated
