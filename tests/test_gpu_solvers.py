"""Solvers and fit on "cuda" parameters: the same trajectory as on the CPU, with the
solver's vectors kept on the device (skipped without CUDA and CuPy)."""

import numpy as np
import pytest

import mcnet as mc
from mcnet import nn
from mcnet.solvers import SOLVERS, make
from mcnet.training import Oracle

pytestmark = pytest.mark.gpu


def problem(device):
    images, labels = mc.datasets.digits()
    data = (images.reshape(len(images), -1)[:300], labels[:300])
    nn.manual_seed(0)
    net = nn.models.mlp([64, 16, 10], activation="tanh").to(device)
    return net, data


def test_newton_krylov_fit_on_cuda_matches_the_cpu():
    histories, parameters = {}, {}
    for device in ("cpu", "cuda"):
        net, data = problem(device)
        histories[device] = mc.fit(
            net, nn.CrossEntropyLoss(), data, mc.solvers.NewtonKrylov(), epochs=2, batch_size=100
        )
        parameters[device] = nn.parameters_to_vector(net)
    np.testing.assert_allclose(histories["cuda"].train_loss, histories["cpu"].train_loss, rtol=1e-9)
    np.testing.assert_allclose(parameters["cuda"], parameters["cpu"], rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_every_solver_keeps_its_state_on_the_device(name):
    import cupy

    net, data = problem("cuda")
    oracle = Oracle(mc.Objective(net, nn.CrossEntropyLoss()), data)
    solver = make(name, **({"lr": 1e-2} if "lr" in make(name).config() else {}))
    w = oracle.initial_point()
    assert isinstance(w, cupy.ndarray)
    state = solver.init(oracle, w)
    batch = (cupy.asarray(data[0][:100]), cupy.asarray(data[1][:100]))
    for _ in range(2):
        w, state, info = solver.step(oracle, w, None if solver.full_batch else batch, state)
    assert isinstance(w, cupy.ndarray) and bool(cupy.isfinite(w).all())
    for key, value in state.items():
        assert isinstance(value, (int, float, cupy.ndarray)), (key, type(value))
