"""Default initialisation, drawn like PyTorch's (uniform bounds from the fan-in)."""

from __future__ import annotations

import numpy as np

_rng = np.random.default_rng()


def manual_seed(seed: int) -> None:
    """Seed the generator that draws every module's initial parameters."""
    global _rng
    _rng = np.random.default_rng(seed)


def generator() -> np.random.Generator:
    """The generator behind initialisation (and the first Dropout masks)."""
    return _rng


def uniform(shape: tuple[int, ...], bound: float) -> np.ndarray:
    """U(-bound, bound) samples of the given shape, float64."""
    return _rng.uniform(-bound, bound, size=shape)
