"""IDX files (MNIST, Fashion-MNIST) and the two data sets stored in them."""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np

from mcnet.errors import DataError

from ._files import find_files, to_unit_float

# IDX type codes (third byte of the magic number) -> big-endian element type.
_IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions (n, rows, cols)
LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension (n,)

_SPLIT_PREFIX = {"train": "train", "test": "t10k"}


def read_idx(path: str | os.PathLike, expected_magic: int | None = None) -> np.ndarray:
    """Read an IDX file (gzip-compressed when the name ends in ``.gz``).

    Returns the array in native byte order with the shape stored in the header. Raises
    `DataError` (a ``ValueError``) naming the file on an empty file, a bad gzip stream, a
    wrong magic number (or one other than ``expected_magic``), or a data size that does not
    match the header.
    """
    path = Path(path)
    raw = _read_bytes(path)
    if not raw:
        raise DataError(
            f"{path}: empty file (expected an IDX file: a 4-byte magic number, "
            "the dimensions, the data)"
        )
    if len(raw) < 4:
        raise DataError(
            f"{path}: truncated IDX header: expected at least 4 bytes, found {len(raw)}"
        )
    magic = int.from_bytes(raw[:4], "big")
    zero, type_code, ndim = magic >> 16, (magic >> 8) & 0xFF, magic & 0xFF
    if expected_magic is not None and magic != expected_magic:
        raise DataError(
            f"{path}: expected IDX magic number {expected_magic} (0x{expected_magic:08x}), "
            f"found {magic} (0x{magic:08x})"
        )
    if zero != 0 or type_code not in _IDX_TYPES:
        raise DataError(
            f"{path}: not an IDX file: expected magic number 0x0000TTDD with type code TT in "
            f"{{{', '.join(f'0x{t:02x}' for t in _IDX_TYPES)}}}, found 0x{magic:08x}"
        )
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise DataError(
            f"{path}: truncated IDX header: expected {header_size} bytes for {ndim} dimensions, "
            f"found {len(raw)}"
        )
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = _IDX_TYPES[type_code]
    expected = math.prod(shape) * dtype.itemsize  # Python ints: a huge header cannot wrap
    found = len(raw) - header_size
    if found != expected:
        raise DataError(
            f"{path}: expected {expected} bytes of data for shape {shape}, found {found}"
        )
    data = np.frombuffer(raw, dtype, offset=header_size).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def _read_bytes(path: Path) -> bytes:
    if path.suffix != ".gz":
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except (OSError, EOFError, zlib.error) as exc:
        # gzip.BadGzipFile is an OSError; a cut-off stream raises EOFError.
        raise DataError(f"{path}: not a valid gzip file ({exc})") from exc


def _load_idx_pair(
    name: str, root: str | os.PathLike | None, split: str, dtype: np.dtype | type
) -> tuple[np.ndarray, np.ndarray]:
    """Images (n, 1, rows, cols) in [0, 1] and int64 labels 0..9 of an MNIST-format data set."""
    if split not in _SPLIT_PREFIX:
        raise ValueError(f"split must be one of {sorted(_SPLIT_PREFIX)}, got {split!r}")
    prefix = _SPLIT_PREFIX[split]
    image_path, label_path = find_files(
        name, [f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-labels-idx1-ubyte.gz"], root
    )
    images = read_idx(image_path, IMAGES_MAGIC)
    labels = read_idx(label_path, LABELS_MAGIC)
    if len(images) != len(labels):
        raise DataError(
            f"{image_path} holds {len(images)} images but {label_path} holds {len(labels)} labels"
        )
    if labels.size and labels.max() > 9:
        raise DataError(f"{label_path}: expected labels in 0..9, found {labels.max()}")
    return to_unit_float(images[:, None], dtype), labels.astype(np.int64)


def mnist(
    root: str | os.PathLike | None = None,
    split: str = "train",
    *,
    dtype: np.dtype | type = np.float64,
) -> tuple[np.ndarray, np.ndarray]:
    """MNIST ``split`` ("train": 60000, "test": 10000 examples) from the four IDX ``.gz`` files.

    Returns ``(images, labels)``: images ``(n, 1, 28, 28)`` of ``dtype`` in [0, 1], labels
    int64 in 0..9. Files are looked up in ``root/mnist/`` then ``root/`` (see ``data_root``).
    """
    return _load_idx_pair("mnist", root, split, dtype)


def fashion_mnist(
    root: str | os.PathLike | None = None,
    split: str = "train",
    *,
    dtype: np.dtype | type = np.float64,
) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST ``split``; same files, layout and return values as :func:`mnist`.

    Files are looked up in ``root/fashion_mnist/`` then ``root/``; since they carry the same
    names as MNIST's, keep each data set in its own subfolder.
    """
    return _load_idx_pair("fashion_mnist", root, split, dtype)
