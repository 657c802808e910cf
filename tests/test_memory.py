"""mcnet keeps freed memory for reuse (``mcnet.algebra.memory``) unless told not to."""

from __future__ import annotations

import ctypes.util
import subprocess
import sys

import pytest

from mcnet.algebra.memory import keep_freed_memory

glibc = pytest.mark.skipif(
    not sys.platform.startswith("linux") or "libc.so.6" not in str(ctypes.util.find_library("c")),
    reason="glibc's mallopt only",
)


@pytest.mark.parametrize(
    "environ",
    [
        {"MCNET_KEEP_FREED_MEMORY": "0"},
        {"MALLOC_TRIM_THRESHOLD_": "131072"},
        {"MALLOC_MMAP_THRESHOLD_": "65536"},
    ],  # fmt: skip
)
def test_malloc_is_left_alone_when_the_environment_says_so(environ):
    assert keep_freed_memory(environ) is False


_REUSE = """
import resource, numpy as np, mcnet
def faults_of_a_fresh_block():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    blocks = [np.ones(1 << 20) for _ in range(6)]  # 6 blocks of 8 MB, their pages touched
    del blocks
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults_of_a_fresh_block()
print(faults_of_a_fresh_block())
"""


@glibc
def test_a_second_pass_reuses_the_memory_the_first_freed():
    """Blocks under the threshold come back from the process's own heap: the second round of
    allocations touches no new page (a fresh page costs a fault and the kernel's zeroing)."""
    done = subprocess.run([sys.executable, "-c", _REUSE], capture_output=True, text=True,
                          check=True, env={"PATH": "/usr/bin:/bin"})  # fmt: skip
    assert int(done.stdout) < 50
