"""Where component data lives: NumPy arrays on the CPU, CuPy arrays on a CUDA device."""

from __future__ import annotations

from types import ModuleType

_CUPY: list[ModuleType] = []  # CuPy once it has been seen to work


def cuda_module() -> ModuleType:
    """CuPy, once it is known to see a CUDA device; a clear error saying what is missing
    otherwise (CuPy is the optional dependency ``mcnet[cuda]``)."""
    if _CUPY:
        return _CUPY[0]
    try:
        import cupy
    except ImportError as exc:
        raise ImportError(
            'device="cuda" needs CuPy, which is not installed: pip install "mcnet[cuda]" '
            '(on a machine with a CUDA device), or use device="cpu"'
        ) from exc
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDARuntimeError: no device, no driver, ...
        raise RuntimeError(
            f'device="cuda": CuPy is installed but finds no usable CUDA device ({exc}); '
            'use device="cpu"'
        ) from exc
    if count < 1:
        raise RuntimeError('device="cuda": no CUDA device is present; use device="cpu"')
    _CUPY.append(cupy)
    return cupy
