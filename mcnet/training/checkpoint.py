"""Training checkpoints: one ``.npz`` file (no pickle), written atomically, in a locked folder.

It holds the flat parameters ``w``, the solver state (``state/<name>``, arrays and
scalars), and ``meta``: JSON with the completed epoch count, the run's identity (solver,
options, seed, batch size, dtype, the model's description and a fingerprint of the data: to
refuse resuming or replacing another run) and the history so far. All of fit's randomness
derives from (seed, epoch, iteration), so nothing else is needed to continue bit for bit.

A file is read without NumPy's loader: each array's header is checked against the bytes that
follow it before anything is allocated, and every fault -- a truncated, empty or foreign
file, a broken CRC, a malformed meta record -- is one `CheckpointError` naming the file.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import math
import os
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mcnet.errors import CheckpointError, OutputError
from mcnet.training.history import History, check_writable, write_atomic

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; the directory is used unlocked
    fcntl = None  # type: ignore[assignment]

FILENAME = "checkpoint.npz"
LOCKNAME = ".lock"
FORMAT = 2
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def save(directory: Path, w, state: dict[str, Any], meta: dict[str, Any]) -> Path:
    """Write the checkpoint atomically; a full disk (or any write fault) is a
    `CheckpointError` and leaves the previous checkpoint as it was."""
    # Any: the values are arrays, but mypy would match a ``**dict[str, ndarray]`` against
    # np.savez's bool ``allow_pickle`` keyword too.
    arrays: dict[str, Any] = {
        "w": _host(w),
        "meta": np.array(json.dumps({"format": FORMAT, **meta})),
    }
    for name, value in state.items():
        arrays[f"state/{name}"] = _host(value) if hasattr(value, "shape") else np.array(value)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path = Path(directory) / FILENAME
    try:
        write_atomic(path, buffer.getvalue())
    except OSError as exc:
        kept = "the previous checkpoint is kept" if path.is_file() else "nothing was written"
        advice = (
            "free some space" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "make it writable"
        )
        raise CheckpointError(
            f"cannot write the checkpoint {path} ({exc.strerror or exc}); {kept}: {advice} and "
            "resume from it"
        ) from exc
    return path


def load(directory: Path, xp) -> tuple[Any, dict[str, Any], dict[str, Any]] | None:
    """(w, state, meta) from the directory's checkpoint, or None if there is none.

    ``meta["history"]`` is a `History`. A file that is not a complete checkpoint of this
    format is a `CheckpointError` saying so and what to do.
    """
    path = Path(directory) / FILENAME
    if not os.path.lexists(path):
        return None
    arrays = read_npz(path)
    advice = "move it away, or start afresh with overwrite=True (mcnet train --overwrite)"
    try:
        meta = json.loads(str(arrays["meta"][()]))
        _check_meta(meta)
        meta["history"] = History.from_dict(meta["history"])
        w = arrays["w"]
        if w.ndim != 1 or w.dtype.kind != "f" or not np.isfinite(w).all():
            raise ValueError("w is not a finite 1-D float array")
    except (KeyError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise CheckpointError(
            f"checkpoint {path} is not one mcnet can resume ({exc}); {advice}"
        ) from exc
    state = {}
    for key, value in arrays.items():
        if key.startswith("state/"):
            # scalars were saved as 0-d arrays; arrays go back to the device
            state[key[6:]] = value.item() if value.ndim == 0 else xp.asarray(value)
    return xp.asarray(w), state, meta


def _check_meta(meta: Any) -> None:
    if not isinstance(meta, dict):
        raise TypeError(f"meta is {type(meta).__name__}, not a record")
    if meta.get("format") != FORMAT:
        raise ValueError(
            f"format {meta.get('format')!r}, expected {FORMAT}: written by another version of mcnet"
        )
    epoch = meta["epoch"]
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 1:
        raise ValueError(f"epoch {epoch!r} is not a count of epochs")
    for key in ("run", "history"):
        if not isinstance(meta[key], dict):
            raise TypeError(f"{key} is {type(meta[key]).__name__}, not a record")


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` file, every header checked before its array is allocated;
    object (pickled) arrays are refused. Any fault is a `CheckpointError` naming ``path``."""
    raw = _read_bytes(path)
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            arrays = {}
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    raise ValueError(f"member {info.filename!r} is not a .npy array")
                arrays[info.filename[:-4]] = _npy(archive.read(info))
    except Exception as exc:  # a damaged zip makes zipfile raise almost any exception type
        raise CheckpointError(
            f"{path} is damaged or not an .npz file mcnet wrote ({type(exc).__name__}: {exc}); "
            "move it away, or start afresh (overwrite=True, mcnet train --overwrite)"
        ) from exc
    return arrays


def read_npy(path: Path) -> np.ndarray:
    """The array of a ``.npy`` file, read like the members of `read_npz`."""
    raw = _read_bytes(path)
    try:
        return _npy(raw)
    except Exception as exc:  # a damaged header makes NumPy's parser raise many types
        raise CheckpointError(f"{path} is damaged or not a .npy array ({exc})") from exc


def _read_bytes(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _npy(raw: bytes) -> np.ndarray:
    """One ``.npy`` image: the header's shape and dtype must account for exactly the bytes
    that follow, so a damaged header cannot ask for a huge allocation."""
    stream = io.BytesIO(raw)
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
    else:
        raise ValueError(f"unsupported .npy version {version}")
    if dtype.hasobject:
        raise ValueError("it holds Python objects (a pickle), which are never loaded")
    count = math.prod(shape)
    if len(raw) - stream.tell() != count * dtype.itemsize:
        raise ValueError(
            f"the header announces {shape} of {dtype}, the data has "
            f"{len(raw) - stream.tell()} bytes"
        )
    flat = np.frombuffer(raw, dtype, count=count, offset=stream.tell())
    return flat.reshape(shape, order="F" if fortran else "C").copy()


def prepare(directory: Path) -> None:
    """Make ``directory`` (and its parents) if needed and check that a checkpoint can be
    written there; a `CheckpointError` saying what is wrong otherwise."""
    directory = Path(directory)
    if os.path.lexists(directory) and not directory.is_dir():
        raise CheckpointError(
            f"checkpoint directory {directory} is not a directory (expected "
            "a directory, or a path where one can be made)"
        )
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CheckpointError(
            f"cannot make the checkpoint directory {directory} "
            f"({exc.strerror or exc}); choose another path"
        ) from exc
    try:
        check_writable(directory / FILENAME)
    except OutputError as exc:
        raise CheckpointError(str(exc)) from exc


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``directory`` (its ``.lock`` file) for the block: a second
    run that trains into the same directory is refused instead of replacing this one's
    checkpoint. The kernel releases the lock when the process ends, however it ends."""
    path = Path(directory) / LOCKNAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise CheckpointError(
            f"cannot write in the checkpoint directory {directory} "
            f"({exc.strerror or exc}); make it writable or choose another"
        ) from exc
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                raise CheckpointError(
                    f"checkpoint directory {directory} is in use by another run (process "
                    f"{holder}); wait for it to end or choose another directory"
                ) from None
            except OSError as exc:  # a file system without locks (some network mounts)
                raise CheckpointError(
                    f"cannot lock the checkpoint directory {directory} "
                    f"({exc.strerror or exc}); choose a local directory"
                ) from exc
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def describe_model(module, loss) -> str:
    """The architecture as text: every module's class, arguments and parameter shapes, and
    the loss (object addresses removed, so the text is the same in every process)."""
    shapes = ", ".join(f"{name}: {tuple(p.shape)}" for name, p in module.named_parameters())
    text = f"{module!r} [{shapes}] {loss!r}"
    return _ADDRESS.sub("", " ".join(text.split()))


def fingerprint(data: tuple[Any, Any]) -> str:
    """BLAKE2b of the inputs' and targets' dtypes, shapes and bytes: another or reordered
    data set gives another fingerprint."""
    digest = hashlib.blake2b(digest_size=16)
    for array in data:
        array = np.ascontiguousarray(_host(array))
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.reshape(-1).view(np.uint8).data)
    return f"blake2b:{digest.hexdigest()}"


def _host(a) -> np.ndarray:
    return a.get() if hasattr(a, "get") and not isinstance(a, np.ndarray) else np.asarray(a)
