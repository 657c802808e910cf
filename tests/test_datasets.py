"""mcnet.datasets: loaders read files the tests write themselves; no network is touched."""

import gzip
import hashlib
import io
import os
import pickle
import re
import sys
import tarfile
import tempfile
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import scipy.io
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import mcnet.datasets as ds
from mcnet import DataError
from mcnet.datasets import _files

REAL_MNIST = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mnist"

IDX_CODES = {
    np.dtype(np.uint8): 0x08,
    np.dtype(np.int8): 0x09,
    np.dtype(np.int16): 0x0B,
    np.dtype(np.int32): 0x0C,
    np.dtype(np.float32): 0x0D,
    np.dtype(np.float64): 0x0E,
}


# ---------------------------------------------------------------- file writers


def write_idx(path: Path, array: np.ndarray) -> Path:
    """An IDX file written from the format description (big-endian header and data)."""
    header = bytes([0, 0, IDX_CODES[array.dtype], array.ndim])
    header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    raw = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)
    return path


def write_mnist(folder: Path, images: np.ndarray, labels: np.ndarray, prefix: str = "t10k"):
    folder.mkdir(parents=True, exist_ok=True)
    image_path = write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
    label_path = write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return image_path, label_path


def small_mnist(n: int = 6, seed: int = 0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, n, dtype=np.uint8)
    return images, labels


def cifar_batch(n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    return {b"batch_label": b"x", b"data": data, b"labels": rng.integers(0, 10, n).tolist()}


def write_cifar_folder(folder: Path) -> dict[str, dict]:
    folder.mkdir(parents=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    batches = {name: cifar_batch(2 + i, seed=i) for i, name in enumerate(names)}
    for name, batch in batches.items():
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    return batches


def write_tar(archive: Path, folder: Path) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    return archive


def write_svhn(path: Path, n: int = 5, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
    y = rng.integers(1, 11, (n, 1)).astype(np.uint8)
    y[0] = 10
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, {"X": x, "y": y})
    return x, y


# ---------------------------------------------------------------- IDX, MNIST, Fashion-MNIST


@given(
    array=st.sampled_from(list(IDX_CODES)).flatmap(
        lambda dtype: hnp.arrays(dtype, hnp.array_shapes(min_dims=1, max_dims=3, min_side=0))
    ),
    compressed=st.booleans(),
)
def test_read_idx_round_trips_every_type_and_shape(array, compressed):
    with tempfile.TemporaryDirectory() as tmp:
        path = write_idx(Path(tmp) / ("a.idx.gz" if compressed else "a.idx"), array)
        back = ds.read_idx(path)
    assert back.shape == array.shape and back.dtype == array.dtype
    np.testing.assert_array_equal(back, array)


@given(
    n=st.integers(0, 5),
    side=st.integers(1, 4),
    seed=st.integers(0, 2**32 - 1),
    in_subfolder=st.booleans(),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_mnist_returns_nchw_images_in_unit_range_and_int64_labels(
    n, side, seed, in_subfolder, dtype
):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, side, side), dtype=np.uint8)
    labels = rng.integers(0, 10, n, dtype=np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        write_mnist(Path(tmp) / "mnist" if in_subfolder else Path(tmp), images, labels, "train")
        x, y = ds.mnist(tmp, "train", dtype=dtype)
    assert x.shape == (n, 1, side, side) and x.dtype == dtype
    np.testing.assert_array_equal(x[:, 0], (images / 255).astype(dtype))
    assert y.dtype == np.int64
    np.testing.assert_array_equal(y, labels)


def test_default_root_is_mcnet_data_then_home(tmp_path, monkeypatch):
    images, labels = small_mnist()
    write_mnist(tmp_path / "mnist", images, labels)
    monkeypatch.setenv("MCNET_DATA", str(tmp_path))
    assert ds.data_root() == tmp_path
    assert ds.mnist(split="test")[0].shape == (6, 1, 28, 28)
    monkeypatch.delenv("MCNET_DATA")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert ds.data_root() == tmp_path / ".mcnet" / "data"
    assert ds.data_root("~/elsewhere") == tmp_path / "elsewhere"


def test_fashion_mnist_reads_its_own_subfolder(tmp_path):
    images, labels = small_mnist(seed=1)
    write_mnist(tmp_path / "mnist", *small_mnist(seed=2))
    write_mnist(tmp_path / "fashion_mnist", images, labels)
    x, y = ds.fashion_mnist(tmp_path, "test")
    np.testing.assert_array_equal(x[:, 0] * 255, images)
    np.testing.assert_array_equal(y, labels)


def test_mnist_accepts_decompressed_idx_files(tmp_path):
    images, labels = small_mnist()
    write_idx(tmp_path / "t10k-images-idx3-ubyte", images)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels)
    np.testing.assert_array_equal(ds.mnist(tmp_path, "test")[1], labels)


def test_missing_files_name_the_files_the_folder_and_download(tmp_path):
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", small_mnist()[1])
    with pytest.raises(ds.DatasetNotFoundError) as info:
        ds.mnist(tmp_path, "test")
    message = str(info.value)
    assert "t10k-images-idx3-ubyte.gz" in message
    assert "t10k-labels" not in message
    assert str(tmp_path / "mnist") in message and "download('mnist'" in message
    assert isinstance(info.value, FileNotFoundError)


def test_unknown_split_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="split must be one of"):
        ds.mnist(tmp_path, "validation")


def test_wrong_magic_number_names_file_and_both_numbers(tmp_path):
    images, labels = small_mnist()
    # Labels where images belong: a valid IDX file, but 1 dimension instead of 3.
    write_mnist(tmp_path, labels, labels)
    with pytest.raises(
        ValueError, match=r"t10k-images-idx3-ubyte\.gz: expected IDX magic .*2051.*2049"
    ):
        ds.mnist(tmp_path, "test")


def test_not_an_idx_file(tmp_path):
    (tmp_path / "junk.idx").write_bytes(b"\x12\x34\x08\x01" + bytes(8))
    with pytest.raises(ValueError, match=r"junk\.idx: not an IDX file.*0x12340801"):
        ds.read_idx(tmp_path / "junk.idx")


@pytest.mark.parametrize("keep", [0, 2, 6, 4 + 12 + 100])
def test_truncated_idx_names_file_and_sizes(tmp_path, keep):
    images, labels = small_mnist()
    image_path, _ = write_mnist(tmp_path, images, labels)
    image_path.write_bytes(gzip.compress(gzip.decompress(image_path.read_bytes())[:keep]))
    with pytest.raises(
        DataError, match=r"t10k-images-idx3-ubyte\.gz: (empty file|truncated|expected \d+ bytes)"
    ):
        ds.mnist(tmp_path, "test")


def test_trailing_bytes_are_a_size_error(tmp_path):
    path = write_idx(tmp_path / "a.idx", np.arange(4, dtype=np.uint8))
    path.write_bytes(path.read_bytes() + b"\x00")
    with pytest.raises(
        ValueError, match=r"a\.idx: expected 4 bytes of data for shape \(4,\), found 5"
    ):
        ds.read_idx(path)


def test_bad_and_cut_gzip_streams_name_the_file(tmp_path):
    images, labels = small_mnist()
    image_path, label_path = write_mnist(tmp_path, images, labels)
    label_path.write_bytes(b"this is not gzip")
    with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte\.gz: not a valid gzip file"):
        ds.mnist(tmp_path, "test")
    write_mnist(tmp_path, images, labels)
    image_path.write_bytes(image_path.read_bytes()[:-50])
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte\.gz: not a valid gzip file"):
        ds.mnist(tmp_path, "test")


def test_image_label_count_mismatch_names_both_files(tmp_path):
    images, labels = small_mnist()
    write_mnist(tmp_path, images, labels[:-1])
    with pytest.raises(
        ValueError,
        match=r"images-idx3-ubyte\.gz holds 6 images but .*labels-idx1-ubyte\.gz holds 5",
    ):
        ds.mnist(tmp_path, "test")


def test_label_out_of_range_names_file(tmp_path):
    images, labels = small_mnist()
    labels[3] = 10
    write_mnist(tmp_path, images, labels)
    with pytest.raises(
        ValueError, match=r"t10k-labels-idx1-ubyte\.gz: expected labels in 0\.\.9, found 10"
    ):
        ds.mnist(tmp_path, "test")


@pytest.mark.skipif(
    not (REAL_MNIST / "t10k-images-idx3-ubyte.gz").is_file()
    or not (REAL_MNIST / "t10k-labels-idx1-ubyte.gz").is_file(),
    reason="real MNIST test files not present in ../shared/data/mnist",
)
def test_real_mnist_test_split():
    x, y = ds.mnist(REAL_MNIST.parent, "test", dtype=np.float32)
    assert x.shape == (10000, 1, 28, 28) and x.dtype == np.float32
    assert x.min() == 0.0 and x.max() == 1.0
    assert y.dtype == np.int64 and set(np.unique(y)) == set(range(10))
    assert y[:5].tolist() == [7, 2, 1, 0, 4]


# ---------------------------------------------------------------- CIFAR-10


def expected_cifar(batches: dict, names: list[str]):
    data = np.concatenate([batches[name][b"data"] for name in names])
    labels = np.concatenate([batches[name][b"labels"] for name in names])
    return data, labels


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("split", ["train", "test"])
def test_cifar10_from_folder_or_archive(tmp_path, packed, split):
    batches = write_cifar_folder(tmp_path / "src" / "cifar-10-batches-py")
    root = tmp_path / "root"
    (root / "cifar10").mkdir(parents=True)
    if packed:
        write_tar(
            root / "cifar10" / "cifar-10-python.tar.gz", tmp_path / "src" / "cifar-10-batches-py"
        )
    else:
        (tmp_path / "src" / "cifar-10-batches-py").rename(root / "cifar10" / "cifar-10-batches-py")
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    data, labels = expected_cifar(batches, names)
    x, y = ds.cifar10(root, split, dtype=np.float32)
    assert x.shape == (len(data), 3, 32, 32) and x.dtype == np.float32
    # Each row holds the red plane, then green, then blue, each row-major.
    np.testing.assert_array_equal(x[1, 2] * np.float32(255), data[1, 2048:].reshape(32, 32))
    assert y.dtype == np.int64
    np.testing.assert_array_equal(y, labels)


def test_cifar10_missing_names_archive_folder_and_download(tmp_path):
    with pytest.raises(
        ds.DatasetNotFoundError, match=r"cifar-10-python\.tar\.gz.*cifar-10-batches-py.*download"
    ):
        ds.cifar10(tmp_path)


def test_cifar10_folder_missing_a_batch(tmp_path):
    write_cifar_folder(tmp_path / "cifar-10-batches-py")
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(ds.DatasetNotFoundError, match=r"data_batch_3 in .*cifar-10-batches-py"):
        ds.cifar10(tmp_path)


@pytest.mark.parametrize(
    ("batch", "match"),
    [
        (b"garbage", "not a valid CIFAR-10 batch pickle"),
        ([1, 2], "expected a dict, found list"),
        ({b"data": np.zeros((2, 3072), np.uint8)}, "expected keys b'data' and b'labels'"),
        ({b"data": np.zeros((2, 3071), np.uint8), b"labels": [0, 1]}, r"shape \(n, 3072\)"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "expected 2 integer labels"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, r"labels in 0\.\.9"),
    ],
)
def test_cifar10_bad_batch_names_the_file(tmp_path, batch, match):
    write_cifar_folder(tmp_path / "cifar-10-batches-py")
    raw = batch if isinstance(batch, bytes) else pickle.dumps(batch)
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(raw)
    with pytest.raises(ValueError, match=f"test_batch: .*{match}"):
        ds.cifar10(tmp_path, "test")


class _RunsCode:
    def __reduce__(self):
        return (print, ("a pickle must not run code",))


def test_cifar10_refuses_pickles_that_would_run_code(tmp_path, capsys):
    write_cifar_folder(tmp_path / "cifar-10-batches-py")
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps(_RunsCode()))
    with pytest.raises(ValueError, match="test_batch: .*refusing to load global builtins.print"):
        ds.cifar10(tmp_path, "test")
    assert capsys.readouterr().out == ""


def test_cifar10_bad_archive_names_the_file(tmp_path):
    write_cifar_folder(tmp_path / "src" / "cifar-10-batches-py")
    archive = write_tar(
        tmp_path / "cifar-10-python.tar.gz", tmp_path / "src" / "cifar-10-batches-py"
    )
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"cifar-10-python\.tar\.gz: not a valid tar\.gz archive"):
        ds.cifar10(tmp_path)
    (tmp_path / "src" / "cifar-10-batches-py" / "data_batch_2").unlink()
    write_tar(archive, tmp_path / "src" / "cifar-10-batches-py")
    with pytest.raises(ValueError, match=r"tar\.gz: expected members .*data_batch_2"):
        ds.cifar10(tmp_path)


# ---------------------------------------------------------------- SVHN


@pytest.mark.parametrize("split", ["train", "test"])
def test_svhn_is_nchw_with_label_10_as_0(tmp_path, split):
    x_raw, y_raw = write_svhn(tmp_path / "svhn" / f"{split}_32x32.mat")
    x, y = ds.svhn(tmp_path, split)
    assert x.shape == (5, 3, 32, 32) and x.dtype == np.float64
    np.testing.assert_array_equal(x[3, 1] * 255, x_raw[:, :, 1, 3])
    assert y.dtype == np.int64 and y[0] == 0
    np.testing.assert_array_equal(y, y_raw[:, 0] % 10)


def test_svhn_missing_file(tmp_path):
    with pytest.raises(ds.DatasetNotFoundError, match=r"test_32x32\.mat.*svhn.*download\('svhn'"):
        ds.svhn(tmp_path, "test")


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ({"X": np.zeros((32, 32, 3, 2), np.uint8)}, "expected variables X and y, found"),
        ({"X": np.zeros((32, 32, 2), np.uint8), "y": np.ones((2, 1))}, r"shape \(32, 32, 3, n\)"),
        ({"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.ones((3, 1))}, "2 images but y holds 3"),
        ({"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array([[1], [11]])}, r"1\.\.10"),
        ({"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array([[0], [1]])}, r"1\.\.10"),
    ],
)
def test_svhn_bad_content_names_the_file(tmp_path, content, match):
    scipy.io.savemat(tmp_path / "train_32x32.mat", content)
    with pytest.raises(ValueError, match=rf"train_32x32\.mat: .*{match}"):
        ds.svhn(tmp_path)


def test_svhn_corrupt_file_names_the_file(tmp_path):
    (tmp_path / "train_32x32.mat").write_bytes(b"MATLAB 5.0 MAT-file" + bytes(10))
    with pytest.raises(ValueError, match=r"train_32x32\.mat: not a readable MATLAB"):
        ds.svhn(tmp_path)


# ---------------------------------------------------------------- LIBSVM and digits


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ([-1, 1, 1, -1], [0, 1, 1, 0]),
        ([+1, +1], [1, 1]),
        ([1, 3, 2, 3], [0, 2, 1, 2]),
        ([0, 3, 2, 1], [0, 3, 2, 1]),
    ],
)
def test_libsvm_remaps_labels_to_zero_based_classes(tmp_path, labels, expected):
    path = tmp_path / "a.svm"
    path.write_text("".join(f"{y:+d} 1:0.5 3:{i}\n" for i, y in enumerate(labels)))
    x, y = ds.libsvm(path)
    assert x.shape == (len(labels), 3) and x.dtype == np.float64
    np.testing.assert_array_equal(x[:, 0], 0.5)
    np.testing.assert_array_equal(x[:, 1], 0.0)
    np.testing.assert_array_equal(x[:, 2], np.arange(len(labels)))
    assert y.dtype == np.int64 and y.tolist() == expected


def test_libsvm_width_dtype_and_raw_labels(tmp_path):
    path = tmp_path / "a.svm"
    path.write_text("2 1:1\n5 2:2\n")
    x, y = ds.libsvm(path, n_features=6, dtype=np.float32, remap_labels=False)
    assert x.shape == (2, 6) and x.dtype == np.float32
    assert y.tolist() == [2, 5]


@pytest.mark.parametrize(
    ("text", "n_features", "match"),
    [
        ("1 1:1\n0.5 2:1\n", None, "line 2: label 0.5 is not a class label"),
        ("1 1:1\n-2 2:1\n", None, r"expected labels in \{-1, \+1\} or non-negative integers"),
        ("1 1:1 this is not libsvm\n", None, "not a valid LIBSVM file"),
        ("1 1:1 5:1\n", 3, "line 1 has feature index 5, beyond the 3 features expected"),
    ],
)
def test_libsvm_errors_name_the_file(tmp_path, text, n_features, match):
    path = tmp_path / "bad.svm"
    path.write_text(text)
    with pytest.raises(ValueError, match=rf"bad\.svm: {match}"):
        ds.libsvm(path, n_features)


def test_digits_are_nchw_in_unit_range():
    x, y = ds.digits()
    assert x.shape == (1797, 1, 8, 8) and x.dtype == np.float64
    assert x.min() == 0.0 and x.max() == 1.0
    assert y.dtype == np.int64 and set(y.tolist()) == set(range(10))
    assert ds.digits(dtype=np.float32)[0].dtype == np.float32


def test_float_dtype_is_checked():
    with pytest.raises(ValueError, match="dtype must be float32 or float64"):
        ds.digits(dtype=np.int32)


# ---------------------------------------------------------------- download


def serve_locally(monkeypatch, tmp_path, name, files: dict[str, bytes], algorithm="sha256"):
    """Point RESOURCES[name] at file:// copies of ``files`` with their true checksums."""
    served = tmp_path / "served"
    served.mkdir(exist_ok=True)
    resources = []
    for filename, content in files.items():
        (served / filename).write_bytes(content)
        digest = hashlib.new(algorithm, content).hexdigest()
        url = (served / filename).as_uri()
        resources.append(_files.Resource(filename, url, f"{algorithm}:{digest}"))
    monkeypatch.setitem(_files.RESOURCES, name, resources)
    return resources


def mnist_bytes(tmp_path) -> dict[str, bytes]:
    paths = write_mnist(tmp_path / "made", *small_mnist(), prefix="t10k")
    return {path.name: path.read_bytes() for path in paths}


@pytest.mark.parametrize("algorithm", ["sha256", "md5"])
def test_download_verifies_and_stores_files_then_keeps_them(tmp_path, monkeypatch, algorithm):
    serve_locally(monkeypatch, tmp_path, "mnist", mnist_bytes(tmp_path), algorithm)
    root = tmp_path / "data"
    assert ds.download("mnist", root) == root / "mnist"
    assert sorted(os.listdir(root / "mnist")) == [
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ]
    np.testing.assert_array_equal(ds.mnist(root, "test")[1], small_mnist()[1])

    def no_network(url, timeout):
        raise AssertionError("files already present must not be fetched again")

    monkeypatch.setattr(_files, "urlopen", no_network)
    ds.download("mnist", root)


def test_download_checksum_mismatch_leaves_nothing_behind(tmp_path, monkeypatch):
    files = mnist_bytes(tmp_path)
    resources = serve_locally(monkeypatch, tmp_path, "mnist", files)
    resources[1] = _files.Resource(resources[1].filename, resources[1].url, "sha256:" + "0" * 64)
    monkeypatch.setitem(_files.RESOURCES, "mnist", resources)
    with pytest.raises(
        ValueError,
        match=r"t10k-labels-idx1-ubyte\.gz .*checksum mismatch, expected 0+, found [0-9a-f]{64}",
    ):
        ds.download("mnist", tmp_path / "data")
    # The good file was kept; the bad one left neither itself nor a temporary file.
    assert os.listdir(tmp_path / "data" / "mnist") == ["t10k-images-idx3-ubyte.gz"]


class _DropsMidway(io.BytesIO):
    def read(self, size=-1):
        if self.tell():
            raise ConnectionResetError("connection reset")
        return super().read(10)


@pytest.mark.parametrize(
    "failure",
    [URLError("no network"), _DropsMidway(b"x" * 100)],
    ids=["unreachable", "cut-off"],
)
def test_download_failure_names_file_folder_and_caches_nothing(tmp_path, monkeypatch, failure):
    def fake_urlopen(url, timeout):
        if isinstance(failure, Exception):
            raise failure
        return failure

    monkeypatch.setattr(_files, "urlopen", fake_urlopen)
    folder = tmp_path / "cifar10"
    with pytest.raises(
        ds.DatasetNotFoundError,
        match=rf"cifar-10-python\.tar\.gz .*put it in {re.escape(str(folder))}",
    ):
        ds.download("cifar10", tmp_path)
    assert os.listdir(folder) == []


def test_download_unknown_name():
    with pytest.raises(ValueError, match="unknown data set 'imagenet'"):
        ds.download("imagenet")


def test_official_resources_are_complete():
    assert set(ds.RESOURCES) == {"mnist", "fashion_mnist", "cifar10", "svhn"}
    for resources in ds.RESOURCES.values():
        for r in resources:
            assert r.url.startswith(("http://", "https://")) and r.url.endswith(r.filename)
            algorithm, digest = r.checksum.split(":")
            assert len(digest) == hashlib.new(algorithm).digest_size * 2
            assert set(digest) <= set("0123456789abcdef")


# ---------------------------------------------------------------- batching


@given(
    n=st.integers(0, 40),
    batch_size=st.integers(1, 12),
    drop_last=st.booleans(),
    shuffle=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
    epoch=st.integers(0, 5),
)
def test_batches_cover_each_example_once_in_full_batches(
    n, batch_size, drop_last, shuffle, seed, epoch
):
    inputs, targets = np.arange(n)[:, None] * 2.0, np.arange(n)
    kwargs = dict(shuffle=shuffle, seed=seed, epoch=epoch, drop_last=drop_last)
    got = list(ds.batches((inputs, targets), batch_size, **kwargs))
    sizes = [len(y) for _, y in got]
    assert all(size == batch_size for size in sizes[:-1])
    if drop_last:
        assert sizes == [batch_size] * (n // batch_size)
    else:
        assert sum(sizes) == n and (not sizes or 1 <= sizes[-1] <= batch_size)
    seen = np.concatenate([y for _, y in got]) if got else np.array([], int)
    assert len(set(seen.tolist())) == len(seen)  # no example twice
    if not drop_last:
        assert sorted(seen.tolist()) == list(range(n))
    if not shuffle:
        assert seen.tolist() == list(range(len(seen)))
    for x, y in got:  # inputs stay paired with their targets
        np.testing.assert_array_equal(x[:, 0], 2.0 * y)
    again = np.concatenate(
        [y for _, y in ds.batches((inputs, targets), batch_size, **kwargs)] or [[]]
    )
    np.testing.assert_array_equal(again, seen)  # same seed and epoch, same order
    loader = ds.DataLoader((inputs, targets), batch_size, drop_last=drop_last, seed=seed)
    assert len(loader) == len(got)


def test_epochs_and_seeds_change_the_order():
    data = (np.zeros((100, 2)), np.arange(100))

    def order(**kwargs):
        return np.concatenate([y for _, y in ds.batches(data, 7, **kwargs)])

    assert not np.array_equal(order(seed=0, epoch=0), order(seed=0, epoch=1))
    assert not np.array_equal(order(seed=0, epoch=0), order(seed=1, epoch=0))
    loader = ds.DataLoader(data, 7, seed=3)
    first, second = (np.concatenate([y for _, y in loader]) for _ in range(2))
    np.testing.assert_array_equal(first, order(seed=3, epoch=0))
    np.testing.assert_array_equal(second, order(seed=3, epoch=1))
    loader.epoch = 0
    np.testing.assert_array_equal(np.concatenate([y for _, y in loader]), first)


def test_batches_convert_input_dtype_only():
    data = (np.ones((5, 3)), np.arange(5))
    x, y = next(ds.batches(data, 2, dtype=np.float32))
    assert x.dtype == np.float32 and y.dtype == data[1].dtype
    x, _ = next(iter(ds.DataLoader(data, 2, shuffle=False)))
    assert x.dtype == np.float64 and isinstance(x, np.ndarray)


@pytest.mark.parametrize("make", [ds.batches, ds.DataLoader], ids=["batches", "DataLoader"])
def test_batching_arguments_are_checked_on_the_call(make):
    data = (np.zeros((5, 2)), np.zeros(5))
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        make(data, 0)
    with pytest.raises(TypeError, match="batch_size must be an integer"):
        make(data, 2.5)
    with pytest.raises(ValueError, match="inputs has 5 examples, targets has 4"):
        make((data[0], data[1][:4]), 2)
    with pytest.raises(ValueError, match="device must be one of"):
        make(data, 2, device="tpu")


def test_cuda_without_cupy_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # makes `import cupy` fail
    with pytest.raises(ImportError, match="device='cuda' needs CuPy"):
        ds.batches((np.zeros((2, 1)), np.zeros(2)), 1, device="cuda")


@pytest.mark.gpu
def test_cuda_batches_are_cupy_arrays():
    import cupy

    data = (np.arange(10.0)[:, None], np.arange(10))
    got = list(ds.batches(data, 4, device="cuda", dtype=np.float32, seed=1))
    assert all(isinstance(x, cupy.ndarray) and isinstance(y, cupy.ndarray) for x, y in got)
    assert got[0][0].dtype == np.float32
    on_device = (cupy.asarray(data[0]), cupy.asarray(data[1]))
    again = list(ds.batches(on_device, 4, device="cuda", dtype=np.float32, seed=1))
    for (x, y), (x2, y2) in zip(got, again, strict=True):
        cupy.testing.assert_array_equal(x, x2)
        cupy.testing.assert_array_equal(y, y2)
