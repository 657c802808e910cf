"""The same computations on the GPU as on the CPU (skipped without CUDA and CuPy)."""

import numpy as np
import pytest

import mcnet as mc
from mcnet.nn import CrossEntropyLoss, manual_seed, models, parameters_to_vector

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_lenet5_objective_matches_cpu(dtype):
    manual_seed(0)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, size=(8, 1, 28, 28)).astype(dtype)
    labels = rng.integers(0, 10, size=8)
    cpu_net = models.lenet5().to(dtype=dtype)
    gpu_net = models.lenet5().to(dtype=dtype)
    gpu_net.load_state_dict(cpu_net.state_dict())
    gpu_net.to("cuda")
    cpu, gpu = mc.Objective(cpu_net, CrossEntropyLoss()), mc.Objective(gpu_net, CrossEntropyLoss())
    w = parameters_to_vector(cpu_net)
    v = rng.standard_normal(w.size).astype(dtype)
    tol = 1e-10 if dtype == np.float64 else 2e-3
    batch_cpu = (images, labels)
    value, grad = cpu.value_and_grad(w, batch_cpu)
    gvalue, ggrad = gpu.value_and_grad(w, batch_cpu)
    assert gvalue == pytest.approx(value, rel=tol)
    np.testing.assert_allclose(ggrad, grad, rtol=tol, atol=tol * np.abs(grad).max())
    hv = cpu.hvp(w, v, batch_cpu)
    np.testing.assert_allclose(gpu.hvp(w, v, batch_cpu), hv, rtol=tol, atol=tol * np.abs(hv).max())
    assert gpu.curvature(w, v, batch_cpu) == pytest.approx(cpu.curvature(w, v, batch_cpu), rel=tol)


def test_directional_on_gpu_matches_closed_form():
    x = mc.tensor(np.linspace(-2, 2, 5000), device="cuda")
    got = mc.derivative(mc.tanh, x, 3)
    t = np.tanh(np.linspace(-2, 2, 5000))
    np.testing.assert_allclose(got, -2 * (1 - t * t) * (1 - 3 * t * t), rtol=1e-11, atol=1e-13)
