"""SVHN (Street View House Numbers), cropped digits: ``train_32x32.mat``, ``test_32x32.mat``."""

from __future__ import annotations

import os

import numpy as np

from mcnet.errors import DataError

from ._files import find_files, to_unit_float

_SPLITS = ("train", "test")


def svhn(
    root: str | os.PathLike | None = None,
    split: str = "train",
    *,
    dtype: np.dtype | type = np.float64,
) -> tuple[np.ndarray, np.ndarray]:
    """SVHN ``split`` ("train": 73257, "test": 26032 examples) from ``<split>_32x32.mat``.

    Files are looked up in ``root/svhn/`` then ``root/``. Returns ``(images, labels)``: images
    ``(n, 3, 32, 32)`` of ``dtype`` in [0, 1], labels int64 in 0..9 (the files store digit 0
    as label 10; it is mapped to 0).
    """
    # Imported here: scipy.io is only needed for this one data set.
    import scipy.io

    if split not in _SPLITS:
        raise ValueError(f"split must be one of {list(_SPLITS)}, got {split!r}")
    (path,) = find_files("svhn", [f"{split}_32x32.mat"], root)
    try:
        mat = scipy.io.loadmat(path, variable_names=["X", "y"])
    except Exception as exc:  # scipy raises many exception types on a corrupt .mat file
        raise DataError(f"{path}: not a readable MATLAB .mat file ({exc})") from exc
    if "X" not in mat or "y" not in mat:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise DataError(f"{path}: expected variables X and y, found {found}")
    images, labels = mat["X"], mat["y"].reshape(-1)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[:3] != (32, 32, 3):
        raise DataError(
            f"{path}: expected X of uint8 and shape (32, 32, 3, n), "
            f"found {images.dtype} and shape {images.shape}"
        )
    if len(labels) != images.shape[3]:
        raise DataError(
            f"{path}: X holds {images.shape[3]} images but y holds {len(labels)} labels"
        )
    if labels.size and (labels.min() < 1 or labels.max() > 10):
        raise DataError(f"{path}: expected labels in 1..10, found {labels.min()}..{labels.max()}")
    # X is (row, col, channel, n); NCHW wants (n, channel, row, col).
    images = to_unit_float(images.transpose(3, 2, 0, 1), dtype)
    return images, (labels % 10).astype(np.int64)
