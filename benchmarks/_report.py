"""Helpers shared by the benchmark scripts: timing, provenance and atomic result files."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parent.parent


def write_atomic(path: Path, content: str | bytes) -> Path:
    """Write a file by temp file + os.replace, so a reader never sees half a result."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = "wb" if isinstance(content, bytes) else "w"
    with tempfile.NamedTemporaryFile(mode, dir=path.parent, suffix=".tmp", delete=False) as tmp:
        tmp.write(content)
    os.replace(tmp.name, path)
    return path


def write_json(path: Path, data: dict) -> Path:
    return write_atomic(path, json.dumps(data, indent=1) + "\n")


def git_commit() -> str:
    """Short hash of HEAD, with "+dirty" when mcnet/ has uncommitted changes."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, check=False
        ).stdout.strip()

    if os.environ.get("MCNET_COMMIT"):  # a copy of the tree without .git (the device run)
        return os.environ["MCNET_COMMIT"]
    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + ("+dirty" if git("status", "--porcelain", "--", "mcnet") else "")


# The vector extensions that decide which kernels OpenBLAS, oneDNN and LLVM run: two VMs that
# both call themselves "AMD EPYC" gave PyTorch's float32 VGG-11 gradient 487 and 316 ms.
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile")


def cpu_description() -> dict:
    """The CPU's model name, family, model and which of ``CPU_FLAGS`` it has (Linux's
    /proc/cpuinfo; the platform's processor string elsewhere)."""
    fields: dict = {"model name": platform.processor()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = (part.strip() for part in line.partition(":"))
            if key in ("model name", "cpu family", "model", "flags"):
                fields[key] = value
            if not line.strip():  # the first processor's block is enough
                break
    except OSError:
        pass
    flags = set(fields.get("flags", "").split())
    return {
        "name": fields["model name"],
        "family": fields.get("cpu family"),
        "model": fields.get("model"),
        "flags": [flag for flag in CPU_FLAGS if flag in flags],
    }


def environment() -> dict:
    """What the numbers were measured on."""
    cpu = cpu_description()
    return {
        "commit": git_commit(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "cpu": cpu["name"],
        "cpu_family_model_flags": [cpu["family"], cpu["model"], cpu["flags"]],
        "cores": os.cpu_count(),
        "blas": blas(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }


# Set on some machines because older OpenBLAS builds failed on their CPUs: they pin a current
# OpenBLAS to other kernels than it would pick (``benchmarks/README.md``, "OpenBLAS's kernels").
BLAS_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def blas() -> dict:
    """NumPy's BLAS: library, version, the kernels it runs (threadpoolctl), and the environment
    variables that pin OpenBLAS's kernels, as set for this process."""
    info: dict = {name: os.environ.get(name) for name in BLAS_OVERRIDES}
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return info
    pools = [pool for pool in threadpool_info() if pool.get("user_api") == "blas"]
    # SciPy (which scikit-learn loads) may bring its own OpenBLAS; NumPy's lies in its
    # package or beside it (a wheel's numpy.libs): paths that start with NumPy's directory
    numpy_dir = str(Path(np.__file__).parent)
    ours = [pool for pool in pools if str(pool.get("filepath", "")).startswith(numpy_dir)]
    for pool in (ours or pools)[:1]:
        info.update({key: pool.get(key) for key in ("internal_api", "version", "architecture")})
    return info


def blas_note() -> str | None:
    """A line to print when environment variables pin OpenBLAS's kernels, else None."""
    info = blas()
    pinned = {name: info[name] for name in BLAS_OVERRIDES if info[name] is not None}
    if not pinned:
        return None
    settings = " ".join(f"{name}={value}" for name, value in pinned.items())
    kernels = info.get("architecture")
    return (f"note: {settings} in the environment: OpenBLAS runs its {kernels} kernels, not "
            f"the ones it would pick; `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python ...` "
            f"measures those")  # fmt: skip


def single_thread() -> AbstractContextManager:
    """Limit BLAS/OpenMP pools to one thread (threadpoolctl), or do nothing if it is absent."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        print("note: threadpoolctl is not installed; BLAS may use several threads")
        return nullcontext()
    return threadpool_limits(1)


def call_times(
    fn: Callable[[], object], repeats: int, clock: Callable[[], float] = time.perf_counter
) -> list[float]:
    """Seconds of each of ``repeats`` calls by ``clock`` (wall time by default;
    ``time.thread_time`` for the thread's CPU time), after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = clock()
        fn()
        times.append(clock() - start)
    return times


def median_time(
    fn: Callable[[], object], repeats: int, clock: Callable[[], float] = time.perf_counter
) -> float:
    """Median seconds of ``repeats`` calls by ``clock``, after one warm-up call."""
    return statistics.median(call_times(fn, repeats, clock))


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
