"""The suite's clock (``benchmarks/nk_suite.py``): ``History.epoch_time`` is the solver's
cumulative time already, so a run keeps it as it is, and runs saved when the suite summed it
a second time are read back by differences; equal wall time reads each loss at the other
solver's own time."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from mcnet.training import History

SUITE = Path(__file__).resolve().parents[1] / "benchmarks" / "nk_suite.py"


@pytest.fixture(scope="module")
def suite():
    spec = importlib.util.spec_from_file_location("nk_suite_under_test", SUITE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


def test_a_run_keeps_the_solvers_cumulative_seconds(suite, monkeypatch):
    cumulative = [0.0, 1.0, 2.5, 4.0]

    def fit(*args, **kwargs):
        return History("adam", {}, train_loss=[3.0, 2.0, 1.0, 0.5], epoch_time=cumulative)

    monkeypatch.setattr(suite.mc, "fit", fit)
    record = suite.run_one(suite.BY_NAME["iris-mlp1-sigmoid"], "adam", {"lr": 0.1})
    assert record["seconds"] == cumulative
    assert suite.solver_seconds(record) == cumulative


def test_runs_saved_with_summed_times_are_read_back_by_differences(suite):
    cumulative = np.array([0.0, 0.25, 1.0, 1.5, 3.0])
    summed = {"train_loss": [1.0] * 5, "time": np.cumsum(cumulative).tolist()}
    np.testing.assert_allclose(suite.solver_seconds(summed), cumulative, rtol=1e-15, atol=0)


def test_equal_wall_time_reads_newton_krylovs_loss_at_adams_own_time(suite):
    adam = {"train_loss": [2.0, 1.0, 0.5], "seconds": [0.0, 1.0, 2.0]}
    nk = {"train_loss": [2.0, 0.8, 0.4, 0.2], "seconds": [0.0, 1.5, 3.0, 4.5]}
    row = suite.row(suite.BY_NAME["iris-mlp1-sigmoid"], adam, nk)
    assert row["adam_time"] == 2.0 and row["nk_time"] == 4.5
    assert row["equal_time"] == pytest.approx(0.8 / 0.5)  # NK's loss after 1.5 s, not 3 s
    assert row["time_to_adam"] == 3.0
    assert row["equal_epochs"] == pytest.approx(0.2 / 0.5)


@pytest.mark.parametrize(
    ("losses", "reference", "expected"),
    [
        ([2.5, 2.2394045671, 2.2394045671, 2.2394045671], 0.03, True),  # the freeze
        ([6.1e-5, 4.3e-6, 4.3e-6, 4.3e-6], 1.75e-4, False),  # stopped below Adam: converged
        ([2.5, 2.3, 2.3, 2.2], 0.03, False),  # one epoch rolled back, then a step down
        ([2.5, 2.3, 2.2, 2.1], 0.03, False),
    ],
)
def test_a_freeze_is_a_flat_loss_above_adams(suite, losses, reference, expected):
    assert suite.frozen({"train_loss": losses}, reference) is expected


def test_a_seed_reaches_the_weights_and_the_batch_order_and_is_not_mixed_up(
    suite, monkeypatch, tmp_path
):
    seeds = []

    def fit(module, *args, seed, **kwargs):
        seeds.append(seed)
        return History("adam", {}, train_loss=[3.0, 2.0], epoch_time=[0.0, 1.0])

    monkeypatch.setattr(suite.mc, "fit", fit)
    monkeypatch.setattr(suite, "RESULTS", tmp_path)
    problem = suite.BY_NAME["iris-mlp1-sigmoid"]
    saved = suite.load_or_run(problem, "adam", {"lr": 0.1}, rerun=False)
    assert (saved["seed"], seeds) == (0, [0])
    suite.load_or_run(problem, "adam", {"lr": 0.1}, rerun=False)
    assert seeds == [0]  # the saved run was reused
    first = np.array(suite._model(problem, *problem.data()).parameters()[0].value)

    monkeypatch.setattr(suite, "SEED", 3)
    other = suite.load_or_run(problem, "adam", {"lr": 0.1}, rerun=False)
    assert (other["seed"], seeds) == (3, [0, 3])  # the seed-0 run was not taken for it
    assert not np.array_equal(
        first, np.array(suite._model(problem, *problem.data()).parameters()[0].value)
    )


def test_an_unknown_problem_is_named_in_a_usage_error(suite, capsys):
    with pytest.raises(SystemExit) as stop:
        suite.main(["--problem", "iris-mlp1-sigmoid", "--problem", "no-such-problem"])
    assert stop.value.code == 2
    assert "no problem named 'no-such-problem'" in capsys.readouterr().err
