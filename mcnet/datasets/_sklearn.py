"""Data sets read through scikit-learn: LIBSVM text files and the embedded 8x8 digits."""

from __future__ import annotations

import os

import numpy as np

from ._files import to_unit_float


def libsvm(
    path: str | os.PathLike,
    n_features: int | None = None,
    *,
    dtype: np.dtype | type = np.float64,
    remap_labels: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Read a LIBSVM / svmlight text file.

    Returns ``(features, labels)``: dense ``(n, d)`` features of ``dtype`` (``d`` is
    ``n_features`` when given, so train and test files can share a width, else the largest
    index in the file) and int64 labels. Feature indices follow scikit-learn's
    ``load_svmlight_file`` (one-based unless index 0 appears).

    With ``remap_labels`` (the default) class labels become 0-based: labels that are all in
    {-1, +1} map to {0, 1}; otherwise labels must be non-negative integers, and when none is 0
    (the usual 1..K) they are shifted down by one. Because the shift depends on whether a 0
    occurs, pass ``remap_labels=False`` to get the integers exactly as written.
    """
    # Imported here: scikit-learn is slow to import and only needed by these readers.
    from sklearn.datasets import load_svmlight_file

    try:
        features, raw = load_svmlight_file(os.fspath(path), n_features=n_features, dtype=dtype)
    except ValueError as exc:
        raise ValueError(f"{path}: not a valid LIBSVM file ({exc})") from exc
    if not np.array_equal(raw, np.round(raw)):
        raise ValueError(
            f"{path}: expected integer class labels, found {raw[raw != np.round(raw)][0]}; "
            "use sklearn.datasets.load_svmlight_file for regression targets"
        )
    labels = raw.astype(np.int64)
    if remap_labels and labels.size:
        if np.isin(labels, (-1, 1)).all():
            labels = (labels > 0).astype(np.int64)
        elif labels.min() < 0:
            raise ValueError(
                f"{path}: expected labels in {{-1, +1}} or non-negative integers, "
                f"found {labels.min()}"
            )
        elif labels.min() >= 1:
            labels -= 1
    return features.toarray(), labels


def digits(*, dtype: np.dtype | type = np.float64) -> tuple[np.ndarray, np.ndarray]:
    """The 1797 8x8 handwritten digits shipped inside scikit-learn (no files needed).

    Returns ``(images, labels)``: images ``(1797, 1, 8, 8)`` of ``dtype`` in [0, 1] (the raw
    values 0..16 divided by 16), labels int64 in 0..9.
    """
    from sklearn.datasets import load_digits

    data = load_digits()
    return to_unit_float(data.images[:, None], dtype, scale=16.0), data.target.astype(np.int64)
