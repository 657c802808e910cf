"""The ``mcnet`` command line: train, compare, ablate, curvature, and its errors.

Commands run in-process through ``mcnet.cli.main`` (one process pays the imports once);
one test runs the installed console script. Problems are tiny: logistic regression or an
8-unit MLP on a few hundred digits, one or two epochs.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mcnet import cli
from mcnet import experiments as ex
from mcnet.experiments.studies import variant_options
from mcnet.solvers import SOLVERS, make

# every solver the issue names; one not registered (yet) is skipped, not failed
ALL_SOLVERS = (
    "newton-krylov",
    "sgd",
    "adam",
    "adagrad",
    "rmsprop",
    "lbfgs",
    "hessian-free",
    "lscg",
    "shampoo",
    "newton-cg",
    "newton-krylov-fast",
)
TINY = [
    "--model",
    "logistic_regression",
    "--subset",
    "300",
    "--test-subset",
    "100",
    "--batch-size",
    "64",
]
try:
    import matplotlib  # noqa: F401

    PLOTS: list[str] = []
except ImportError:  # the plot extra is optional: the files other than PNGs are still checked
    PLOTS = ["--no-plots"]


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    status = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


# --- mcnet train --------------------------------------------------------------------------------
@pytest.mark.parametrize("solver", ALL_SOLVERS)
@pytest.mark.slow
def test_train_every_solver_two_epochs(solver, tmp_path, capsys):
    if solver not in SOLVERS:
        pytest.skip(f"{solver} is not registered yet")
    out = tmp_path / "run.json"
    status, stdout, err = run_cli(
        capsys, "train", *TINY, "--solver", solver, "--epochs", "2", "--out", out
    )
    assert status == 0, err
    record = json.loads(out.read_text())
    losses = record["train_loss"]
    assert len(losses) == 3 and all(v is not None and math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0], losses
    assert len(record["test_loss"]) == 3 and len(record["test_accuracy"]) == 3
    assert record["iterations"] and "loss" in record["iterations"][0]
    assert len(record["epoch_time"]) == 3 and record["wall_time"] > 0
    assert record["command"][:2] == ["mcnet", "train"] and "--solver" in record["command"]
    assert set(record["versions"]) >= {"mcnet", "numpy", "numba", "python"}
    assert record["solver"] == solver
    assert f"wrote {out}" in stdout


@pytest.mark.slow
def test_resume_after_epoch_one_gives_the_uninterrupted_losses(tmp_path, capsys):
    flags = ["train", *TINY, "--model", "mlp", "--hidden", "8"]
    assert run_cli(capsys, *flags, "--epochs", "2", "--out", tmp_path / "full.json")[0] == 0
    checkpoint = tmp_path / "ck"
    assert (
        run_cli(
            capsys,
            *flags,
            "--epochs",
            "1",
            "--checkpoint",
            checkpoint,
            "--out",
            tmp_path / "one.json",
        )[0]
        == 0
    )
    status, _, err = run_cli(
        capsys,
        *flags,
        "--epochs",
        "2",
        "--checkpoint",
        checkpoint,
        "--resume",
        "--out",
        tmp_path / "resumed.json",
    )
    assert status == 0, err
    full = json.loads((tmp_path / "full.json").read_text())
    resumed = json.loads((tmp_path / "resumed.json").read_text())
    assert len(resumed["train_loss"]) == 3
    assert resumed["train_loss"] == full["train_loss"]
    assert resumed["test_loss"] == full["test_loss"]


def test_train_evaluate_every_records_the_losses_inside_epochs(tmp_path, capsys):
    out = tmp_path / "run.json"
    status, _, err = run_cli(
        capsys,
        "train",
        *TINY,
        "--solver",
        "adam",
        "--epochs",
        "2",
        "--evaluate-every",
        "3",
        "--out",
        out,
    )
    assert status == 0, err
    record = json.loads(out.read_text())
    # 5 steps an epoch: after steps 3 | 6, 9 (5 and 10 are epoch ends)
    assert [p["iteration"] for p in record["interim_loss"]] == [3, 6, 9]
    assert all(0 < p["train_loss"] < record["train_loss"][0] for p in record["interim_loss"])
    status, _, err = run_cli(capsys, "train", *TINY, "--evaluate-every", "0")
    assert status == 2 and "--evaluate-every" in err


def test_train_float32_activation_none_and_params_file(tmp_path, capsys):
    params = tmp_path / "w.npy"
    status, stdout, err = run_cli(
        capsys,
        "train",
        *TINY,
        "--model",
        "mlp",
        "--hidden",
        "8",
        "--activation",
        "none",
        "--dtype",
        "float32",
        "--epochs",
        "1",
        "--save-params",
        params,
    )
    assert status == 0, err
    assert "mlp 64-8-10 (none)" in stdout
    w = np.load(params)
    assert w.dtype == np.float32 and w.size == 64 * 8 + 8 + 8 * 10 + 10


def test_activation_none_is_the_identity():
    problem = ex.load_problem(ex.ProblemSpec(model="mlp", hidden=(4,), subset=10))
    module, _ = problem.build(0, "none")
    from mcnet import nn

    kinds = [type(m).__name__ for m in module]
    assert kinds == ["Linear", "Identity", "Linear"]
    # same parameters as the sigmoid network of the same seed: only the layer differs
    sigmoid, _ = problem.build(0, "sigmoid")
    np.testing.assert_array_equal(nn.parameters_to_vector(module), nn.parameters_to_vector(sigmoid))


def test_digits_for_lenet5_are_enlarged_to_28x28():
    problem = ex.load_problem(ex.ProblemSpec(model="lenet5", subset=5, test_subset=3))
    images, _ = problem.train
    assert images.shape == (5, 1, 28, 28) and problem.test[0].shape == (3, 1, 28, 28)
    from mcnet.datasets import digits

    raw, _ = digits()
    np.testing.assert_array_equal(images[:, :, 2:26:3, 2:26:3], raw[:5])
    assert not images[:, :, :2].any() and not images[:, :, 26:].any()
    # the fixed hold-out: the last 297 digits test, the first 1500 train
    assert problem.description["test_examples"] == 3
    np.testing.assert_array_equal(problem.test[0][:, :, 2:26:3, 2:26:3], raw[1500:1503])


BAD_FLAGS = [
    (["--epochs", "0"], "--epochs"),
    (["--epochs", "two"], "--epochs"),
    (["--batch-size", "0"], "--batch-size"),
    (["--lr", "-1", "--solver", "adam"], "--lr"),
    (["--lr", "nan", "--solver", "adam"], "--lr"),
    (["--eta", "2"], "--eta"),
    (["--eta", "0"], "--eta"),
    (["--subset", "0"], "--subset"),
    (["--subset", "100000"], "--subset"),
    (["--test-subset", "100000"], "--test-subset"),
    (["--holdout", "-1"], "--holdout"),
    (["--model", "resnet"], "--model"),
    (["--solver", "newton"], "--solver"),
    (["--dataset", "imagenet"], "--dataset"),
    (["--activation", "gelu"], "--activation"),
    (["--dtype", "float16"], "--dtype"),
    (["--device", "tpu"], "--device"),
    (["--seed", "-3"], "--seed"),
    (["--hidden", "8,0"], "--hidden"),
    (["--lr", "0.1"], "--lr"),  # newton-krylov has no learning rate
    (["--solver", "adam", "--eta", "0.1"], "--eta"),
    (["--resume"], "--resume"),
    (["--overwrite"], "--overwrite"),
    (["--overwrite", "--resume", "--checkpoint", "ck"], "--overwrite"),
    (["--option", "nonsense=1"], "--option"),
    (["--option", "step=sideways"], "--option"),
    (["--batch-size", "5000"], "--batch-size"),
    (["--model", "vgg11"], "--model"),
    (["--model", "logistic_regression", "--activation", "relu"], "--activation"),
    (["--dataset", "libsvm"], "--train-file"),
    (["--train-split", "test"], "--train-split"),
    (["--epochs"], "--epochs"),
    (["--frobnicate"], "--frobnicate"),
    (["--workers", "2"], "--workers"),
    (["--scheduler", "local", "--workers", "0"], "--workers"),
]


@pytest.mark.parametrize(("argv", "flag"), BAD_FLAGS, ids=[" ".join(a) for a, _ in BAD_FLAGS])
def test_bad_flag_is_one_line_naming_it_with_status_2(argv, flag, capsys):
    status, out, err = run_cli(capsys, "train", *argv)
    assert status == 2
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith(f"mcnet train: error: {flag}"), err
    assert out == ""


def test_bad_choices_list_the_accepted_values(capsys):
    _, _, err = run_cli(capsys, "train", "--model", "resnet")
    assert "expected one of lenet5, autoencoder, vgg11, mlp, logistic_regression, linear_svm" in err
    _, _, err = run_cli(capsys, "train", "--solver", "newton")
    assert all(name in err for name in SOLVERS)
    _, _, err = run_cli(capsys, "compare", "--solvers", "adam,bogus")
    assert err.startswith("mcnet compare: error: --solvers: 'bogus'") and "adam" in err


def test_other_commands_report_bad_flags_the_same_way(capsys):
    for argv, prefix in [
        (["compare", "--lrs", "0.1,-1"], "mcnet compare: error: --lrs"),
        (["compare", "--solvers", "adam,adam"], "mcnet compare: error: --solvers"),
        (["ablate", "--study", "depth"], "mcnet ablate: error: --study"),
        (["ablate", "--etas", "0.1,1.5"], "mcnet ablate: error: --etas"),
        (
            ["ablate", "--study", "activation", "--model", "linear_svm"],
            "mcnet ablate: error: --study",
        ),
        (["curvature", "--top-k", "0"], "mcnet curvature: error: --top-k"),
        (["curvature", "--params", "/nonexistent.npy"], "mcnet curvature: error: --params"),
        (["nonsense"], "mcnet: error: 'nonsense' is not a command"),
    ]:
        status, _, err = run_cli(capsys, *argv)
        assert status == 2 and err.startswith(prefix) and err.count("\n") == 1, (argv, err)


def test_missing_dataset_says_where_and_how(tmp_path, capsys):
    status, _, err = run_cli(capsys, "train", "--dataset", "mnist", "--data-dir", tmp_path)
    assert status == 1 and err.count("\n") == 1
    assert err.startswith("mcnet train: error: --dataset mnist")
    assert "train-images-idx3-ubyte.gz" in err and str(tmp_path / "mnist") in err
    assert "mcnet.datasets.download('mnist'" in err and "mcnet download mnist" in err


def test_mnist_test_split_with_holdout_trains_and_tests_on_disjoint_parts(tmp_path):
    # a stand-in t10k pair: the real files are not part of the test suite
    import gzip

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (30, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 30, dtype=np.uint8)
    folder = tmp_path / "mnist"
    folder.mkdir()
    header = (0x803).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in (30, 28, 28))
    with gzip.open(folder / "t10k-images-idx3-ubyte.gz", "wb") as f:
        f.write(header + pixels.tobytes())
    with gzip.open(folder / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write((0x801).to_bytes(4, "big") + (30).to_bytes(4, "big") + labels.tobytes())
    spec = ex.ProblemSpec(
        model="lenet5",
        dataset="mnist",
        data_dir=str(tmp_path),
        train_split="test",
        holdout=10,
        subset=15,
    )
    problem = ex.load_problem(spec)
    assert problem.train[0].shape == (15, 1, 28, 28) and problem.test[0].shape == (10, 1, 28, 28)
    np.testing.assert_array_equal(problem.test[1], labels[20:])
    assert "held out" in problem.description["test"]


@pytest.mark.slow
def test_libsvm_files_train_and_test(tmp_path, capsys):
    from sklearn.datasets import dump_svmlight_file

    from mcnet.datasets import digits

    images, labels = digits()
    features = images.reshape(len(images), -1)
    dump_svmlight_file(
        features[:200], labels[:200] + 1, str(tmp_path / "train.txt"), zero_based=False
    )  # labels 1..10, as many LIBSVM files write them
    dump_svmlight_file(
        features[200:260], labels[200:260] + 1, str(tmp_path / "test.txt"), zero_based=False
    )
    out = tmp_path / "run.json"
    status, _, err = run_cli(
        capsys,
        "train",
        "--dataset",
        "libsvm",
        "--model",
        "linear_svm",
        "--train-file",
        tmp_path / "train.txt",
        "--test-file",
        tmp_path / "test.txt",
        "--batch-size",
        "50",
        "--epochs",
        "1",
        "--out",
        out,
    )
    assert status == 0, err
    record = json.loads(out.read_text())
    assert record["problem"]["test_examples"] == 60 and record["problem"]["classes"] == 10
    assert record["train_loss"][1] < record["train_loss"][0]
    status, _, err = run_cli(
        capsys, "train", "--dataset", "libsvm", "--train-file", tmp_path / "nothing.txt"
    )
    assert status == 2 and err.startswith("mcnet train: error: --train-file:")


def test_cuda_without_cupy_is_a_clear_error(capsys):
    try:
        import cupy  # noqa: F401

        pytest.skip("CuPy is installed")
    except ImportError:
        pass
    status, _, err = run_cli(capsys, "train", "--device", "cuda")
    assert status == 2 and err.startswith("mcnet train: error: --device: cuda needs CuPy")
    assert "pip install" in err


def test_help_exits_0(capsys):
    assert cli.main(["train", "--help"]) == 0
    assert "--checkpoint" in capsys.readouterr().out


# --- compare, ablate, curvature --------------------------------------------------------------
def test_compare_defaults_are_the_readme_demo():
    args = cli.build_parser().parse_args(["compare"])
    assert args.solvers == ["newton-krylov", "adam"] and args.dataset == "digits"
    assert args.lrs == [1e-1, 1e-2, 1e-3, 1e-4] and args.model == "mlp"


@pytest.mark.slow
def test_compare_writes_runs_summary_and_figures(tmp_path, capsys):
    out = tmp_path / "cmp"
    status, stdout, err = run_cli(
        capsys,
        "compare",
        *TINY,
        "--epochs",
        "1",
        "--lrs",
        "0.1,0.01",
        "--solvers",
        "newton-krylov,adam",
        "--out-dir",
        out,
        *PLOTS,
        "--evaluate-every",
        "2",
    )
    assert status == 0, err
    records = {ex.label(r): r for r in ex.read_runs(out / ex.RUNS_FILE)}
    assert sorted(records) == ["adam lr=0.01", "adam lr=0.1", "newton-krylov"]
    record = records["adam lr=0.1"]
    steps = len(record["iterations"])
    assert [p["iteration"] for p in record["interim_loss"]] == list(range(2, steps, 2))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["reference"]["solver"] == "adam"
    rows = {row["solver"]: row for row in summary["solvers"]}
    assert rows["adam"]["ratio_equal_epochs"] == 1.0 and rows["adam"]["ratio_equal_time"] == 1.0
    nk = rows["newton-krylov"]
    assert nk["ratio_equal_epochs"] > 0 and nk["ratio_equal_time"] > 0
    assert set(rows["adam"]["grid"]) == {"lr=0.1", "lr=0.01"}
    assert rows["newton-krylov"]["grid"] is None
    assert "| newton-krylov |" in (out / "summary.md").read_text()
    if not PLOTS:
        for name in ("loss_vs_epoch.png", "loss_vs_time.png"):
            assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "newton-krylov / adam" in stdout and "at equal wall time" in stdout
    # the records file is the same bytes whenever the same records are written
    runs_file = (out / ex.RUNS_FILE).read_bytes()
    again = ex.write_runs(ex.read_compare(out), tmp_path / "again.json.gz")
    assert again.read_bytes() == runs_file
    # --redraw rebuilds the same summary from the run records alone
    status, redrawn, err = run_cli(capsys, "compare", "--redraw", "--out-dir", out, *PLOTS)
    assert status == 0, err
    assert json.loads((out / "summary.json").read_text())["solvers"] == summary["solvers"]
    assert redrawn.splitlines()[1:-1] == stdout.splitlines()[1:-1]
    assert ex.RUNS_FILE not in redrawn.splitlines()[-1]  # the records are left as they are
    assert (out / ex.RUNS_FILE).read_bytes() == runs_file


def test_compare_over_batch_sizes_keeps_each_solvers_best(tmp_path, capsys):
    out = tmp_path / "cmp"
    status, stdout, err = run_cli(
        capsys,
        "compare",
        *TINY,
        "--epochs",
        "1",
        "--lrs",
        "0.1",
        "--solvers",
        "adam,newton-cg",
        "--batch-sizes",
        "64,full",
        "--out-dir",
        out,
        "--no-plots",
    )
    assert status == 0, err
    # newton-cg is a full-batch method: one run, not one per batch size
    runs = sorted(ex.label(r) for r in ex.read_compare(out))
    assert runs == ["adam lr=0.1 b=64", "adam lr=0.1 b=full", "newton-cg b=full"]
    rows = {row["solver"]: row for row in json.loads((out / "summary.json").read_text())["solvers"]}
    assert set(rows["adam"]["grid"]) == {"lr=0.1 b=64", "lr=0.1 b=full"}
    assert rows["adam"]["batch_size"] == 64  # 5 steps beat 1 step of the same lr
    # a second comparison into the folder adds its runs, replacing those of the same label
    status, _, err = run_cli(
        capsys,
        "compare",
        *TINY,
        "--epochs",
        "1",
        "--lrs",
        "0.1",
        "--solvers",
        "adam,sgd",
        "--batch-sizes",
        "64,full",
        "--out-dir",
        out,
        "--no-plots",
    )
    assert status == 0, err
    runs = sorted(ex.label(r) for r in ex.read_compare(out))
    assert runs == [
        "adam lr=0.1 b=64",
        "adam lr=0.1 b=full",
        "newton-cg b=full",
        "sgd lr=0.1 b=64",
        "sgd lr=0.1 b=full",
    ]
    status, _, err = run_cli(capsys, "compare", *TINY, "--batch-sizes", "300,full")
    assert status == 2 and err.startswith("mcnet compare: error: --batch-sizes")


def test_equal_time_ratio_takes_each_loss_as_measured_by_the_shorter_run():
    def record(solver, losses, times, lr=None):
        return {
            "solver": solver,
            "lr": lr,
            "epochs": len(losses) - 1,
            "train_loss": losses,
            "epoch_time": times,
            "test_loss": [],
            "test_accuracy": [],
            "wall_time": 1.0,
            "failed": None,
            "problem": None,
            "batch_size": 128,
        }

    slow = record("newton-krylov", [2.0, 0.5, 0.1], [0.0, 4.0, 8.0])
    fast = record("adam", [2.0, 1.0, 0.8], [0.0, 1.0, 2.0], lr=0.01)
    worse = record("adam", [2.0, 1.5, 1.2], [0.0, 1.0, 2.0], lr=0.1)
    summary = ex.summarize([slow, fast, worse])
    assert summary["reference"] == {"solver": "adam", "lr": 0.01, "batch_size": 128}
    nk = next(r for r in summary["solvers"] if r["solver"] == "newton-krylov")
    assert nk["ratio_equal_epochs"] == pytest.approx(0.1 / 0.8)
    # T = 2 s, the adam run's total: NK's first epoch ends at 4 s, so by T it has measured
    # only its initial 2.0 (a line to its first epoch end would credit it with 1.25)
    assert nk["equal_time"] == 2.0
    assert nk["loss_at_equal_time"] == 2.0
    assert nk["ratio_equal_time"] == pytest.approx(2.0 / 0.8)
    # it first measures 0.8 or less (0.5) at its first epoch end, 4 s
    assert nk["time_to_reference_loss"] == 4.0
    assert ex.loss_at_time(slow, 4.0) == 0.5 and ex.loss_at_time(slow, 100.0) == 0.1
    # measured inside its first epoch too (evaluate_every): 0.7 at 1.5 s counts by T = 2 s
    slow["interim_loss"] = [
        {"iteration": 3, "time": 1.5, "train_loss": 0.7},
        {"iteration": 9, "time": 6.0, "train_loss": None},
    ]
    assert ex.loss_at_time(slow, 1.4) == 2.0 and ex.loss_at_time(slow, 2.0) == 0.7
    assert ex.loss_at_time(slow, 5.0) == 0.5 and ex.loss_at_time(slow, 7.0) == math.inf
    assert ex.time_to_loss(slow, 0.8) == 1.5 and ex.time_to_loss(slow, 0.3) == 8.0


def test_variant_options_are_where_a_variant_differs_from_its_base():
    # newton-krylov-gn's definition: Algorithm 1 on G + 1e-3 I at eta 0.2, with newton-krylov's
    # limit on the turn of scale-invariant channels, their fit to the exact curvature, its
    # Krylov limit on batch-norm batches and its epoch rollback
    assert variant_options("newton-krylov-gn", base="newton-krylov-hessian") == {
        "curvature": "gauss-newton",
        "damping": 1e-3,
        "eta": 0.2,
        "scale_invariant_limit": 0.25,
        "scale_invariant_curvature": True,
        "scale_invariant_max_krylov": 5,
        "epoch_rollback": 0.5,
        "epoch_backtracks": 3,
    }
    assert variant_options("newton-krylov-gn") == {"damping": 1e-3, "eta": 0.2}
    fast = variant_options("newton-krylov-fast")
    assert make("newton-krylov", **fast).config() == make("newton-krylov-fast").config()
    assert variant_options("newton-krylov") == {}
    rows = dict(ex.krylov_settings())
    assert rows["Algorithm 1 on H_j (newton-krylov-hessian)"] == {}
    assert rows["Gauss-Newton, eta 0.2 (newton-krylov-gn)"] == variant_options(
        "newton-krylov-gn", base="newton-krylov-hessian"
    )
    assert (
        make(
            "newton-krylov-hessian", **rows["Gauss-Newton, lambda 1e-2, eta 0.5 (newton-krylov)"]
        ).config()
        == make("newton-krylov").config()
    )


@pytest.mark.slow
def test_ablate_writes_every_study(tmp_path, capsys):
    out = tmp_path / "abl"
    status, stdout, err = run_cli(
        capsys,
        "ablate",
        *TINY,
        "--model",
        "mlp",
        "--hidden",
        "8",
        "--epochs",
        "2",
        "--etas",
        "0.05,0.5",
        "--batch-sizes",
        "64,150",
        "--activations",
        "sigmoid,none",
        "--out-dir",
        out,
        *PLOTS,
    )
    assert status == 0, err
    records = {(r["study"], r["setting"]): r for r in ex.read_runs(out / ex.RUNS_FILE)}
    for study in ex.STUDIES:
        table = (out / f"{study}.md").read_text()
        assert table.count("\n|") >= 3, table
        assert any(key[0] == study for key in records)
        if not PLOTS:
            assert (out / f"{study}.png").read_bytes()[:4] == b"\x89PNG"
    step = (out / "step.md").read_text()
    assert "armijo backtracking" in step and "adjustments/iter, epoch 2" in step
    assert "# Newton-Krylov ablations" in (out / "ablation.md").read_text()
    assert records["step", "armijo backtracking"]["config"]["step"] == "armijo"
    krylov = (out / "krylov.md").read_text()
    assert krylov.count("\n|") == len(ex.krylov_settings()) + 2, krylov  # header, rule, rows
    assert (
        records["krylov", "truncated Newton (forcing term)"]["config"]["krylov_stop"] == "forcing"
    )
    # the default configuration is one run, reused by every study (same timings)
    default = [
        records[key]["wall_time"]
        for key in [("eta", "eta=0.05"), ("step", "taylor ratio"), ("activation", "sigmoid")]
    ]
    assert default[0] == default[1] == default[2]


@pytest.mark.slow
def test_curvature_prints_eigenvalues_at_initial_and_saved_parameters(tmp_path, capsys):
    flags = [
        "--model",
        "logistic_regression",
        "--subset",
        "200",
        "--batch-size",
        "64",
        "--top-k",
        "2",
        "--probes",
        "10",
        "--lanczos-steps",
        "20",
        *PLOTS,
    ]
    status, stdout, err = run_cli(capsys, "curvature", *flags, "--out-dir", tmp_path / "a")
    assert status == 0, err
    assert "eigenvalue" in stdout and "trace" in stdout
    result = json.loads((tmp_path / "a" / "curvature.json").read_text())
    values = result["eigenvalues"]
    assert len(values) == 2 and values[0] >= values[1] > 0  # convex: cross-entropy of a linear map
    assert result["trace"] > 0 and result["trace_stderr"] > 0
    if not PLOTS:
        assert (tmp_path / "a" / "spectral_density.png").is_file()

    # after training, from the checkpoint: a different point, so different eigenvalues
    checkpoint = tmp_path / "ck"
    assert run_cli(capsys, "train", *TINY, "--epochs", "1", "--checkpoint", checkpoint)[0] == 0
    status, stdout, err = run_cli(
        capsys, "curvature", *flags, "--checkpoint", checkpoint, "--out-dir", tmp_path / "b"
    )
    assert status == 0, err
    trained = json.loads((tmp_path / "b" / "curvature.json").read_text())
    assert trained["parameters_at"] == f"--checkpoint {checkpoint}"
    assert trained["eigenvalues"][0] != pytest.approx(values[0])


# --- the installed console script ---------------------------------------------------------------
def _console_script() -> str | None:
    beside = Path(sys.executable).with_name("mcnet")
    return str(beside) if beside.is_file() else shutil.which("mcnet")


@pytest.mark.slow
def test_console_script_trains_and_reports_bad_flags(tmp_path):
    script = _console_script()
    if script is None:
        pytest.skip("the mcnet console script is not installed (pip install -e .)")
    out = tmp_path / "run.json"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(
        [script, "train", *TINY, "--epochs", "1", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    record = json.loads(out.read_text())
    assert record["command"][0] == script and record["command"][1] == "train"
    assert len(record["train_loss"]) == 2
    bad = subprocess.run(
        [script, "train", "--epochs", "0"], capture_output=True, text=True, env=env, timeout=120
    )
    assert bad.returncode == 2
    assert bad.stderr == "mcnet train: error: --epochs: 0 is too small (expected an integer >= 1)\n"
