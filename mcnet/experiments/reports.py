"""Reports: the Markdown tables, terminal text and matplotlib figures of comparisons and
ablations, and the folders they are written into. Everything here is built from run
records only, so a report can be redrawn from the records file alone.
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mcnet.experiments.runs import (
    RUNS_FILE,
    best_runs,
    final_loss,
    finite_or_none,
    label,
    last_or_none,
    measured_losses,
    read_runs,
    write_runs,
)
from mcnet.training.history import json_safe, write_atomic


def fmt(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}g}"


def problem_text(problem: dict[str, Any] | None, short: bool = False) -> str:
    if not problem:
        return "-"
    model = problem["model"]
    if model == "mlp":
        sizes = [
            int(np.prod(problem["input_shape"])),
            *problem.get("hidden", []),
            problem["classes"],
        ]
        model += " " + "-".join(map(str, sizes))
    if problem.get("activation"):
        model += f" ({problem['activation']})"
    text = f"{model} on {problem['dataset']}, {problem['train_examples']} training examples"
    return text if short else f"{text}, test: {problem['test']}"


def compare_markdown(summary: dict[str, Any]) -> str:
    """The summary as a Markdown table with its definitions."""
    ref = summary["reference"]
    ref_text = (
        "none"
        if ref is None
        else ref["solver"]
        + "".join(
            [f" lr={ref['lr']:g}" if ref["lr"] is not None else "", f" batch {ref['batch_size']}"]
        )
    )
    lines = [
        f"Problem: {problem_text(summary['problem'])}; {summary['epochs']} epochs.",
        f"Reference (best first-order solver by final training loss): {ref_text}.",
        "",
        "| solver | best lr | batch | final train loss | test acc | solver time (s) | "
        "ratio, equal epochs | ratio, equal time (T s) | time to reference's final loss (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in summary["solvers"]:
        equal_time = (
            "-"
            if "ratio_equal_time" not in row
            else (f"{row['ratio_equal_time']:.3g} ({row['equal_time']:.3g})")
        )
        lr = "-" if row["lr"] is None else f"{row['lr']:g}"
        batch = "full" if row["full_batch"] else str(row["batch_size"])
        lines.append(
            f"| {row['solver']} | {lr} | {batch} | "
            f"{fmt(row['final_loss'])} | {fmt(row['final_test_accuracy'])} | "
            f"{fmt(row['solver_time'], 3)} | {fmt(row.get('ratio_equal_epochs'), 3)} | "
            f"{equal_time} | {fmt(row.get('time_to_reference_loss'), 3)} |"
        )
    grids = [(row["solver"], row["grid"]) for row in summary["solvers"] if row["grid"]]
    if grids:
        lines += ["", "Final training loss at every grid point:", ""]
        for name, grid in grids:
            lines.append(
                f"- {name}: " + ", ".join(f"{point} {fmt(loss)}" for point, loss in grid.items())
            )
    lines += [
        "",
        "Ratios below 1: the solver's training loss is lower than the reference's. "
        "Equal time: " + summary["definitions"]["ratio_equal_time"] + ". Time to the "
        "reference's final loss: '-' where the solver never reached it. Solver time "
        "excludes the per-epoch evaluation; the load average of the machine during each "
        "run is in its JSON.",
    ]
    return "\n".join(lines) + "\n"


def curve_table(records: Sequence[dict[str, Any]]) -> str:
    """Training loss and cumulative solver time per epoch, one column pair per run."""
    names = [label(r) for r in records]
    width = max(21, *(len(n) + 2 for n in names))
    head = "epoch" + "".join(f"{n:>{width}}" for n in names)
    sub = "     " + "".join(f"{'loss':>{width - 9}}{'time s':>9}" for _ in names)
    lines = [head, sub]
    for epoch in range(max(len(r["train_loss"]) for r in records)):
        cells = []
        for r in records:
            if epoch < len(r["train_loss"]):
                loss = fmt(r["train_loss"][epoch])
                cells.append(f"{loss:>{width - 9}}{r['epoch_time'][epoch]:>9.2f}")
            else:
                cells.append(" " * width)
        lines.append(f"{epoch:>5}" + "".join(cells))
    return "\n".join(lines)


def require_matplotlib() -> None:
    """ImportError with the install command when the `plot` extra is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ImportError(
            "the figures need matplotlib: pip install 'mcnet[plot]' (or pass --no-plots)"
        ) from None


def save_figure(fig, path: str | os.PathLike) -> Path:
    """PNG via a buffer and `write_atomic`: the path never holds half an image."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    write_atomic(Path(path), buffer.getvalue())
    return Path(path)


def plot_curves(
    curves: Sequence[tuple[str, dict[str, Any]]],
    path: str | os.PathLike,
    x: str = "epoch",
    title: str = "",
) -> Path:
    """Training loss (log scale) against epoch or solver wall time, one line per run (against
    time, every measurement: the steps inside epochs too for runs with ``evaluate_every``)."""
    require_matplotlib()
    from matplotlib.figure import Figure  # no pyplot: the caller's backend is left alone

    fig = Figure(figsize=(6, 4.2))
    ax = fig.add_subplot()
    for name, record in curves:
        if x == "epoch":
            losses = np.array([np.nan if v is None else v for v in record["train_loss"]], float)
            xs = np.arange(len(losses))
        else:
            points = measured_losses(record)
            xs = np.array([time_ for time_, _ in points], float)
            losses = np.array([loss if math.isfinite(loss) else np.nan for _, loss in points])
        if losses.size:
            ax.plot(xs, losses, marker="o", markersize=2 if len(losses) > 40 else 3, label=name)
    ax.set_yscale("log")
    ax.set_xlabel("epoch" if x == "epoch" else "solver wall time (s)")
    ax.set_ylabel("training loss")
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def write_compare(
    records: Sequence[dict[str, Any]],
    summary: dict[str, Any],
    out_dir: Path,
    plots: bool = True,
    runs: bool = True,
) -> list[Path]:
    """The run records in one compressed file, `RUNS_FILE` (unless ``runs`` is False: a
    redraw leaves the records as they are), the summary (JSON and Markdown) and Fig. 3's two
    panels as PNGs. Records already in the file stay unless a new run has their label: a
    second comparison into the same folder adds its solvers, and a redraw shows them all."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    if runs:
        path = out_dir / RUNS_FILE
        new = {label(record) for record in records}
        kept = [r for r in read_runs(path) if label(r) not in new] if path.exists() else []
        written.append(write_runs([*kept, *records], path))
    path = out_dir / "summary.json"
    write_atomic(path, json.dumps(json_safe(summary), indent=1).encode())
    written.append(path)
    path = out_dir / "summary.md"
    write_atomic(path, compare_markdown(summary).encode())
    written.append(path)
    if plots:
        best = best_runs(records)
        curves = [(label(r), r) for r in best.values()]
        title = problem_text(summary["problem"], short=True)
        written.append(plot_curves(curves, out_dir / "loss_vs_epoch.png", "epoch", title))
        written.append(plot_curves(curves, out_dir / "loss_vs_time.png", "time", title))
    return written


def read_compare(out_dir: Path) -> list[dict[str, Any]]:
    """The run records of a `write_compare` folder, in the order they were run."""
    path = out_dir / RUNS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no run records in {out_dir} (expected {RUNS_FILE})")
    return sorted(read_runs(path), key=lambda r: r.get("run_index", 0))


def mean_adjustments(record: dict[str, Any], epoch: int) -> float | None:
    """Step-size trials beyond the first, per iteration that took a step, in ``epoch``
    (iterations skipped by the screening have no step to size and are not counted)."""
    values = [
        r["adjustments"]
        for r in record["iterations"]
        if r["epoch"] == epoch and not r["skipped"] and not r["rejected"]
    ]
    return float(np.mean(values)) if values else None


def ablation_row(name: str, record: dict[str, Any]) -> dict[str, Any]:
    """What one ablation table shows of a run."""
    epochs = record["epochs"]
    steps = [r for r in record["iterations"] if not r["skipped"]]
    return {
        "setting": name,
        "final_loss": finite_or_none(final_loss(record)),
        "final_test_accuracy": last_or_none(record.get("test_accuracy")),
        "solver_time": record["epoch_time"][-1] if record["epoch_time"] else None,
        "iterations": len(record["iterations"]),
        "skipped": len(record["iterations"]) - len(steps),
        "krylov_per_iteration": float(np.mean([r["krylov_iterations"] for r in steps]))
        if steps
        else None,
        "adjustments_epoch_1": mean_adjustments(record, 1),
        f"adjustments_epoch_{epochs}": mean_adjustments(record, epochs),
        "failed": record["failed"],
    }


STUDY_TITLES = {
    "eta": "Taylor-ratio threshold eta",
    "step": "Step rule: Taylor ratio vs Armijo backtracking",
    "batch": "Batch size",
    "activation": "Activation",
    "krylov": "Algorithm 1's decisions as printed, warm starts, Krylov stopping rules and the "
    "Gauss-Newton matrix",
}


def ablation_markdown(study: str, runs: Sequence[tuple[str, dict[str, Any]]]) -> str:
    """One study's table."""
    epochs = runs[0][1]["epochs"]
    lines = [
        f"### {STUDY_TITLES[study]}",
        "",
        f"Newton-Krylov (Algorithm 1 defaults otherwise), {epochs} epochs, "
        f"{problem_text(runs[0][1]['problem'])}.",
        "",
        f"| setting | final train loss | test acc | solver time (s) | iterations | "
        f"skipped | Krylov its/iter | adjustments/iter, epoch 1 | "
        f"adjustments/iter, epoch {epochs} |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, record in runs:
        row = ablation_row(name, record)
        lines.append(
            f"| {name} | {fmt(row['final_loss'])} | {fmt(row['final_test_accuracy'])} | "
            f"{fmt(row['solver_time'], 3)} | {row['iterations']} | {row['skipped']} | "
            f"{fmt(row['krylov_per_iteration'], 3)} | {fmt(row['adjustments_epoch_1'], 3)} | "
            f"{fmt(row[f'adjustments_epoch_{epochs}'], 3)} |"
        )
    lines += [
        "",
        "Adjustments: step-size trials beyond the first per iteration that took a "
        "step (Taylor: x0.5 / x1.5 changes of gamma; Armijo: backtracks).",
    ]
    return "\n".join(lines) + "\n"


def write_ablation(
    study: str, runs: Sequence[tuple[str, dict[str, Any]]], out_dir: Path, plots: bool = True
) -> list[Path]:
    """``<study>.md`` and ``<study>.png``; the records go into the ablation's one
    `RUNS_FILE` (`write_runs`)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{study}.md"
    write_atomic(path, ablation_markdown(study, runs).encode())
    written = [path]
    if plots:
        title = f"{STUDY_TITLES[study]}\n{problem_text(runs[0][1]['problem'], short=True)}"
        written.append(plot_curves(list(runs), out_dir / f"{study}.png", "epoch", title))
    return written


def ablation_text(study: str, runs: Sequence[tuple[str, dict[str, Any]]]) -> str:
    """A plain-text version of the table for the terminal."""
    epochs = runs[0][1]["epochs"]
    lines = [
        STUDY_TITLES[study],
        f"{'setting':<22}{'loss':>10}{'test acc':>10}{'time s':>9}{'adj ep1':>9}"
        f"{f'adj ep{epochs}':>10}",
    ]
    for name, record in runs:
        row = ablation_row(name, record)
        lines.append(
            f"{name:<22}{fmt(row['final_loss']):>10}"
            f"{fmt(row['final_test_accuracy'], 3):>10}"
            f"{fmt(row['solver_time'], 3):>9}{fmt(row['adjustments_epoch_1'], 3):>9}"
            f"{fmt(row[f'adjustments_epoch_{epochs}'], 3):>10}"
        )
    return "\n".join(lines)
