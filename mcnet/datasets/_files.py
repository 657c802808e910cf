"""Where data set files live, how they are found, and how they are downloaded."""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path
from urllib.error import URLError
from urllib.request import urlopen

import numpy as np

from mcnet.errors import DataError


class DatasetNotFoundError(FileNotFoundError):
    """A data set's files are not on disk (or could not be fetched)."""


@dataclass(frozen=True)
class Resource:
    """One distribution file: its name on disk, where to fetch it, and its checksum.

    ``checksum`` is ``"<algorithm>:<hex digest>"`` for any :mod:`hashlib` algorithm, e.g.
    ``"md5:..."`` or ``"sha256:..."``.
    """

    filename: str
    url: str
    checksum: str


def _idx_resources(base_url: str, md5s: dict[str, str]) -> list[Resource]:
    return [Resource(name, base_url + name, "md5:" + md5) for name, md5 in md5s.items()]


# The checksums are the ones torchvision publishes for the same files.
RESOURCES: dict[str, list[Resource]] = {
    "mnist": _idx_resources(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        {
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
    ),
    "fashion_mnist": _idx_resources(
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        {
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
    ),
    "cifar10": [
        Resource(
            "cifar-10-python.tar.gz",
            "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
            "md5:c58f30108f718f92721af3b95e74349a",
        )
    ],
    "svhn": [
        Resource(
            "train_32x32.mat",
            "http://ufldl.stanford.edu/housenumbers/train_32x32.mat",
            "md5:e26dedcc434d2e4c54c9b2d4a06d8373",
        ),
        Resource(
            "test_32x32.mat",
            "http://ufldl.stanford.edu/housenumbers/test_32x32.mat",
            "md5:eb5a983be6a315427106f1b164d9cef3",
        ),
    ],
}

_CHUNK = 1 << 20
# seconds without an answer before a download gives up
DOWNLOAD_TIMEOUT = 30.0


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data folder: ``root`` if given, else ``$MCNET_DATA``, else ``~/.mcnet/data``."""
    if root is None:
        root = os.environ.get("MCNET_DATA") or "~/.mcnet/data"
    return Path(root).expanduser()


def find_files(name: str, filenames: list[str], root: str | os.PathLike | None) -> list[Path]:
    """Paths of ``filenames`` for data set ``name``, looked up in ``root/name/`` then ``root/``.

    A ``.gz`` name is also found decompressed (without the suffix). Raises
    :class:`DatasetNotFoundError` naming every missing file and the folder to put it in.
    """
    base = data_root(root)
    folders = [base / name, base]
    found, missing = [], []
    for filename in filenames:
        variants = [filename, filename.removesuffix(".gz")]
        hits = [folder / v for folder in folders for v in variants if (folder / v).is_file()]
        if hits:
            found.append(hits[0])
        else:
            missing.append(filename)
    if missing:
        raise missing_error(name, missing, base)
    return found


def missing_error(name: str, missing: list[str], base: Path) -> DatasetNotFoundError:
    """The error for absent files: what is missing, where it was looked for, what to do."""
    return DatasetNotFoundError(
        f"{name}: missing {', '.join(missing)} (looked in {base / name} and {base}). "
        f"Put the files in {base / name} or run "
        f"mcnet.datasets.download({name!r}, root={str(base)!r})."
    )


def download(
    name: str, root: str | os.PathLike | None = None, *, timeout: float = DOWNLOAD_TIMEOUT
) -> Path:
    """Fetch the distribution files of data set ``name`` into ``root/name/``.

    Returns that folder. Files already there are kept when their checksum matches and
    fetched again when it does not (a damaged or foreign file is replaced only by a verified
    one). Each file is written to a temporary file in the same folder and renamed into place
    only after its checksum matches, so an interrupted or corrupt download never leaves a
    file that looks complete. ``timeout`` bounds, in seconds, the connection and every wait
    for more data: a server that stalls is an error, not a hang.
    Raises :class:`DatasetNotFoundError` when a file cannot be fetched (unreachable, timed
    out, cut off) and :class:`mcnet.DataError` (a ``ValueError``) on a checksum mismatch.
    """
    if name not in RESOURCES:
        raise ValueError(f"unknown data set {name!r}; expected one of {sorted(RESOURCES)}")
    if not (isinstance(timeout, (int, float)) and timeout > 0):
        raise ValueError(f"timeout must be positive seconds, got {timeout!r}")
    folder = data_root(root) / name
    folder.mkdir(parents=True, exist_ok=True)
    for resource in RESOURCES[name]:
        target = folder / resource.filename
        if not (target.is_file() and _checksum(resource, target) == _expected(resource)):
            _fetch_verified(resource, target, timeout)
    return folder


def _expected(resource: Resource) -> str:
    return resource.checksum.split(":", 1)[1].lower()


def _checksum(resource: Resource, path: Path) -> str:
    digest = hashlib.new(resource.checksum.split(":", 1)[0])
    with open(path, "rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch_verified(resource: Resource, target: Path, timeout: float) -> None:
    algorithm = resource.checksum.split(":", 1)[0]
    digest = hashlib.new(algorithm)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urlopen(resource.url, timeout=timeout) as response:
                    while chunk := response.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
            except (URLError, OSError, HTTPException) as exc:
                stalled = isinstance(getattr(exc, "reason", exc), TimeoutError)
                reason = f"no answer for {timeout:g} s" if stalled else exc
                raise DatasetNotFoundError(
                    f"could not download {resource.filename} from {resource.url} ({reason}). "
                    f"Fetch it by hand and put it in {target.parent}."
                ) from exc
        found = digest.hexdigest()
        if found != _expected(resource):
            raise DataError(
                f"{resource.filename} from {resource.url}: {algorithm} checksum mismatch, "
                f"expected {_expected(resource)}, found {found}; the file was not kept."
            )
        os.replace(tmp_name, target)
    finally:
        if os.path.exists(tmp_name):
            os.remove(tmp_name)


def to_unit_float(pixels: np.ndarray, dtype: np.dtype | type, scale: float = 255.0) -> np.ndarray:
    """``pixels / scale`` as a new array of float ``dtype`` (float32 or float64)."""
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    # order="C": SVHN arrives transposed, and a contiguous batch is what the layers want.
    out = pixels.astype(dtype, order="C")
    out /= dtype.type(scale)
    return out
