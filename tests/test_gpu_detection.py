"""The GPU tests skip only without CuPy or without a device; a CuPy that imports but breaks
makes them fail (tests/conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest
from conftest import cuda_status


class FakeRuntimeError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def fake_cupy(device_count) -> types.SimpleNamespace:
    runtime = types.SimpleNamespace(getDeviceCount=device_count)
    return types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=runtime))


def raises(exc):
    def call():
        raise exc

    return call


@pytest.mark.parametrize(
    ("module", "state", "words"),
    [
        (None, "skip", "not importable"),
        (fake_cupy(lambda: 0), "skip", "0 devices"),
        (fake_cupy(raises(FakeRuntimeError(100, "cudaErrorNoDevice"))), "skip", "no device"),
        (
            fake_cupy(raises(FakeRuntimeError(35, "cudaErrorInsufficientDriver"))),
            "skip",
            "no device",
        ),
        (
            fake_cupy(raises(FakeRuntimeError(3, "cudaErrorInitializationError"))),
            "fail",
            "cudaErrorInitializationError",
        ),
        (
            fake_cupy(raises(AttributeError("module 'cupy' has no attribute 'cuda'"))),
            "fail",
            "AttributeError",
        ),
        (fake_cupy(lambda: 1), "ok", ""),
    ],
)
def test_cuda_status_classifies_cupy(monkeypatch, module, state, words):
    monkeypatch.setitem(sys.modules, "cupy", module)
    got, why = cuda_status()
    assert got == state and words in why


@pytest.mark.slow
def test_broken_cupy_fails_the_gpu_tests_instead_of_skipping(tmp_path):
    """End to end: a CuPy package whose device query raises runs tests/test_gpu.py red."""
    package = tmp_path / "cupy"
    package.mkdir()
    (package / "__init__.py").write_text(
        textwrap.dedent(
            """
        class _Runtime:
            @staticmethod
            def getDeviceCount():
                raise OSError("libcuda.so: cannot open shared object file")

        class cuda:
            runtime = _Runtime
        """
        )
    )
    tests = Path(__file__).parent
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(tests)]))
    env.pop("MCNET_MUTATION", None)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(tests / "test_gpu.py"),
        ],
        env=env,
        capture_output=True,
        text=True,
        cwd=tests.parent,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "CuPy imports but the CUDA device query failed" in done.stdout
    assert " passed" not in done.stdout and "skipped" not in done.stdout
