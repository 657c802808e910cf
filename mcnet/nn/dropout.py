"""`Dropout` whose mask is drawn once and reused by every pass until resampled.

A second-order method evaluates one function several times (real, complex, bicomplex passes);
with a fresh mask per call those would be different functions and H v would be meaningless.
So the mask is drawn on the first train-mode call and kept until ``resample()`` is called (or
the input shape changes); ``resample_dropout(module, seed)`` resamples every Dropout of a
network, e.g. once per minibatch.  Eval mode is the identity.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mcnet.algebra.multicomplex import array_module
from mcnet.nn import init
from mcnet.nn.module import Module
from mcnet.tensor import Tensor


class Dropout(Module):
    """Zeroes each element with probability ``p`` and scales the rest by 1/(1-p) (train mode)."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout probability must be in [0, 1], got {p}")
        self.p = float(p)
        # seeded from the initialisation generator, so nn.manual_seed makes masks reproducible
        self._rng = np.random.default_rng(init.generator().integers(2**63))
        self._mask: np.ndarray | None = None

    def resample(self, seed: int | np.random.SeedSequence | None = None) -> None:
        """Draw a new mask at the next call (from a fresh generator seeded by ``seed`` if given)."""
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self._mask = None

    def mask(self, shape: tuple[int, ...]) -> np.ndarray:
        """The current mask (keep / (1 - p), float64) for inputs of this shape."""
        if self._mask is None or self._mask.shape != shape:
            keep = self._rng.random(shape) >= self.p
            self._mask = keep * (1.0 / (1.0 - self.p)) if self.p < 1 else np.zeros(shape)
        return self._mask

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            self.saved = None
            return x
        xp = array_module(x.data)
        mask = xp.asarray(self.mask(x.shape), dtype=x.dtype)
        self.saved = mask
        return Tensor(x.data * mask)  # a real mask scales every component alike

    def backward(self, grad_out: Tensor) -> Tensor:
        mask = self.saved
        return grad_out if mask is None else Tensor(grad_out.data * mask)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def resample_dropout(module: Module, seed: int | Sequence[int] | None = None) -> None:
    """Resample the mask of every Dropout in ``module`` (deterministic when ``seed`` is given)."""
    layers = [m for m in module.modules() if isinstance(m, Dropout)]
    if seed is None:
        seeds: list = [None] * len(layers)
    else:
        seeds = np.random.SeedSequence(seed).spawn(len(layers))
    for layer, layer_seed in zip(layers, seeds):
        layer.resample(layer_seed)
