"""Byte-level fuzzing of the files mcnet reads: IDX, checkpoint .npz and LIBSVM.

A valid file is damaged by truncation, flipped bytes and inserted bytes. Whatever the damage,
reading it either succeeds (the damage may leave a valid file) or raises the documented error
-- `DataError` for data files, `CheckpointError` for checkpoints -- never another exception
type (IndexError, KeyError, BadZipFile, EOFError, MemoryError, ...).
"""

from __future__ import annotations

import gzip
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import mcnet as mc
from mcnet.datasets import libsvm, read_idx
from mcnet.training import checkpoint as checkpoints


def idx_bytes() -> bytes:
    """A 3x4x5 uint8 IDX file, written from the format: magic 0x0803, dims, data."""
    header = bytes([0, 0, 0x08, 3]) + b"".join(d.to_bytes(4, "big") for d in (3, 4, 5))
    return header + bytes(range(60))


def checkpoint_bytes() -> bytes:
    history = mc.History(solver="sgd", config={"lr": 0.1}, train_loss=[2.0, 1.5])
    meta = {"epoch": 1, "run": {"solver": "sgd", "seed": 0}, "history": history.to_dict()}
    with tempfile.TemporaryDirectory() as folder:
        path = checkpoints.save(
            Path(folder), np.linspace(-1, 1, 7), {"step": 3, "m": np.ones(7)}, meta
        )
        return path.read_bytes()


LIBSVM = b"1 1:0.5 3:2\n# a comment\n2 2:-1.25 4:1e-3\n\n3 1:7 2:8 3:9 4:10\n"


@st.composite
def damaged(draw, original: bytes) -> bytes:
    """``original`` after one to three cuts, byte flips or insertions."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["truncate", "flip", "insert"]))
        at = draw(st.integers(0, len(data)))
        if kind == "truncate":
            del data[at:]
        elif kind == "flip" and at < len(data):
            data[at] ^= draw(st.integers(1, 255))
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
    return bytes(data)


def read_or_raise(write: bytes, name: str, read, expected: type[Exception]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(write)
        try:
            read(path)
        except expected:
            pass


@given(damaged(idx_bytes()))
def test_damaged_idx_reads_or_raises_data_error(data):
    read_or_raise(data, "images.idx", read_idx, mc.DataError)


@given(damaged(gzip.compress(idx_bytes(), mtime=0)))
def test_damaged_gzipped_idx_reads_or_raises_data_error(data):
    read_or_raise(data, "images.idx.gz", lambda path: read_idx(path, 0x803), mc.DataError)


CHECKPOINT = checkpoint_bytes()


@given(damaged(CHECKPOINT))
def test_damaged_checkpoint_loads_or_raises_checkpoint_error(data):
    def load(path):
        loaded = checkpoints.load(path.parent, np)
        if loaded is not None:  # whatever survived is what was saved
            w, _, meta = loaded
            assert w.shape == (7,) and np.isfinite(w).all() and meta["epoch"] >= 1

    read_or_raise(data, checkpoints.FILENAME, load, mc.CheckpointError)


@given(st.binary(max_size=64))
def test_any_bytes_as_a_checkpoint_raise_checkpoint_error(data):
    read_or_raise(
        data,
        checkpoints.FILENAME,
        lambda path: checkpoints.load(path.parent, np),
        mc.CheckpointError,
    )


@given(damaged(LIBSVM))
def test_damaged_libsvm_reads_or_raises_data_error(data):
    def read(path):
        # a small max_bytes: an inserted digit may make a huge index, refused, not allocated
        features, labels = libsvm(path, max_bytes=1 << 20)
        assert np.isfinite(features).all() and len(features) == len(labels) > 0

    read_or_raise(data, "train.svm", read, mc.DataError)


@given(damaged(LIBSVM))
def test_damaged_libsvm_test_file_reads_or_raises_data_error(data):
    with tempfile.TemporaryDirectory() as folder:
        train = Path(folder) / "train.svm"
        train.write_bytes(LIBSVM)
        read_or_raise(
            data, "test.svm", lambda path: libsvm(path, like=train, max_bytes=1 << 20), mc.DataError
        )


def test_the_undamaged_files_read(tmp_path):
    (tmp_path / "images.idx").write_bytes(idx_bytes())
    assert read_idx(tmp_path / "images.idx").shape == (3, 4, 5)
    (tmp_path / checkpoints.FILENAME).write_bytes(CHECKPOINT)
    w, state, meta = checkpoints.load(tmp_path, np)
    assert np.array_equal(w, np.linspace(-1, 1, 7)) and state["step"] == 3
    (tmp_path / "train.svm").write_bytes(LIBSVM)
    features, labels = libsvm(tmp_path / "train.svm")
    assert features.shape == (3, 4) and labels.tolist() == [0, 1, 2]
