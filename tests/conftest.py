"""Shared test configuration: hypothesis profiles, the GPU marker, and the mutation check.

Profiles (``HYPOTHESIS_PROFILE``): ``ci`` (CI's, reproducible), ``dev`` (the default here),
``thorough`` (many examples, for a long run before a release or after touching the algebra).
No test pins its own ``max_examples``: the profile decides.
"""

import os

import pytest
from hypothesis import HealthCheck, Phase, settings

# `ci` is reproducible: a red run is re-run with the same examples.
settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    max_examples=25,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile("dev", deadline=None, max_examples=3)
settings.register_profile(
    "thorough",
    deadline=None,
    max_examples=1000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    print_blob=True,
)
# tests/test_mutations.py: reproducible, and no shrinking (only the failure matters there)
settings.register_profile(
    "mutation", settings.get_profile("ci"), phases=[Phase.explicit, Phase.generate]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

# tests/test_mutations.py runs parts of this suite with one deliberate bug planted
# (tests/mutations.py); it is planted here, before any test module is imported.
if os.environ.get("MCNET_MUTATION"):
    import mutations

    mutations.apply(os.environ["MCNET_MUTATION"])


def pytest_report_header(config):
    if os.environ.get("MCNET_MUTATION"):
        return f"mcnet mutation planted: {', '.join(mutations.APPLIED)}"
    return None


# --- GPU tests: skipped without CuPy or a device, FAILED when CuPy is there but broken -------

# cudaErrorInsufficientDriver (35: no NVIDIA driver, as on a CPU-only machine with the CuPy
# wheel installed) and cudaErrorNoDevice (100) mean "no GPU here"; anything else is a fault.
NO_DEVICE_STATUS = {35, 100}


def cuda_status() -> tuple[str, str]:
    """("ok", ""), ("skip", why) when there is no CuPy or no device, ("fail", why) when CuPy
    imports but the device query breaks in any other way."""
    try:
        import cupy
    except ImportError as exc:
        return "skip", f"needs a CUDA device and CuPy (CuPy is not importable: {exc})"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # every failure is classified below
        if getattr(exc, "status", None) in NO_DEVICE_STATUS:
            return "skip", f"needs a CUDA device and CuPy (no device: {exc})"
        return "fail", f"CuPy imports but the CUDA device query failed: {exc!r}"
    if count < 1:
        return "skip", "needs a CUDA device and CuPy (CuPy reports 0 devices)"
    return "ok", ""


_STATUS: list[tuple[str, str]] = []


def _status() -> tuple[str, str]:
    if not _STATUS:
        _STATUS.append(cuda_status())
    return _STATUS[0]


def pytest_collection_modifyitems(config, items):
    gpu = [item for item in items if "gpu" in item.keywords]
    if not gpu:
        return
    state, why = _status()
    if state == "skip":
        for item in gpu:
            item.add_marker(pytest.mark.skip(reason=why))


def pytest_runtest_setup(item):
    if "gpu" in item.keywords:
        state, why = _status()
        if state == "fail":
            pytest.fail(why, pytrace=False)
