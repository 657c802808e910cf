"""Bad input and faults, through the API and the command line.

The rule: every user-caused error or fault is one line on stderr naming the flag, file or
checkpoint and what to do, exit status 2 (the command line cannot work as given) or 1 (a
fault while running), no traceback unless --debug; the API raises ValueError, OSError or an
mcnet error with the same information. Nothing is lost: outputs and the checkpoint directory
are checked before training, the directory is locked, a checkpoint is only continued or
replaced when asked. Most commands run in-process through ``mcnet.cli.main``; a few run as
processes (the lock, the scheduler, the real stderr). Servers listen on 127.0.0.1 only and
every wait is bounded.
"""

from __future__ import annotations

import errno
import gzip
import http.server
import json
import os
import pickle
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from oracles import PlainSGD

import mcnet as mc
from mcnet import cli, nn
from mcnet.datasets import _files
from mcnet.training import checkpoint as checkpoints

TINY = [
    "train",
    "--model",
    "logistic_regression",
    "--subset",
    "200",
    "--test-subset",
    "50",
    "--batch-size",
    "64",
    "--solver",
    "adam",
    "--epochs",
    "1",
]


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    status = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def run_process(*argv, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mcnet.cli", *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def one_line(err: str, *words: str) -> None:
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert all(word in err for word in words), (words, err)


# --- the problems of the API tests ----------------------------------------------------------


def problem(n=200, activation="tanh", seed=0):
    images, labels = mc.datasets.digits()
    nn.manual_seed(seed)
    net = nn.models.mlp([64, 8, 10], activation=activation)
    return net, (images.reshape(len(images), -1)[:n], labels[:n])


def train(directory, epochs=1, activation="tanh", data=None, **options):
    net, default = problem(activation=activation)
    return mc.fit(
        net,
        nn.CrossEntropyLoss(),
        default if data is None else data,
        PlainSGD(0.1),
        epochs,
        batch_size=50,
        checkpoint=directory,
        **options,
    )


# --- the rule: one line, status 1 or 2, a traceback only with --debug -------------------------
def test_an_unexpected_exception_is_one_line_and_debug_shows_the_traceback(monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise KeyError("internal")

    monkeypatch.setattr("mcnet.experiments.run", broken)
    status, _, err = run_cli(capsys, *TINY)
    assert status == 1
    one_line(err, "mcnet train: error: KeyError", "--debug")
    status, _, err = run_cli(capsys, *TINY, "--debug")
    assert (
        status == 1
        and "Traceback" in err
        and err.splitlines()[-1].startswith("mcnet train: error: KeyError")
    )


def test_debug_shows_the_traceback_of_a_reported_fault(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    status, _, err = run_cli(capsys, *TINY, "--checkpoint", tmp_path / "file", "--debug")
    assert status == 2 and "Traceback" in err and "CheckpointError" in err


# --- checkpoints ----------------------------------------------------------------------------
def good_checkpoint(directory: Path) -> bytes:
    train(directory)
    return (directory / checkpoints.FILENAME).read_bytes()


DAMAGE = {
    "empty": lambda good: b"",
    "truncated": lambda good: good[: len(good) // 2],
    "random": lambda good: np.random.default_rng(0).bytes(300),
    "a pickle": lambda good: pickle.dumps({"w": [1.0]}),
}


@pytest.mark.parametrize("damage", DAMAGE, ids=list(DAMAGE))
def test_a_damaged_checkpoint_is_one_checkpoint_error(tmp_path, capsys, damage):
    good = good_checkpoint(tmp_path)
    (tmp_path / checkpoints.FILENAME).write_bytes(DAMAGE[damage](good))
    with pytest.raises(mc.CheckpointError, match="checkpoint.npz.*overwrite") as caught:
        train(tmp_path, epochs=2, resume=True)
    assert "allow_pickle" not in str(caught.value)
    status, _, err = run_cli(capsys, *TINY, "--checkpoint", tmp_path, "--resume")
    assert status == 1
    one_line(err, "--checkpoint", "checkpoint.npz", "--overwrite")
    assert "allow_pickle" not in err


@pytest.mark.parametrize(
    "meta",
    [
        "[]",
        '{"format": 2}',
        "not json",
        '{"format": 2, "epoch": 1, "run": {}, "history": {"x": 1}}',
        '{"format": 2, "epoch": "one", "run": {}, "history": {}}',
    ],
)
def test_a_malformed_meta_record_is_a_checkpoint_error(tmp_path, meta):
    np.savez(tmp_path / checkpoints.FILENAME, w=np.zeros(3), meta=np.array(meta))
    with pytest.raises(mc.CheckpointError, match="not one mcnet can resume"):
        checkpoints.load(tmp_path, np)


def test_a_checkpoint_path_that_cannot_hold_one_fails_before_training(
    tmp_path, capsys, monkeypatch
):
    (tmp_path / "file").write_text("x")
    net, data = problem()
    before = nn.parameters_to_vector(net)
    with pytest.raises(mc.CheckpointError, match="file is not a directory"):
        mc.fit(net, nn.CrossEntropyLoss(), data, PlainSGD(0.1), 1, checkpoint=tmp_path / "file")
    assert np.array_equal(nn.parameters_to_vector(net), before)
    status, out, err = run_cli(capsys, *TINY, "--checkpoint", tmp_path / "file")
    assert status == 2 and out == ""
    one_line(err, "--checkpoint", "not a directory")
    # a read-only directory (simulated: root may write anywhere)
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != read_only and real_access(p, mode))
    with pytest.raises(mc.CheckpointError, match="not writable"):
        train(read_only)
    status, out, err = run_cli(capsys, *TINY, "--checkpoint", read_only)
    assert status == 2 and out == ""
    one_line(err, "--checkpoint", "not writable")


def test_another_model_or_data_is_another_run(tmp_path, capsys):
    train(tmp_path)
    # same parameter count, another activation
    with pytest.raises(mc.CheckpointMismatchError, match="different run.*model.*Sigmoid"):
        train(tmp_path, epochs=2, activation="sigmoid", resume=True)
    # the same examples, shuffled
    _, (inputs, labels) = problem()
    order = np.random.default_rng(0).permutation(len(inputs))
    with pytest.raises(mc.CheckpointMismatchError, match="training data differ"):
        train(tmp_path, epochs=2, data=(inputs[order], labels[order]), resume=True)
    flags = [*TINY, "--model", "mlp", "--hidden", "8", "--checkpoint", tmp_path / "cli"]
    assert run_cli(capsys, *flags)[0] == 0
    status, _, err = run_cli(capsys, *flags, "--activation", "relu", "--resume", "--epochs", "2")
    assert status == 2
    one_line(err, "--checkpoint", "different run", "ReLU")


def test_a_checkpoint_is_continued_or_replaced_only_when_asked(tmp_path, capsys):
    good = good_checkpoint(tmp_path)
    with pytest.raises(mc.CheckpointMismatchError, match="resume=True.*overwrite=True"):
        train(tmp_path)
    assert (tmp_path / checkpoints.FILENAME).read_bytes() == good
    status, out, err = run_cli(capsys, *TINY, "--checkpoint", tmp_path / "cli")
    assert status == 0
    status, out, err = run_cli(capsys, *TINY, "--checkpoint", tmp_path / "cli")
    assert status == 2 and out == ""
    one_line(err, "--checkpoint", "--resume", "--overwrite")
    assert run_cli(capsys, *TINY, "--checkpoint", tmp_path / "cli", "--overwrite")[0] == 0
    train(tmp_path, overwrite=True)
    with pytest.raises(ValueError, match="one of them"):
        train(tmp_path, resume=True, overwrite=True)


def test_resume_with_fewer_epochs_than_done_is_an_error(tmp_path, capsys):
    train(tmp_path, epochs=2)
    with pytest.raises(mc.CheckpointMismatchError, match="done 2 epochs, more than the 1"):
        train(tmp_path, epochs=1, resume=True)
    flags = [*TINY, "--checkpoint", tmp_path / "cli"]
    assert run_cli(capsys, *flags, "--epochs", "2")[0] == 0
    status, out, err = run_cli(capsys, *flags, "--resume")
    assert status == 2 and out == ""
    one_line(err, "--epochs: 1 is fewer than the 2 epochs")


def test_a_second_run_into_a_locked_directory_is_refused(tmp_path):
    with checkpoints.locked(tmp_path):
        with pytest.raises(mc.CheckpointError, match=f"in use by another run .*{os.getpid()}"):
            train(tmp_path)
        done = run_process(*TINY, "--checkpoint", tmp_path)
    assert done.returncode == 1 and done.stdout == ""
    one_line(done.stderr, "--checkpoint", "in use by another run")
    train(tmp_path)  # free again


def test_a_full_disk_keeps_the_old_checkpoint(tmp_path, monkeypatch, capsys):
    good = good_checkpoint(tmp_path)

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(mc.CheckpointError, match="No space left.*previous checkpoint is kept"):
        train(tmp_path, epochs=2, resume=True)
    assert (tmp_path / checkpoints.FILENAME).read_bytes() == good
    status, _, err = run_cli(capsys, *TINY, "--checkpoint", tmp_path / "cli")
    assert status == 1
    one_line(err, "--checkpoint", "No space left", "free some space")
    status, _, err = run_cli(capsys, *TINY, "--out", tmp_path / "run.json")
    assert status == 1 and not (tmp_path / "run.json").exists()
    one_line(err, "--out: cannot write", "No space left")


def test_a_checkpoint_whose_parameters_do_not_fit_its_run_is_refused(tmp_path):
    good_checkpoint(tmp_path)
    w, state, meta = checkpoints.load(tmp_path, np)
    meta["history"] = meta["history"].to_dict()
    checkpoints.save(tmp_path, w[:-1], state, meta)
    with pytest.raises(mc.CheckpointError, match="holds 609 parameters where its run has 610"):
        train(tmp_path, epochs=2, resume=True)


# --- outputs --------------------------------------------------------------------------------
def test_outputs_that_cannot_be_written_fail_before_training(tmp_path, capsys):
    (tmp_path / "dir").mkdir()
    (tmp_path / "target.json").write_text("keep")
    (tmp_path / "link.json").symlink_to(tmp_path / "target.json")
    os.mkfifo(tmp_path / "fifo")
    for flag, path, words in [
        ("--out", tmp_path / "dir", "is a directory"),
        ("--save-params", tmp_path / "dir", "is a directory"),
        ("--out", tmp_path / "link.json", "symbolic link"),
        ("--out", tmp_path / "fifo", "not a regular file"),
        ("--save-params", "/dev/null", "not a regular file"),
        ("--out", tmp_path / "target.json" / "x", "not a directory"),
    ]:
        status, out, err = run_cli(capsys, *TINY, flag, path)
        assert status == 2 and out == "", (flag, path, err)
        one_line(err, flag, words)
    assert (tmp_path / "link.json").is_symlink() and (tmp_path / "fifo").exists()
    assert (tmp_path / "target.json").read_text() == "keep"
    history = mc.History(solver="sgd", config={})
    for path in (tmp_path / "dir", tmp_path / "link.json", tmp_path / "fifo"):
        with pytest.raises(mc.OutputError):
            history.to_json(path)


# --- numerics -------------------------------------------------------------------------------
def test_a_step_whose_loss_overflows_is_undone():
    class OnceHuge(PlainSGD):
        calls = 0

        def update(self, grad, state, w):
            self.calls += 1
            # the third step lands where the loss overflows, but every parameter is finite
            signs = np.random.default_rng(0).choice([-1.0, 1.0], w.size)
            return (-self.lr * grad if self.calls != 3 else 1e308 * signs), state

    net, data = problem()
    history = mc.fit(net, nn.CrossEntropyLoss(), data, OnceHuge(0.1), 2, batch_size=25)
    third = history.records[2]
    assert third["rejected"] and "loss at its parameters is non-finite" in third["reason"]
    assert history.records[3]["rejected"]  # it started from the overflowing parameters
    # undone at once: the rest of the epoch trains on from the second step's parameters
    assert not any(record["rejected"] for record in history.records[4:])
    assert all(np.isfinite(history.train_loss))
    assert np.isfinite(nn.parameters_to_vector(net)).all()


def test_a_run_that_diverges_does_not_end_well(tmp_path):
    net, data = problem()
    with pytest.raises(mc.TrainingError):
        mc.fit(
            net, nn.CrossEntropyLoss(), data, PlainSGD(1e308), 2, batch_size=50, checkpoint=tmp_path
        )
    # a process: the real stderr, where NumPy's overflow warnings would land
    done = run_process(
        *TINY,
        "--solver",
        "sgd",
        "--lr",
        "1e308",
        "--epochs",
        "2",
        "--out",
        tmp_path / "run.json",
        "--checkpoint",
        tmp_path / "cli",
    )
    assert done.returncode == 1
    one_line(done.stderr, "training failed", "after epoch 1")
    assert not (tmp_path / "run.json").exists()
    for directory in (tmp_path, tmp_path / "cli"):  # no checkpoint holds a non-finite loss
        loaded = checkpoints.load(directory, np)
        assert loaded is None or all(np.isfinite(loaded[2]["history"].train_loss))


def test_non_finite_data_is_refused_by_fit():
    net, (inputs, labels) = problem()
    inputs = inputs.copy()
    inputs[17, 3] = np.inf
    with pytest.raises(ValueError, match="inputs of example 17 are not all finite"):
        mc.fit(net, nn.CrossEntropyLoss(), (inputs, labels), PlainSGD(0.1), 1)


@pytest.mark.parametrize("name, value", [("chunk_size", 0), ("chunk_size", -5), ("workers", 0)])
def test_bad_counts_are_named(name, value):
    net, data = problem()
    with pytest.raises(ValueError, match=f"{name} must be >= 1, got {value}"):
        mc.fit(net, nn.CrossEntropyLoss(), data, PlainSGD(0.1), 1, **{name: value})
    if name == "chunk_size":
        with pytest.raises(ValueError, match=f"chunk_size must be >= 1, got {value}"):
            mc.training.evaluate(net, nn.CrossEntropyLoss(), data, chunk_size=value)


# --- data files -----------------------------------------------------------------------------
def idx(array: np.ndarray, magic: int) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes())


def write_mnist(folder: Path, images=None, labels=None, split="t10k") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    images = np.zeros((4, 28, 28), np.uint8) if images is None else images
    (folder / f"{split}-images-idx3-ubyte.gz").write_bytes(
        images if isinstance(images, bytes) else idx(images, 0x803)
    )
    labels = np.arange(4) if labels is None else labels
    (folder / f"{split}-labels-idx1-ubyte.gz").write_bytes(
        labels if isinstance(labels, bytes) else idx(labels, 0x801)
    )
    return folder


def crc_broken() -> bytes:
    data = bytearray(idx(np.zeros((4, 28, 28), np.uint8), 0x803))
    data[-5] ^= 0xFF  # the CRC-32 in the gzip trailer
    return bytes(data)


BAD_MNIST = {
    "truncated": ({"images": idx(np.zeros((4, 28, 28)), 0x803)[:-30]}, "gz"),
    "crc": ({"images": crc_broken()}, "gzip"),
    "magic": ({"images": idx(np.zeros((4, 28, 28)), 0x802)}, "magic"),
    "short labels": ({"labels": np.arange(3)}, "3 labels"),
    "label 10": ({"labels": np.array([1, 2, 10, 3])}, "labels in 0..9"),
    "empty": ({"labels": gzip.compress(b"")}, "empty file"),
}


@pytest.mark.parametrize("case", BAD_MNIST, ids=list(BAD_MNIST))
def test_a_damaged_idx_file_is_one_line(tmp_path, capsys, case):
    files, words = BAD_MNIST[case]
    write_mnist(tmp_path / "mnist", **files)
    with pytest.raises(mc.DataError, match=words):
        mc.datasets.mnist(tmp_path, "test")
    status, out, err = run_cli(
        capsys,
        "train",
        "--dataset",
        "mnist",
        "--model",
        "lenet5",
        "--data-dir",
        tmp_path,
        "--train-split",
        "test",
        "--holdout",
        "1",
    )
    assert status == 1 and out == ""
    one_line(err, "--dataset mnist", "-idx", words)


def test_a_damaged_idx_file_through_the_console(tmp_path):
    write_mnist(tmp_path / "mnist", labels=np.array([1, 2, 10, 3]))
    done = run_process(
        "train",
        "--dataset",
        "mnist",
        "--model",
        "lenet5",
        "--data-dir",
        tmp_path,
        "--train-split",
        "test",
        "--holdout",
        "1",
    )
    assert done.returncode == 1 and done.stdout == ""
    one_line(done.stderr, "t10k-labels-idx1-ubyte.gz", "labels in 0..9")


def svm(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


LIBSVM_FAULTS = {
    "empty": ("", None, "no examples"),
    "comments only": ("# nothing\n\n", None, "no examples"),
    "nan": ("1 1:1\n# c\n\n2 1:nan 2:3\n", None, "line 4: feature 1 is nan"),
    "inf": ("1 1:1 2:inf\n", None, "line 1: feature 2 is inf"),
    "huge index": (
        "1 1:1\n2 2000000000:1\n",
        None,
        "line 2 has feature index 2000000000, which makes the dense features",
    ),
    "index beyond int64": ("1 99999999999999999999:1\n", None, "not a valid LIBSVM file"),
    "label inf": ("inf 1:1\n", None, "label inf is not a class label"),
    "label huge": ("1e9 1:1\n", None, "label 1e+09 is not a class label"),
    "test label unknown": (
        "1 1:1\n9 2:1\n",
        "1 1:1\n2 2:1\n",
        "line 2 has label 9, which the training file",
    ),
    "test zero-based, train one-based": (
        "1 0:1 1:2\n",
        "1 1:1\n2 2:1\n",
        "line 1 has feature index 0, but the training file",
    ),
}


@pytest.mark.parametrize("case", LIBSVM_FAULTS, ids=list(LIBSVM_FAULTS))
def test_a_bad_libsvm_file_is_one_line_naming_the_line(tmp_path, capsys, case):
    text, train_text, words = LIBSVM_FAULTS[case]
    path = svm(tmp_path / "bad.svm", text)
    train_path = None if train_text is None else svm(tmp_path / "train.svm", train_text)
    with pytest.raises(mc.DataError, match=re.escape(words)):
        mc.datasets.libsvm(path, like=train_path)
    files = (
        ["--train-file", path]
        if train_path is None
        else ["--train-file", train_path, "--test-file", path]
    )
    status, out, err = run_cli(
        capsys,
        "train",
        "--dataset",
        "libsvm",
        "--model",
        "logistic_regression",
        *files,
        "--batch-size",
        "1",
    )
    assert status == 2 and out == ""
    one_line(err, "bad.svm", words)


def test_a_test_file_follows_the_training_files_conventions(tmp_path):
    # labels 0..2 in training; a test file without class 0 is not shifted down
    train = svm(tmp_path / "train.svm", "0 1:1\n1 2:1\n2 3:1\n")
    test = svm(tmp_path / "test.svm", "1 1:1\n2 3:5\n")
    assert mc.datasets.libsvm(test)[1].tolist() == [0, 1]  # alone: shifted
    features, labels = mc.datasets.libsvm(test, like=train)
    assert labels.tolist() == [1, 2] and features.tolist() == [[1, 0, 0], [0, 0, 5]]
    # a zero-based training file: its zero-based test file is read zero-based
    train = svm(tmp_path / "train0.svm", "1 0:1 2:1\n2 1:1\n")
    test = svm(tmp_path / "test0.svm", "2 1:4 2:5\n")
    features, labels = mc.datasets.libsvm(test, like=train)
    assert features.tolist() == [[0, 4, 5]] and labels.tolist() == [1]


# --- the Dask scheduler ---------------------------------------------------------------------
def test_an_address_that_is_not_a_scheduler_is_one_line(capsys):
    pytest.importorskip("distributed")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        server.settimeout(10)
        stop = threading.Event()

        def answer_as_a_web_server():
            while not stop.is_set():
                try:
                    connection, _ = server.accept()
                except OSError:
                    return
                with connection:
                    connection.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
                    stop.wait(2)

        thread = threading.Thread(target=answer_as_a_web_server, daemon=True)
        thread.start()
        address = f"tcp://127.0.0.1:{server.getsockname()[1]}"
        net, data = problem()
        start = time.monotonic()
        with pytest.raises(ConnectionError, match="answered, but not as a Dask scheduler"):
            mc.fit(
                net,
                nn.CrossEntropyLoss(),
                data,
                PlainSGD(0.1),
                1,
                scheduler=address,
                scheduler_timeout=2.0,
            )
        assert time.monotonic() - start < 5
        done = run_process(*TINY, "--scheduler", address, timeout=60)
        stop.set()
    assert done.returncode == 1 and done.stdout == ""
    one_line(done.stderr, "--scheduler", "not as a Dask scheduler")
    assert "MemoryError" not in done.stderr


# --- downloads ------------------------------------------------------------------------------
class _Stalls(http.server.BaseHTTPRequestHandler):
    """Announces 1000 bytes, sends 10, then says nothing until the test ends."""

    stop: threading.Event

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.wfile.write(b"x" * 10)
        self.wfile.flush()
        self.stop.wait(10)

    def log_message(self, *args):
        pass


def test_a_server_that_stalls_mid_body_is_an_error_within_the_timeout(
    tmp_path, monkeypatch, capsys
):
    _Stalls.stop = threading.Event()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Stalls)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/file.gz"
        monkeypatch.setitem(
            _files.RESOURCES, "mnist", [_files.Resource("file.gz", url, "sha256:" + "0" * 64)]
        )
        start = time.monotonic()
        with pytest.raises(mc.datasets.DatasetNotFoundError, match="no answer for 0.5 s"):
            mc.datasets.download("mnist", tmp_path, timeout=0.5)
        assert time.monotonic() - start < 5
        status, _, err = run_cli(
            capsys, "download", "mnist", "--data-dir", tmp_path, "--timeout", "0.5"
        )
        assert status == 1
        one_line(err, "mcnet download: error: could not download file.gz", "no answer")
    finally:
        _Stalls.stop.set()
        server.shutdown()
        server.server_close()
    assert not list((tmp_path / "mnist").iterdir())


def test_a_damaged_file_in_place_is_fetched_again(tmp_path, monkeypatch):
    good = idx(np.arange(4), 0x801)
    (tmp_path / "served.gz").write_bytes(good)
    import hashlib

    checksum = "sha256:" + hashlib.sha256(good).hexdigest()
    monkeypatch.setitem(
        _files.RESOURCES,
        "mnist",
        [_files.Resource("t10k-labels-idx1-ubyte.gz", (tmp_path / "served.gz").as_uri(), checksum)],
    )
    folder = tmp_path / "data" / "mnist"
    folder.mkdir(parents=True)
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(good[:-3])
    mc.datasets.download("mnist", tmp_path / "data")
    assert (folder / "t10k-labels-idx1-ubyte.gz").read_bytes() == good


def test_a_refused_cifar_pickle_is_one_line(tmp_path, capsys):
    folder = tmp_path / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(pickle.dumps(Evil()))
    with pytest.raises(mc.DataError, match="refusing to load global"):
        mc.datasets.cifar10(tmp_path)
    status, out, err = run_cli(
        capsys, "train", "--dataset", "cifar10", "--model", "vgg11", "--data-dir", tmp_path
    )
    assert status == 1 and "pwned" not in out
    one_line(err, "--dataset cifar10", "data_batch_1", "refusing to load global")


def test_the_run_record_is_json_without_non_finite_numbers(tmp_path, capsys):
    out = tmp_path / "run.json"
    assert run_cli(capsys, *TINY, "--out", out)[0] == 0
    json.loads(out.read_text(), parse_constant=lambda name: pytest.fail(name))
