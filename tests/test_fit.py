"""mc.fit: history, reproducibility, checkpoints and resume after SIGKILL, rejected steps,
argument checks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from oracles import PlainSGD

import mcnet as mc
from mcnet import nn
from mcnet.solvers import NewtonKrylov
from mcnet.training import TrainingError, fit


def digits_problem(n=400, hidden=16, seed=0):
    images, labels = mc.datasets.digits()
    inputs = images.reshape(len(images), -1)
    nn.manual_seed(seed)
    net = nn.models.mlp([64, hidden, 10], activation="tanh")
    return net, (inputs[:n], labels[:n]), (inputs[1500:], labels[1500:])


def test_history_records_every_epoch_and_iteration():
    net, train, test = digits_problem()
    history = fit(
        net, nn.CrossEntropyLoss(), train, NewtonKrylov(), epochs=2, batch_size=100, test_data=test
    )
    assert len(history.train_loss) == 3 and len(history.test_loss) == 3
    assert len(history.test_accuracy) == 3 and len(history.epoch_time) == 3
    assert history.train_loss[-1] < 0.5 * history.train_loss[0]
    assert history.test_accuracy[-1] > 0.8
    assert len(history.records) == 8  # 4 batches a epoch
    keys = {
        "epoch",
        "iteration",
        "loss",
        "time",
        "step_size",
        "krylov_iterations",
        "adjustments",
        "skipped",
        "rejected",
        "reason",
        "evaluations",
    }
    for record in history.records:
        assert keys <= set(record)
        assert record["evaluations"].get("global_gradient", 0) <= 1
    # the train loss is the full-data loss at the trained parameters, left in the module
    w = nn.parameters_to_vector(net)
    value = mc.Objective(net, nn.CrossEntropyLoss()).value(w, train)
    assert value == pytest.approx(history.train_loss[-1], rel=1e-12)
    data = json.loads(history.to_json())
    assert len(data["train_loss"]) == 3 and len(data["iterations"]) == 8
    assert len(data["time"]) == 8 and data["time"] == sorted(data["time"])


def test_evaluate_every_measures_inside_epochs_without_changing_the_run():
    runs = []
    for every in (None, 3):
        net, train, _ = digits_problem()
        history = fit(
            net,
            nn.CrossEntropyLoss(),
            train,
            NewtonKrylov(),
            epochs=2,
            batch_size=50,
            seed=1,
            evaluate_every=every,
        )
        runs.append((history, nn.parameters_to_vector(net)))
    (plain, w_plain), (measured, w_measured) = runs
    assert plain.interim_loss == []
    assert np.array_equal(w_plain, w_measured)
    assert [r["loss"] for r in measured.records] == [r["loss"] for r in plain.records]
    # 8 steps an epoch: after steps 3, 6 | 9, 12, 15 (8 and 16 are epoch ends, measured there)
    assert [p["iteration"] for p in measured.interim_loss] == [3, 6, 9, 12, 15]
    records = measured.records
    for point in measured.interim_loss:
        # the solver time after that step: the cumulative time at the end of the epoch
        # before (its set-up and steps, with the epoch-end losses NewtonKrylov reads for its
        # rollback), then the epoch's steps; the interim evaluations left out
        epoch = records[point["iteration"] - 1]["epoch"]
        steps = [r["time"] for r in records[: point["iteration"]] if r["epoch"] == epoch]
        expected = measured.epoch_time[epoch - 1] + sum(steps)
        assert point["time"] == pytest.approx(expected, abs=1e-9)
    data = json.loads(measured.to_json())
    assert data["interim_loss"] == measured.interim_loss


def test_each_interim_loss_is_the_full_training_loss_after_that_step():
    class Recording(PlainSGD):
        def update(self, grad, state, w):
            step, state = super().update(grad, state, w)
            self.after.append(np.array(w + step))
            return step, state

    net, train, _ = digits_problem()
    solver = Recording(lr=0.5)
    solver.after = []
    history = fit(
        net, nn.CrossEntropyLoss(), train, solver, epochs=1, batch_size=50, evaluate_every=2
    )
    objective = mc.Objective(net, nn.CrossEntropyLoss())
    assert [p["iteration"] for p in history.interim_loss] == [2, 4, 6]
    for point in history.interim_loss:
        expected = objective.value(solver.after[point["iteration"] - 1], train)
        assert point["train_loss"] == pytest.approx(expected, rel=1e-12)


@pytest.mark.slow
def test_same_seed_gives_bit_identical_parameters():
    results = []
    for _ in range(2):
        net, train, _ = digits_problem()
        fit(net, nn.CrossEntropyLoss(), train, NewtonKrylov(), epochs=2, batch_size=64, seed=3)
        results.append(nn.parameters_to_vector(net))
    assert np.array_equal(results[0], results[1])
    net, train, _ = digits_problem()
    fit(net, nn.CrossEntropyLoss(), train, NewtonKrylov(), epochs=2, batch_size=64, seed=4)
    assert not np.array_equal(results[0], nn.parameters_to_vector(net))


def test_full_batch_solver_takes_one_step_per_epoch():
    net, train, _ = digits_problem(n=200)
    history = fit(net, nn.CrossEntropyLoss(), train, mc.solvers.NewtonCG(), epochs=3)
    assert len(history.records) == 3
    assert history.train_loss[-1] < history.train_loss[0]


def test_exploding_learning_rate_never_leaves_nan_in_the_parameters():
    net, train, _ = digits_problem(n=200)
    before = nn.parameters_to_vector(net)
    # the first step lands near 1e308, where the loss overflows: the second step starts
    # from an infinite loss, so the first is undone and the second rejected
    with pytest.raises(
        TrainingError,
        match=r"PlainSGD\(lr=1e\+308\): every step of epoch 1"
        r".*iteration 2",
    ):
        fit(net, nn.CrossEntropyLoss(), train, PlainSGD(lr=1e308), epochs=3, batch_size=100)
    assert np.array_equal(nn.parameters_to_vector(net), before)
    net, train, _ = digits_problem(n=200)
    before = nn.parameters_to_vector(net)
    with pytest.raises(TrainingError, match="every step of epoch 1"):
        fit(net, nn.CrossEntropyLoss(), train, PlainSGD(lr=np.inf), epochs=1, batch_size=100)
    assert np.array_equal(nn.parameters_to_vector(net), before)


def test_a_rejected_step_is_recorded_and_undone():
    class SometimesNaN(PlainSGD):
        def update(self, grad, state, w):
            count = state.get("count", 0) + 1
            delta = -self.lr * grad if count % 2 else grad * np.nan
            return delta, {"count": count}

    net, train, _ = digits_problem(n=200)
    history = fit(net, nn.CrossEntropyLoss(), train, SometimesNaN(lr=0.1), epochs=1, batch_size=50)
    # A rejected step's state is dropped with it: the counter stays at 1, so every step
    # after the first is the NaN one again.
    assert [r["rejected"] for r in history.records] == [False, True, True, True]
    assert np.isfinite(nn.parameters_to_vector(net)).all()
    assert history.train_loss[1] < history.train_loss[0]


@pytest.mark.slow
def test_checkpoint_resume_after_sigkill_is_bit_identical(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(
        textwrap.dedent("""
        import sys
        import numpy as np
        import mcnet as mc
        from mcnet import nn
        images, labels = mc.datasets.digits()
        data = (images.reshape(len(images), -1)[:1200], labels[:1200])
        nn.manual_seed(0)
        net = nn.models.mlp([64, 32, 10], activation="tanh")
        checkpoint = sys.argv[2] if sys.argv[2] != "-" else None
        mc.fit(net, nn.CrossEntropyLoss(), data, mc.solvers.NewtonKrylov(), epochs=4,
               batch_size=64, checkpoint=checkpoint, resume=sys.argv[3] == "resume")
        np.save(sys.argv[1], nn.parameters_to_vector(net))
    """)
    )
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    run = [sys.executable, str(script)]
    subprocess.run(run + [str(tmp_path / "straight.npy"), "-", "fresh"], env=env, check=True)

    directory = tmp_path / "checkpoints"
    killed = subprocess.Popen(
        run + [str(tmp_path / "killed.npy"), str(directory), "fresh"], env=env
    )
    deadline = time.monotonic() + 120
    while not (directory / "checkpoint.npz").exists() and killed.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(0.2)  # well into epoch 2
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert killed.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    with np.load(directory / "checkpoint.npz") as archive:
        assert json.loads(str(archive["meta"]))["epoch"] < 4

    subprocess.run(
        run + [str(tmp_path / "resumed.npy"), str(directory), "resume"], env=env, check=True
    )
    assert np.array_equal(np.load(tmp_path / "straight.npy"), np.load(tmp_path / "resumed.npy"))


@pytest.mark.slow
def test_resume_continues_the_history_and_refuses_another_run(tmp_path):
    net, train, _ = digits_problem(n=200)
    straight = fit(net, nn.CrossEntropyLoss(), train, NewtonKrylov(), epochs=2, batch_size=50)
    net, train, _ = digits_problem(n=200)
    fit(
        net,
        nn.CrossEntropyLoss(),
        train,
        NewtonKrylov(),
        epochs=1,
        batch_size=50,
        checkpoint=tmp_path,
    )
    net, train, _ = digits_problem(n=200)  # a fresh module: everything comes from the file
    resumed = fit(
        net,
        nn.CrossEntropyLoss(),
        train,
        NewtonKrylov(),
        epochs=2,
        batch_size=50,
        checkpoint=tmp_path,
        resume=True,
    )
    assert resumed.train_loss == straight.train_loss
    assert len(resumed.records) == len(straight.records)
    with pytest.raises(mc.CheckpointMismatchError, match="different run.*eta"):
        fit(
            net,
            nn.CrossEntropyLoss(),
            train,
            NewtonKrylov(eta=0.1),
            epochs=3,
            batch_size=50,
            checkpoint=tmp_path,
            resume=True,
        )
    (tmp_path / "checkpoint.npz").write_bytes(b"not a zip file")
    with pytest.raises(mc.CheckpointError, match="damaged"):
        fit(
            net,
            nn.CrossEntropyLoss(),
            train,
            NewtonKrylov(),
            epochs=3,
            batch_size=50,
            checkpoint=tmp_path,
            resume=True,
        )


def test_checkpoint_is_written_atomically(tmp_path, monkeypatch):
    net, train, _ = digits_problem(n=200)
    fit(
        net,
        nn.CrossEntropyLoss(),
        train,
        NewtonKrylov(),
        epochs=1,
        batch_size=100,
        checkpoint=tmp_path,
    )
    good = (tmp_path / "checkpoint.npz").read_bytes()

    def failing_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    net, train, _ = digits_problem(n=200)
    with pytest.raises(OSError, match="disk full"):
        fit(
            net,
            nn.CrossEntropyLoss(),
            train,
            NewtonKrylov(),
            epochs=2,
            batch_size=100,
            checkpoint=tmp_path,
            resume=True,
        )
    assert (tmp_path / "checkpoint.npz").read_bytes() == good
    assert sorted(p.name for p in Path(tmp_path).iterdir()) == [".lock", "checkpoint.npz"]


def test_no_progress_bar_when_output_is_not_a_terminal(capsys):
    net, train, _ = digits_problem(n=200)
    fit(net, nn.CrossEntropyLoss(), train, NewtonKrylov(), epochs=1, batch_size=100)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    fit(net, nn.CrossEntropyLoss(), train, NewtonKrylov(), epochs=1, batch_size=100, progress=True)
    assert "newton-krylov epoch 1/1" in capsys.readouterr().err


@pytest.mark.parametrize(
    "change, error, message",
    [
        ({"epochs": 0}, ValueError, "epochs must be >= 1"),
        ({"epochs": 1.5}, TypeError, "epochs must be an integer"),
        ({"batch_size": 1000}, ValueError, "batch_size 1000 is larger than the data"),
        ({"batch_size": 0}, ValueError, "batch_size must be >= 1"),
        ({"solver": "adam"}, TypeError, "solver must be"),
        ({"resume": True}, ValueError, "resume=True needs checkpoint"),
        ({"evaluate_every": 0}, ValueError, "evaluate_every must be >= 1"),
        ({"data": "train"}, TypeError, "data must be a pair"),
        (
            {"test_data": (np.zeros((3, 64)), np.zeros(2, dtype=int))},
            ValueError,
            "test_data: inputs and targets must have the same length",
        ),
    ],
)
def test_bad_arguments_are_named(change, error, message):
    net, train, _ = digits_problem(n=200)
    arguments = {
        "module": net,
        "loss": nn.CrossEntropyLoss(),
        "data": train,
        "solver": NewtonKrylov(),
        "epochs": 1,
        **change,
    }
    with pytest.raises(error, match=message):
        fit(**arguments)


def test_module_and_data_that_disagree_are_named():
    net, (inputs, labels), _ = digits_problem(n=200)
    with pytest.raises(ValueError, match=r"Sequential with CrossEntropyLoss cannot take.*\(32,\)"):
        fit(net, nn.CrossEntropyLoss(), (inputs[:, :32], labels), NewtonKrylov(), epochs=1)
    with pytest.raises(ValueError, match="labels in"):
        fit(net, nn.CrossEntropyLoss(), (inputs, labels + 10), NewtonKrylov(), epochs=1)


def test_dask_is_imported_only_for_a_cluster():
    code = (
        "import sys, mcnet; loaded = [m for m in sys.modules if m.startswith("
        "('mcnet.training.distributed', 'distributed'))]; print(loaded)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.slow
def test_resume_after_a_rollback_continues_with_the_shortened_steps(tmp_path):
    """newton-krylov-fast at eta 0.2 and damping 1e-2 on the full step's ratio (at most 10
    Krylov iterations on batch-norm batches), on a BatchNorm sigmoid MLP, rolls its sixth
    epoch back and halves its steps; a run checkpointed there and resumed for a seventh epoch
    ends bit-identical to a straight run of seven (the rollback's point, loss and step scale
    are in the checkpoint)."""
    images, labels = mc.datasets.digits()
    data = (images.reshape(len(images), -1)[:768], labels[:768])

    def run(epochs, **options):
        nn.manual_seed(1)
        net = nn.Sequential(
            nn.Linear(64, 32), nn.BatchNorm1d(32), nn.Sigmoid(),
            nn.Linear(32, 32), nn.BatchNorm1d(32), nn.Sigmoid(), nn.Linear(32, 10),
        )  # fmt: skip
        solver = mc.solvers.make(
            "newton-krylov-fast",
            eta=0.2,
            damping=1e-2,
            damping_ratio="full",
            scale_invariant_max_krylov=10,
            epoch_rollback=0.5,
        )
        history = fit(net, nn.CrossEntropyLoss(), data, solver, epochs=epochs, **options)
        return history, nn.parameters_to_vector(net)

    straight, w_straight = run(7)
    assert any("rolled back" in r["reason"] for r in straight.records if r["epoch"] == 6)
    run(6, checkpoint=tmp_path)
    resumed, w_resumed = run(7, checkpoint=tmp_path, resume=True)
    assert resumed.train_loss == straight.train_loss
    assert np.array_equal(w_resumed, w_straight)
