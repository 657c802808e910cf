"""`BatchNorm1d` and `BatchNorm2d`: PyTorch's batch normalisation with a full backward.

Train mode normalises by the batch statistics, computed in the algebra (so a complex or
bicomplex pass differentiates through them): mean and the *biased* variance over every axis
but the channel axis.  Eval mode normalises by the running statistics (an affine map per
channel).

The rule for the running statistics: a call of the module in train mode on real values
(input, weight and bias all of order 0) updates them, with the *unbiased* variance and
``momentum`` as PyTorch does; derivative passes (complex, bicomplex, ...) never do.
`mcnet.Objective`'s methods never do either: each is a pure function of w, whatever it
computes and however many passes it takes (they run inside ``running_statistics_frozen``).
``Objective.update_running_statistics(w, batch)`` is the one call that updates them, and
``mcnet.fit`` makes it once per training step, on that step's batch at the step's w.

An exponential average of past steps' statistics lags behind parameters that change fast
(a second-order step can turn a layer within a few steps): `recompute_running_statistics`
sets them to the statistics of the data at the parameters as they are, which ``mcnet.fit``
does before each evaluation (Wu & Johnson 2021, "Rethinking 'batch' in BatchNorm":
PreciseBN; PyTorch's ``torch.optim.swa_utils.update_bn``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Iterator

import numpy as np

from mcnet.algebra.multicomplex import array_module
from mcnet.functions import sqrt
from mcnet.nn import loops
from mcnet.nn.module import Module, Parameter, real_or_order_one
from mcnet.tensor import Tensor, tensor

_FROZEN = threading.local()  # per thread: Objective's passes may run on worker threads


@contextlib.contextmanager
def running_statistics_frozen() -> Iterator[None]:
    """Within the block no BatchNorm call updates its running statistics (in this thread)."""
    _FROZEN.depth = getattr(_FROZEN, "depth", 0) + 1
    try:
        yield
    finally:
        _FROZEN.depth -= 1


@dataclasses.dataclass(frozen=True)
class _Fused:
    """What the fused loops' forward keeps: the normalised values ``(N, C, H, W)`` and each
    channel's 1 / sqrt(var + eps) ``(C,)``, as tensors (``Objective`` may take their real
    parts)."""

    normalised: Tensor
    inv_std: Tensor


class _BatchNorm(Module):
    """See the module docstring for when the running statistics are updated."""

    _ranks: tuple[int, ...] = ()
    _layout = ""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        self.num_features, self.eps, self.momentum = int(num_features), float(eps), float(momentum)
        self.weight = Parameter(np.ones(self.num_features))
        self.bias = Parameter(np.zeros(self.num_features))
        self.register_buffer("running_mean", np.zeros(self.num_features))
        self.register_buffer("running_var", np.ones(self.num_features))
        self.register_buffer("num_batches_tracked", np.array(0, dtype=np.int64))

    def _check(self, x: Tensor) -> None:
        name = type(self).__name__
        if x.ndim not in self._ranks:
            raise ValueError(
                f"{name} expected a {' or '.join(f'{r}-D' for r in self._ranks)} input "
                f"{self._layout}, got shape {x.shape} ({x.ndim}-D)"
            )
        if x.shape[1] != self.num_features:
            raise ValueError(
                f"{name} expected {self.num_features} channels (axis 1), got {x.shape[1]} "
                f"(input shape {x.shape})"
            )

    def forward(self, x: Tensor) -> Tensor:
        self._check(x)
        axes = (0, *range(2, x.ndim))
        channel = (1, -1) + (1,) * (x.ndim - 2)  # per-channel values broadcast along axis 1
        xp = array_module(x.data)
        if self.training:
            count = x.size // self.num_features
            if count < 2:
                raise ValueError(
                    f"{type(self).__name__} in train mode needs more than 1 value per channel, "
                    f"got input shape {x.shape}"
                )
            if self._fused(x):
                return self._forward_fused(x, count)
            mean = x.mean(axis=axes, keepdims=True)
            centred = x - mean
            var = (centred * centred).mean(axis=axes, keepdims=True)
            inv_std = 1.0 / sqrt(var + self.eps)
            real = x.order == 0 and self.weight.value.order == 0 and self.bias.value.order == 0
            if real and not getattr(_FROZEN, "depth", 0):
                self._update_running(mean.real.reshape(-1), var.real.reshape(-1), count)
        else:
            mean = xp.asarray(self.buffer("running_mean"), dtype=x.dtype).reshape(channel)
            var = xp.asarray(self.buffer("running_var"), dtype=x.dtype).reshape(channel)
            centred = x - mean
            inv_std = Tensor((1.0 / xp.sqrt(var + self.eps))[None])
        normalised = centred * inv_std
        self.saved = (normalised, inv_std, axes, self.training)
        return normalised * self.weight.value.reshape(channel) + self.bias.value.reshape(channel)

    def _update_running(self, mean, var, count: int) -> None:
        """PyTorch's running update: biased-to-unbiased variance, exponential average."""
        if array_module(mean) is not np:  # pragma: no cover - GPU only
            mean, var = mean.get(), var.get()
        m = self.momentum
        unbiased = var * (count / (count - 1))
        self._buffers["running_mean"] = (1 - m) * self.buffer("running_mean") + m * mean
        self._buffers["running_var"] = (1 - m) * self.buffer("running_var") + m * unbiased
        self._buffers["num_batches_tracked"] = self.buffer("num_batches_tracked") + 1

    def _fused(self, x: Tensor) -> bool:
        """Whether the fused loops (``loops.batch_norm``) apply: NCHW images, real or complex
        of order 1 on the CPU, with weight and bias of one component, all of one precision.
        Other orders (a vᵀHv pass's) take the tensor operations."""
        operands = (x.data, self.weight.value.data, self.bias.value.data)
        return (
            x.ndim == 4
            and all(real_or_order_one(d) for d in operands)
            and len({np.finfo(d.dtype).dtype for d in operands}) == 1
        )

    def _forward_fused(self, x: Tensor, count: int) -> Tensor:
        """Train mode by the fused loops: two passes over each channel instead of seven
        tensor operations."""
        weight, bias = self.weight.value.data[0], self.bias.value.data[0]
        out, normalised, stats = loops.batch_norm(x.data, weight, bias, self.eps)
        real = out.dtype.kind == "f"
        if real and not getattr(_FROZEN, "depth", 0):
            self._update_running(stats[:, 0], stats[:, 1], count)
        self.saved = _Fused(Tensor(normalised), Tensor(stats[None, :, 2]))
        return Tensor(out)

    def backward(self, grad_out: Tensor) -> Tensor:
        saved = self.saved
        if isinstance(saved, _Fused):
            if real_or_order_one(grad_out.data) and real_or_order_one(self.weight.value.data):
                grad_in, weight_grad, bias_grad = loops.batch_norm_backward(
                    grad_out.data, saved.normalised.data, self.weight.value.data[0],
                    saved.inv_std.data[0],
                )  # fmt: skip
                self.weight.accumulate(Tensor(weight_grad[None]))
                self.bias.accumulate(Tensor(bias_grad[None]))
                return Tensor(grad_in)
            # another order of gradient: the tensor operations, on the same values
            saved = (saved.normalised, saved.inv_std.reshape(1, -1, 1, 1), (0, 2, 3), True)
        normalised, inv_std, axes, batch_stats = saved
        channel = (1, -1) + (1,) * (grad_out.ndim - 2)
        self.weight.accumulate((grad_out * normalised).sum(axis=axes))
        self.bias.accumulate(grad_out.sum(axis=axes))
        grad_normalised = grad_out * self.weight.value.reshape(channel)
        if not batch_stats:  # eval: a fixed affine map per channel
            return grad_normalised * inv_std
        # through the batch mean and variance: the standard closed form
        mean_grad = grad_normalised.mean(axis=axes, keepdims=True)
        mean_proj = (grad_normalised * normalised).mean(axis=axes, keepdims=True)
        return (grad_normalised - mean_grad - normalised * mean_proj) * inv_std

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


def recompute_running_statistics(module: Module, inputs, batch_size: int = 128) -> bool:
    """Set the running statistics of every BatchNorm in train mode in ``module`` to the
    count-weighted mean of its batch statistics over ``inputs``, split into batches of about
    ``batch_size`` examples (the batch size the statistics are meant for), at the module's
    parameters. Other layers run in eval mode (no dropout); ``num_batches_tracked`` and
    every layer's mode are left as they were. Returns whether there was a BatchNorm to set.
    """
    norms = [m for m in module.modules() if isinstance(m, _BatchNorm) and m.training]
    if not norms:
        return False
    params = module.parameters()
    dtype, device = params[0].value.dtype, params[0].value.device
    saved = [(m.momentum, m.buffer("num_batches_tracked")) for m in norms]
    modes = [(layer, layer.training) for layer in module.modules()]
    module.eval()
    for m in norms:
        m.train()
    seen = 0
    try:
        for part in np.array_split(np.arange(len(inputs)), max(1, len(inputs) // batch_size)):
            for m in norms:  # the running mean of the batches so far, weighted by their sizes
                m.momentum = len(part) / (seen + len(part))
            batch = inputs[int(part[0]) : int(part[-1]) + 1]  # a slice: NumPy or CuPy inputs
            module(tensor(batch, dtype=dtype, device=device))
            seen += len(part)
    finally:
        for layer, mode in modes:
            object.__setattr__(layer, "training", mode)  # this module alone, not its children
        for m, (momentum, tracked) in zip(norms, saved):
            m.momentum = momentum
            m._buffers["num_batches_tracked"] = tracked
    return True


class BatchNorm1d(_BatchNorm):
    """Batch normalisation of (N, C) or (N, C, L) inputs over N (and L).

    Running statistics: a real train-mode call updates them; `mcnet.Objective`'s methods
    never do, ``Objective.update_running_statistics`` does (``mcnet.fit``: once per step).
    """

    _ranks = (2, 3)
    _layout = "(N, C) or (N, C, L)"


class BatchNorm2d(_BatchNorm):
    """Batch normalisation of NCHW images over N, H and W.

    Running statistics: a real train-mode call updates them; `mcnet.Objective`'s methods
    never do, ``Objective.update_running_statistics`` does (``mcnet.fit``: once per step).
    """

    _ranks = (4,)
    _layout = "(N, C, H, W)"
