"""Seeded minibatches over ``(inputs, targets)``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

_DEVICES = ("cpu", "cuda")


def batches(
    data: tuple[Any, Any],
    batch_size: int,
    *,
    shuffle: bool = True,
    seed: int = 0,
    epoch: int = 0,
    drop_last: bool = False,
    dtype: np.dtype | type | None = None,
    device: str = "cpu",
) -> Iterator[tuple[Any, Any]]:
    """Yield ``(inputs[idx], targets[idx])`` minibatches covering the data once.

    The order is a permutation drawn from ``numpy.random.default_rng([seed, epoch])`` (the
    same seed and epoch always give the same order, another epoch another order), or the
    stored order when ``shuffle`` is false. Every batch has ``batch_size`` examples except a
    shorter last one, which ``drop_last`` leaves out. ``dtype`` converts the inputs (targets
    keep theirs). ``device="cpu"`` yields NumPy arrays, ``"cuda"`` CuPy arrays.
    Arguments are checked when this is called, not when iteration starts.
    """
    inputs, targets = data
    n = _check(inputs, targets, batch_size, device)
    to_device = _device_converter(device)
    return _generate(
        inputs, targets, n, batch_size, shuffle, seed, epoch, drop_last, dtype, to_device
    )


def _generate(inputs, targets, n, batch_size, shuffle, seed, epoch, drop_last, dtype, to_device):
    order = np.random.default_rng([seed, epoch]).permutation(n) if shuffle else None
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        end = start + batch_size
        # Without shuffling, slices are views: no copy of the data set per batch.
        idx = slice(start, end) if order is None else order[start:end]
        x, y = inputs[idx], targets[idx]
        if dtype is not None:
            x = x.astype(dtype, copy=False)
        yield to_device(x), to_device(y)


def _check(inputs: Any, targets: Any, batch_size: int, device: str) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise TypeError(f"batch_size must be an integer, got {batch_size!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if len(inputs) != len(targets):
        raise ValueError(
            f"inputs and targets must have the same length: inputs has {len(inputs)} "
            f"examples, targets has {len(targets)}"
        )
    if device not in _DEVICES:
        raise ValueError(f"device must be one of {list(_DEVICES)}, got {device!r}")
    return len(inputs)


def _device_converter(device: str):
    if device == "cpu":
        return np.asarray
    try:
        # Imported lazily: CuPy is an optional dependency (pip install mcnet[cuda]).
        import cupy
    except ImportError as exc:
        raise ImportError(
            "device='cuda' needs CuPy, which is not installed; install it with "
            "`pip install mcnet[cuda]` or use device='cpu'"
        ) from exc
    return cupy.asarray


class DataLoader:
    """Re-iterable minibatches: each ``for`` loop over it is one epoch.

    Iteration ``k`` (counting from the ``epoch`` attribute, 0 by default, which may be set)
    uses :func:`batches` with ``epoch=k``, so a run is reproducible from ``seed`` alone and
    each epoch sees a fresh order. ``len()`` is the number of batches per epoch.
    """

    def __init__(
        self,
        data: tuple[Any, Any],
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        dtype: np.dtype | type | None = None,
        device: str = "cpu",
    ) -> None:
        inputs, targets = data
        self.n = _check(inputs, targets, batch_size, device)
        self.data = (inputs, targets)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.dtype = dtype
        self.device = device
        self.epoch = 0

    def __len__(self) -> int:
        full, rest = divmod(self.n, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        return batches(
            self.data,
            self.batch_size,
            shuffle=self.shuffle,
            seed=self.seed,
            epoch=epoch,
            drop_last=self.drop_last,
            dtype=self.dtype,
            device=self.device,
        )
