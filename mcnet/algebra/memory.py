"""Freed memory kept in the process for reuse (glibc's malloc; elsewhere nothing changes).

A derivative pass allocates and frees hundreds of megabytes of temporaries (im2col's columns,
multicomplex activations).  By default glibc returns blocks above its mmap threshold to the
kernel at once and trims the heap's top beyond 128 KiB, so every pass gets fresh pages, which
the kernel must zero: on VGG-11 in float32 that was two fifths of a vᵀHv call (2110 ms
against 1259 ms, calls in turn).  With the threshold at glibc's maximum (32 MiB) and trimming
off, a pass reuses what the last one freed.  The peak is what it was; the difference is that
freed memory goes back to the system when the process ends, not before.

``MCNET_KEEP_FREED_MEMORY=0`` (or a ``MALLOC_MMAP_THRESHOLD_`` or ``MALLOC_TRIM_THRESHOLD_``
of one's own) leaves malloc as it is.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Mapping

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # the largest glibc accepts on 64-bit systems
_NO_TRIM = 2**31 - 1  # mallopt takes an int

_OPT_OUT = "MCNET_KEEP_FREED_MEMORY"
_OWN_MALLOC_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def keep_freed_memory(environ: Mapping[str, str] = os.environ) -> bool:
    """Set glibc's mmap threshold to its maximum and turn heap trimming off, unless the
    environment says otherwise (see the module's docstring); whether it was done."""
    if environ.get(_OPT_OUT, "1") == "0" or any(name in environ for name in _OWN_MALLOC_SETTINGS):
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (musl, ...)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)) and bool(
        mallopt(_M_TRIM_THRESHOLD, _NO_TRIM)
    )
