"""DaskOracle: full-data sums on a Dask cluster equal the single-process Oracle's.

One LocalCluster (2 worker processes, loopback, no dashboard) serves the module; only the
tests of starting a cluster (scheduler="local") and of losing a scheduler start their own.
The test that kills a worker runs last and waits for the nanny's replacement.
"""

from __future__ import annotations

import os
import pickle
import signal
import socket
import sys
import threading
import time

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")
pytestmark = pytest.mark.slow  # every test starts or reaches a Dask cluster (1-2 s each)

import mcnet as mc  # noqa: E402
from mcnet import nn  # noqa: E402
from mcnet.solvers import NewtonCG, NewtonKrylov  # noqa: E402
from mcnet.training import Oracle  # noqa: E402
from mcnet.training.distributed import (  # noqa: E402
    DaskOracle,
    SchedulerError,
    _pickle_without_call_state,
    require_dask,
)
from mcnet.training.oracle import make_oracle  # noqa: E402

RTOL = 1e-12


class Sleepy(nn.Module):
    """The identity, taking ``seconds`` per forward: a sum slow enough to act in mid-way.
    (Workers unpickle it from this module, which they import by name.)"""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    def forward(self, x):
        time.sleep(self.seconds)
        return x

    def backward(self, grad_out):
        return grad_out


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
    ) as local:
        yield local


@pytest.fixture(scope="module")
def client(cluster):
    with distributed.Client(cluster, set_as_default=False) as connected:
        yield connected


@pytest.fixture(scope="module")
def digits():
    return mc.datasets.digits()


def mlp(*front: nn.Module) -> nn.Sequential:
    nn.manual_seed(0)
    return nn.Sequential(*front, nn.Flatten(), nn.models.mlp([64, 32, 10], "tanh"))


def objective(net: nn.Module) -> mc.Objective:
    return mc.Objective(net, nn.CrossEntropyLoss())


def assert_close(actual, expected, rtol=RTOL):
    """Relative to the largest entry: the sums differ only in the order of additions."""
    actual = actual if isinstance(actual, tuple) else (actual,)
    expected = expected if isinstance(expected, tuple) else (expected,)
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        assert type(a) is type(e)
        scale = float(np.max(np.abs(e)))
        assert float(np.max(np.abs(np.asarray(a) - e))) <= rtol * scale


def directions(size: int):
    rng = np.random.default_rng(1)
    return rng.standard_normal(size), rng.standard_normal(size)


# --- the sums ---------------------------------------------------------------------------------
def test_full_data_value_gradient_and_hvp_equal_the_single_process_oracle(cluster, digits):
    net = mlp()
    plain = Oracle(objective(net), digits, chunk_size=256)
    # by address: the path of `--scheduler tcp://...`
    with DaskOracle(
        objective(net), digits, chunk_size=256, scheduler=cluster.scheduler_address
    ) as oracle:
        assert oracle.shards == 2 and len(oracle.workers) == 2
        w = plain.initial_point()
        w = w + 0.1 * directions(w.size)[0]  # away from the initial point's symmetries
        v, _ = directions(w.size)
        for method, args in [
            ("value", (w,)),
            ("value_and_grad", (w,)),
            ("value_grad_and_hvp", (w, v)),
            ("grad_and_hvp", (w, v)),
            ("hvp", (w, v)),
            ("curvature", (w, v)),
            ("gauss_newton_product", (w, v)),
        ]:
            assert_close(getattr(oracle, method)(*args), getattr(plain, method)(*args))
        assert oracle.counts == plain.counts  # counted as global_<kind>, as Oracle does
        assert set(oracle.counts) == {
            "global_function",
            "global_gradient",
            "global_hvp",
            "global_curvature",
            "global_gauss_newton",
        }


def test_minibatch_evaluations_stay_on_this_process(client, digits):
    net = mlp()
    plain = Oracle(objective(net), digits)
    # shards are whole chunks: the default chunk_size=2048 leaves one worker idle
    with pytest.warns(UserWarning, match="only 1 of 2 workers get data"):
        oracle = DaskOracle(objective(net), digits, scheduler=client)
    with oracle:
        w = plain.initial_point()
        v, _ = directions(w.size)
        batch = (digits[0][:100], digits[1][:100])
        calls = oracle._session.calls
        before = next(calls)
        # the very same local computation: identical bits
        np.testing.assert_array_equal(
            oracle.value_grad_and_hvp(w, v, batch)[2], plain.value_grad_and_hvp(w, v, batch)[2]
        )
        assert next(calls) == before + 1  # no cluster call in between
        assert oracle.counts == {"hvp": 1}


def test_sums_over_many_shards_by_a_tree_of_tasks(client, digits):
    net = mlp()
    plain = Oracle(objective(net), digits, chunk_size=100)
    with DaskOracle(
        objective(net), digits, chunk_size=100, scheduler=client, shards=5, fan_in=2
    ) as oracle:
        assert oracle.shards == 5
        w = plain.initial_point()
        v, _ = directions(w.size)
        assert_close(oracle.value_grad_and_hvp(w, v), plain.value_grad_and_hvp(w, v))
        # a fixed order of additions: the same bits every time
        first, again = oracle.value_and_grad(w), oracle.value_and_grad(w)
        assert first[0] == again[0] and np.array_equal(first[1], again[1])


def test_eval_mode_and_running_statistics_follow_this_process(client, digits):
    nn.manual_seed(0)
    net = nn.Sequential(
        nn.Flatten(), nn.Linear(64, 32), nn.BatchNorm1d(32), nn.Tanh(), nn.Linear(32, 10)
    )
    plain = Oracle(objective(net), digits, chunk_size=300)
    with pytest.warns(UserWarning, match="running statistics"):
        oracle = DaskOracle(objective(net), digits, chunk_size=300, scheduler=client)
    with oracle:
        w = plain.initial_point()
        v, _ = directions(w.size)
        net.eval()
        # statistics that moved after the module was sent: each call carries them
        net[2]._buffers["running_mean"] = np.linspace(-0.5, 0.5, 32)
        net[2]._buffers["running_var"] = np.linspace(0.5, 2.0, 32)
        assert_close(oracle.value_grad_and_hvp(w, v), plain.value_grad_and_hvp(w, v))
        net.train()  # train mode: batch statistics, chunk by chunk, on both sides
        assert_close(oracle.value_and_grad(w), plain.value_and_grad(w))


def test_module_is_sent_without_the_state_of_its_last_evaluation(digits):
    net = mlp()
    fresh = len(_pickle_without_call_state(net, nn.CrossEntropyLoss()))
    Oracle(objective(net), digits).value_grad_and_hvp(*directions(2410))
    assert len(pickle.dumps(net)) > 10 * fresh  # complex activations of 1797 examples
    # the same but for the traced graph's steps, now that it is traced
    assert len(_pickle_without_call_state(net, nn.CrossEntropyLoss())) < 1.1 * fresh
    assert any(m.saved is not None for m in net.modules())  # this process's copy kept it


# --- a step of the solvers ----------------------------------------------------------------------
def test_newton_krylov_steps_with_the_cluster_equal_the_plain_ones(client, digits):
    net = mlp()
    plain = Oracle(objective(net), digits, chunk_size=512)
    with DaskOracle(objective(net), digits, chunk_size=512, scheduler=client) as oracle:
        solver = NewtonKrylov(max_krylov=5)
        w = plain.initial_point()
        states = solver.init(plain, w), solver.init(oracle, w)
        assert_close(states[1]["gradient.global"], states[0]["gradient.global"])
        points = w, w
        for index in range(2):
            batch = (
                digits[0][index * 128 : (index + 1) * 128],
                digits[1][index * 128 : (index + 1) * 128],
            )
            expected, state, _ = solver.step(plain, points[0], batch, states[0])
            actual, cluster_state, info = solver.step(oracle, points[1], batch, states[1])
            assert not info.skipped and info.step_size > 0
            assert np.linalg.norm(actual - expected) <= RTOL * np.linalg.norm(expected)
            points, states = (expected, actual), (state, cluster_state)
        assert oracle.counts["global_gradient"] == 3  # line 1, then line 48 per step


def test_a_full_batch_newton_cg_step_with_the_cluster_equals_the_plain_one(client, digits):
    net = mlp()
    plain = Oracle(objective(net), digits, chunk_size=512)
    with DaskOracle(objective(net), digits, chunk_size=512, scheduler=client) as oracle:
        solver = NewtonCG(max_cg=3)
        w = plain.initial_point()
        expected, _, _ = solver.step(plain, w, None, solver.init(plain, w))
        actual, _, info = solver.step(oracle, w, None, solver.init(oracle, w))
        assert np.linalg.norm(actual - expected) <= RTOL * np.linalg.norm(expected)
        assert oracle.counts["global_hvp"] >= 1


# --- failures: clear errors, in bounded time ----------------------------------------------
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_unreachable_scheduler_is_an_error_within_the_timeout(digits):
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    start = time.monotonic()
    with pytest.raises(SchedulerError, match=f"{address}.*1 s"):
        DaskOracle(objective(mlp()), digits, scheduler=address, timeout=1.0)
    assert time.monotonic() - start < 5.0


def test_a_scheduler_that_never_answers_is_an_error_within_the_timeout(digits):
    # accepts connections and says nothing: distributed.Client alone would wait forever
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        address = f"tcp://127.0.0.1:{silent.getsockname()[1]}"
        start = time.monotonic()
        with pytest.raises(SchedulerError, match="did not answer within 1 s"):
            DaskOracle(objective(mlp()), digits, scheduler=address, timeout=1.0)
        assert time.monotonic() - start < 5.0


def test_a_scheduler_lost_after_the_start_is_an_error_within_the_timeout(digits):
    # a throwaway cluster in this process (threads, over TCP): cheap to start and to lose
    lost = distributed.LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=False,
        host="127.0.0.1",
        protocol="tcp://",
        dashboard_address=None,
    )
    with DaskOracle(
        objective(mlp()), digits, chunk_size=900, scheduler=lost.scheduler_address, timeout=1.0
    ) as oracle:
        w = oracle.initial_point()
        assert oracle.value(w) > 0
        lost.close()
        start = time.monotonic()
        with pytest.raises(SchedulerError, match="was lost or closed"):
            oracle.value(w)
        assert time.monotonic() - start < 6.0


def test_a_full_data_evaluation_longer_than_call_timeout_is_an_error(client, digits):
    net = mlp(Sleepy(0.2))
    with DaskOracle(
        objective(net), digits, chunk_size=128, scheduler=client, call_timeout=0.5
    ) as oracle:
        start = time.monotonic()
        with pytest.raises(TimeoutError, match="call_timeout=0.5 s"):
            oracle.value(oracle.initial_point())  # 8 chunks of 0.2 s per shard
        assert time.monotonic() - start < 3.0
    time.sleep(1.5)  # let the abandoned sums finish before the next test uses the workers


def test_without_dask_the_error_says_how_to_install_it(monkeypatch, digits):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed fails
    hint = r'pip install "mcnet\[distributed\]"'
    with pytest.raises(ImportError, match=hint):
        require_dask()
    with pytest.raises(ImportError, match=hint):
        make_oracle(objective(mlp()), digits, scheduler="local")
    assert type(make_oracle(objective(mlp()), digits)) is Oracle  # no cluster, no Dask


def test_make_oracle_and_close(client, digits):
    plain = make_oracle(objective(mlp()), digits)
    plain.close()  # nothing to close
    with pytest.raises(ValueError, match="scheduler='local'"):
        make_oracle(objective(mlp()), digits, workers=2)
    oracle = make_oracle(objective(mlp()), digits, 600, scheduler=client)
    assert isinstance(oracle, DaskOracle)
    w = oracle.initial_point()
    oracle.close()
    with pytest.raises(RuntimeError, match="closed"):
        oracle.value(w)
    assert oracle.value(w, (digits[0][:10], digits[1][:10])) > 0  # minibatches still work
    assert client.status == "running"  # a client passed in is the caller's to close


def test_a_local_cluster_is_on_loopback_and_closes_with_the_oracle(digits):
    oracle = DaskOracle(objective(mlp()), digits, scheduler="local", workers=1)
    cluster = oracle._session.cluster
    pids = list(oracle.client.run(os.getpid).values())
    assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
    assert all(address.startswith("tcp://127.0.0.1:") for address in oracle.workers)
    # no dashboard; Dask's small HTTP server (health, metrics) listens on loopback too
    http = {sock.getsockname()[0] for sock in cluster.scheduler.http_server._sockets.values()}
    assert http == {"127.0.0.1"}
    oracle.close()
    assert cluster.status.name == "closed"
    time.sleep(0.5)
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


# --- last: it kills a worker --------------------------------------------------------------
def test_fit_with_a_scheduler_trains_like_the_plain_fit(client, digits):
    data = (digits[0][:600], digits[1][:600])
    results = []
    for scheduler in (None, client.scheduler.address):
        net = mlp()
        history = mc.fit(
            net,
            nn.CrossEntropyLoss(),
            data,
            mc.solvers.NewtonCG(max_cg=5),
            epochs=2,
            chunk_size=200,
            scheduler=scheduler,
        )
        results.append((history.train_loss, nn.parameters_to_vector(net)))
    (plain_loss, plain_w), (dask_loss, dask_w) = results
    np.testing.assert_allclose(dask_loss, plain_loss, rtol=1e-12)
    assert_close(dask_w, plain_w, rtol=1e-10)


def test_a_worker_killed_mid_sum_is_recomputed_and_the_result_is_unchanged(client, digits):
    net = mlp(Sleepy(0.05))
    plain = Oracle(objective(net), digits, chunk_size=128)
    with DaskOracle(objective(net), digits, chunk_size=128, scheduler=client) as oracle:
        w = plain.initial_point()
        undisturbed = oracle.value_and_grad(w)
        pids = client.run(os.getpid)
        result = {}
        thread = threading.Thread(target=lambda: result.update(out=oracle.value_and_grad(w)))
        thread.start()
        victim, deadline = None, time.monotonic() + 30
        while victim is None and time.monotonic() < deadline:  # shard 1's sum under way
            for worker, keys in client.processing().items():
                if any(
                    str(key).startswith("mcnet-sum-") and str(key).endswith("-1") for key in keys
                ):
                    victim = worker
            time.sleep(0.01)
        assert victim is not None
        time.sleep(0.1)  # inside its 7 chunks of 0.05 s
        os.kill(pids[victim], signal.SIGKILL)  # with it go shard 1 and its partial sum
        thread.join(timeout=60)
        assert "out" in result
        assert_close(result["out"], plain.value_and_grad(w))
        # recomputed from the same shard, the same chunks: the same bits as undisturbed
        assert result["out"][0] == undisturbed[0]
        np.testing.assert_array_equal(result["out"][1], undisturbed[1])
    client.wait_for_workers(2, timeout=30)  # the nanny has started a new worker
    assert victim not in client.nthreads()
