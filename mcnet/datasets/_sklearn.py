"""Data sets read through scikit-learn: LIBSVM text files and the embedded 8x8 digits."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from mcnet.errors import DataError

from ._files import to_unit_float

# The dense features are refused above this size: a stray huge feature index would
# otherwise ask for tens of GiB.
MAX_DENSE_BYTES = 4 << 30
# Labels are class indices: a network gets one output per class up to the largest.
MAX_LABEL = 100_000


def libsvm(
    path: str | os.PathLike,
    n_features: int | None = None,
    *,
    dtype: np.dtype | type = np.float64,
    remap_labels: bool = True,
    like: str | os.PathLike | None = None,
    max_bytes: int = MAX_DENSE_BYTES,
) -> tuple[np.ndarray, np.ndarray]:
    """Read a LIBSVM / svmlight text file.

    Returns ``(features, labels)``: dense ``(n, d)`` features of ``dtype`` (``d`` is
    ``n_features`` when given, so train and test files can share a width, else the largest
    index in the file) and int64 labels. Feature indices are one-based unless index 0
    appears (scikit-learn's ``load_svmlight_file`` rule).

    With ``remap_labels`` (the default) class labels become 0-based: labels that are all in
    {-1, +1} map to {0, 1}; otherwise labels must be non-negative integers, and when none is 0
    (the usual 1..K) they are shifted down by one. Because the shift depends on whether a 0
    occurs, pass ``remap_labels=False`` to get the integers exactly as written.

    ``like``: the training file, when ``path`` is its test file. The test file is then read
    with the training file's conventions -- its width (the default ``n_features``), its
    index base and its label mapping -- so nothing is relabelled differently; a label the
    training file does not have, or index 0 in a test file of a one-based training file,
    is an error.

    Everything is checked before the dense array is made: a `DataError` (a ``ValueError``)
    names the file and the line for an empty file, a non-finite feature or label, a
    non-integer or out-of-range label, an index beyond ``n_features``, and dense features
    larger than ``max_bytes`` (a stray huge index).
    """
    dtype = np.dtype(dtype)
    features, raw = _parse(path, dtype)
    zero_based = _has_index_zero(features)
    rule = raw
    if like is not None:
        train_features, rule = _parse(like, dtype)
        train_zero_based = _has_index_zero(train_features)
        if zero_based and not train_zero_based:
            row = int(np.flatnonzero(np.diff(features.indptr))[0])
            raise DataError(
                f"{path}: line {_line_of(path, row)} has feature index 0, but the training "
                f"file {like} is one-based (its indices start at 1); write both files with "
                "the same convention"
            )
        zero_based = train_zero_based
        width = train_features.shape[1] - (0 if zero_based else 1)
        n_features = width if n_features is None else n_features
        unknown = ~np.isin(raw, rule)
        if unknown.any():
            row = int(np.argmax(unknown))
            raise DataError(
                f"{path}: line {_line_of(path, row)} has label {raw[row]:g}, which the training "
                f"file {like} does not have (it has {_label_text(rule)})"
            )
    features = _columns(path, features, zero_based, n_features, dtype, max_bytes)
    labels = raw.astype(np.int64)
    if remap_labels:
        labels = _remap(path, labels, rule.astype(np.int64))
    return features, labels


def _parse(path: str | os.PathLike, dtype: np.dtype) -> tuple[Any, np.ndarray]:
    """(CSR features with column = index as written, float labels), checked for emptiness,
    non-finite values and label range."""
    # Imported here: scikit-learn is slow to import and only needed by these readers.
    from sklearn.datasets import load_svmlight_file

    try:
        features, raw = load_svmlight_file(os.fspath(path), dtype=dtype, zero_based=True)
    except (ValueError, OverflowError) as exc:  # OverflowError: an index beyond int64
        raise DataError(f"{path}: not a valid LIBSVM file ({exc})") from exc
    if features.shape[0] == 0:
        raise DataError(
            f"{path}: no examples (the file is empty or holds only comments; "
            "expected lines 'label index:value ...')"
        )
    bad = ~np.isfinite(features.data)
    if bad.any():
        position = int(np.argmax(bad))
        row = int(np.searchsorted(features.indptr, position, side="right")) - 1
        raise DataError(
            f"{path}: line {_line_of(path, row)}: feature {features.indices[position]} is "
            f"{features.data[position]} (expected finite numbers)"
        )
    bad = ~np.isfinite(raw) | (raw != np.round(raw)) | (np.abs(raw) > MAX_LABEL)
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(
            f"{path}: line {_line_of(path, row)}: label {raw[row]:g} is not a class label "
            f"(expected integers of magnitude at most {MAX_LABEL}; use "
            "sklearn.datasets.load_svmlight_file for regression targets)"
        )
    return features, raw


def _has_index_zero(features) -> bool:
    return bool(features.nnz) and int(features.indices.min()) == 0


def _columns(
    path, features, zero_based: bool, n_features: int | None, dtype: np.dtype, max_bytes: int
) -> np.ndarray:
    """Dense features with one-based indices moved down by one, after the checks that keep
    the dense array to the width asked for and to ``max_bytes``."""
    from scipy.sparse import csr_matrix

    indices = features.indices - (0 if zero_based else 1)
    largest = int(indices.max()) if indices.size else -1
    width = largest + 1 if n_features is None else n_features
    if largest >= width:
        position = int(np.argmax(indices >= width))
        row = int(np.searchsorted(features.indptr, position, side="right")) - 1
        raise DataError(
            f"{path}: line {_line_of(path, row)} has feature index "
            f"{features.indices[position]}, beyond the {width} features expected"
        )
    size = features.shape[0] * width * dtype.itemsize
    if size > max_bytes:
        position = int(np.argmax(indices))
        row = int(np.searchsorted(features.indptr, position, side="right")) - 1
        raise DataError(
            f"{path}: line {_line_of(path, row)} has feature index "
            f"{features.indices[position]}, which makes the dense features "
            f"{features.shape[0]} x {width} {dtype} = {size / 2**30:.3g} GiB, more than "
            f"max_bytes={max_bytes / 2**30:.3g} GiB (read sparse data with "
            "sklearn.datasets.load_svmlight_file)"
        )
    dense = csr_matrix((features.data, indices, features.indptr), shape=(features.shape[0], width))
    return dense.toarray()


def _remap(path, labels: np.ndarray, rule: np.ndarray) -> np.ndarray:
    """``labels`` mapped to 0-based classes by the rule that ``rule``'s labels decide."""
    if np.isin(rule, (-1, 1)).all():
        return (labels > 0).astype(np.int64)
    if rule.min() < 0:
        raise DataError(
            f"{path}: expected labels in {{-1, +1}} or non-negative integers, found {rule.min()}"
        )
    return labels - 1 if rule.min() >= 1 else labels


def _label_text(labels: np.ndarray) -> str:
    values = np.unique(labels)
    shown = ", ".join(f"{v:g}" for v in values[:12])
    return shown + (", ..." if len(values) > 12 else "")


def _line_of(path: str | os.PathLike, row: int) -> int:
    """The line number of example ``row`` (0-based): blank and comment lines are not
    examples."""
    number = 0
    with open(path, "rb") as file:
        for number, line in enumerate(file, 1):
            if line.split(b"#", 1)[0].strip():
                if row == 0:
                    return number
                row -= 1
    return number


def digits(*, dtype: np.dtype | type = np.float64) -> tuple[np.ndarray, np.ndarray]:
    """The 1797 8x8 handwritten digits shipped inside scikit-learn (no files needed).

    Returns ``(images, labels)``: images ``(1797, 1, 8, 8)`` of ``dtype`` in [0, 1] (the raw
    values 0..16 divided by 16), labels int64 in 0..9.
    """
    from sklearn.datasets import load_digits

    data = load_digits()
    return to_unit_float(data.images[:, None], dtype, scale=16.0), data.target.astype(np.int64)
