"""CIFAR-10 from the python batches, packed (``cifar-10-python.tar.gz``) or extracted."""

from __future__ import annotations

import io
import os
import pickle
import tarfile
import zlib
from pathlib import Path

import numpy as np

from mcnet.errors import DataError

from ._files import DatasetNotFoundError, data_root, missing_error, to_unit_float

ARCHIVE = "cifar-10-python.tar.gz"
FOLDER = "cifar-10-batches-py"
_BATCHES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}

# The batches are pickles. Only the globals needed to rebuild NumPy arrays (as NumPy 1 and 2
# name them) and bytes (protocol 2 from Python 3 stores them through _codecs.encode) may be
# loaded, so a tampered file cannot run code when it is read.
_ALLOWED_GLOBALS = {
    (core, name)
    for core in ("numpy.core.multiarray", "numpy._core.multiarray")
    for name in ("_reconstruct", "scalar")
} | {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        return super().find_class(module, name)


def cifar10(
    root: str | os.PathLike | None = None,
    split: str = "train",
    *,
    dtype: np.dtype | type = np.float64,
) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 ``split`` ("train": 50000, "test": 10000 examples).

    Reads ``cifar-10-batches-py/`` or, failing that, ``cifar-10-python.tar.gz`` from
    ``root/cifar10/`` then ``root/``. Returns ``(images, labels)``: images ``(n, 3, 32, 32)``
    of ``dtype`` in [0, 1], labels int64 in 0..9.
    """
    if split not in _BATCHES:
        raise ValueError(f"split must be one of {sorted(_BATCHES)}, got {split!r}")
    names = _BATCHES[split]
    base = data_root(root)
    for folder in (base / "cifar10", base):
        if (folder / FOLDER).is_dir():
            batches = _read_folder(folder / FOLDER, names)
            break
        if (folder / ARCHIVE).is_file():
            batches = _read_archive(folder / ARCHIVE, names)
            break
    else:
        raise missing_error("cifar10", [f"{ARCHIVE} (or the extracted {FOLDER}/)"], base)
    parsed = [_parse_batch(source, raw) for source, raw in batches]
    images = np.concatenate([data for data, _ in parsed]).reshape(-1, 3, 32, 32)
    labels = np.concatenate([labels for _, labels in parsed])
    return to_unit_float(images, dtype), labels


def _read_folder(folder: Path, names: list[str]) -> list[tuple[str, bytes]]:
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        raise DatasetNotFoundError(
            f"cifar10: missing {', '.join(missing)} in {folder}; put them there or remove the "
            f"folder and place {ARCHIVE} beside it (mcnet.datasets.download('cifar10'))."
        )
    return [(str(folder / name), (folder / name).read_bytes()) for name in names]


def _read_archive(archive: Path, names: list[str]) -> list[tuple[str, bytes]]:
    wanted = {f"{FOLDER}/{name}": name for name in names}
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            # One pass in archive order: seeking back in a gzip stream decompresses it again.
            for member in tar:
                if member.name in wanted and member.isfile():
                    # extractfile is None only for members that are not regular files
                    found[member.name] = tar.extractfile(member).read()  # type: ignore[union-attr]
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{archive}: not a valid tar.gz archive ({exc})") from exc
    missing = [member for member in wanted if member not in found]
    if missing:
        raise DataError(f"{archive}: expected members {missing}, not found in the archive")
    return [(f"{archive}:{member}", found[member]) for member in wanted]


def _parse_batch(source: str, raw: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 data (n, 3072), int64 labels) of one pickled batch; ``source`` names it in errors."""
    try:
        batch = _ArrayUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as exc:  # garbage can make the unpickler raise almost any exception type
        raise DataError(f"{source}: not a valid CIFAR-10 batch pickle ({exc})") from exc
    if not isinstance(batch, dict):
        raise DataError(f"{source}: expected a dict, found {type(batch).__name__}")
    # The official files (pickled by Python 2) have bytes keys; accept str keys as well.
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in batch or "labels" not in batch:
        raise DataError(
            f"{source}: expected keys b'data' and b'labels', found {sorted(map(repr, batch))}"
        )
    data, labels = np.asarray(batch["data"]), np.asarray(batch["labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(
            f"{source}: expected b'data' of uint8 and shape (n, 3072), "
            f"found {data.dtype} and shape {data.shape}"
        )
    if labels.shape != (len(data),) or (labels.size and labels.dtype.kind not in "iu"):
        raise DataError(
            f"{source}: expected {len(data)} integer labels, found {labels.dtype} "
            f"and shape {labels.shape}"
        )
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"{source}: expected labels in 0..9, found {labels.min()}..{labels.max()}")
    return data, labels.astype(np.int64)
