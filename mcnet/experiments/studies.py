"""Studies: `compare` (several solvers on one problem, first-order ones over an lr grid)
and `ablate` (Newton-Krylov over the settings of one study). A study's settings are
options of the solvers in `mcnet.solvers`; a named variant's are read off its `config()`,
never typed again here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from mcnet.experiments.problems import Problem
from mcnet.experiments.reports import fmt
from mcnet.experiments.runs import (
    best_runs,
    final_loss,
    finite_or_none,
    is_first_order,
    label,
    last_or_none,
    losses_at_equal_time,
    on_lr_grid,
    run,
    setting,
    solver_options,
    time_to_loss,
)
from mcnet.solvers import SOLVERS, make

DEFAULT_LRS = (1e-1, 1e-2, 1e-3, 1e-4)

ETAS = (0.001, 0.01, 0.05, 0.1, 0.2, 0.5)

BATCH_SIZES = (32, 128, 512)

ABLATION_ACTIVATIONS = ("sigmoid", "relu", "sin", "none")

STUDIES = ("eta", "step", "batch", "activation", "krylov")

# The paper ablates Algorithm 1 on the Hessian; `newton-krylov`'s defaults are one of the
# "krylov" study's rows.
ABLATION_SOLVER = "newton-krylov-hessian"


def compare(
    problem: Problem,
    solvers: Sequence[str],
    lrs: Sequence[float],
    epochs: int,
    batch_sizes: Sequence[int],
    seed: int = 0,
    eta: float | None = None,
    progress: bool | None = None,
    log: Callable[[str], None] | None = None,
    extra: dict[str, Any] | None = None,
    evaluate_every: int | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every solver on ``problem`` at every batch size, the lr-grid ones once per lr;
    (records, summary). Several batch sizes are the paper's protocol for LR and SVM (full
    batch, 1024, 128; the best kept), applied to every solver alike. ``evaluate_every``:
    `mcnet.fit`'s, for every run."""
    records: list[dict[str, Any]] = []
    n = len(problem.train[0])
    for name in solvers:
        grid: Sequence[float | None] = lrs if on_lr_grid(name) else [None]
        sizes = [n] if SOLVERS[name].full_batch else batch_sizes  # one step per epoch anyway
        for size in sizes:
            for lr in grid:
                options = solver_options(name, lr=lr, eta=eta)
                record = run(
                    problem,
                    name,
                    options,
                    epochs,
                    size,
                    seed,
                    progress=progress,
                    evaluate_every=evaluate_every,
                    extra={
                        **(extra or {}),
                        "lr": options.get("lr"),
                        "run_index": len(records),
                        "batch_grid": len(batch_sizes) > 1,
                        "full_batch": size == n or SOLVERS[name].full_batch,
                    },
                )
                if log is not None:
                    log(
                        f"{label(record)}: final training loss {fmt(final_loss(record))} in "
                        f"{record['wall_time']:.1f} s" + (" (FAILED)" if record["failed"] else "")
                    )
                records.append(record)
    return records, summarize(records)


def summarize(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Final losses, best grid points and the ratios to the best first-order solver.

    Equal epochs: final training loss / the reference's final training loss (both ran the
    same epochs). Equal wall time: T = the shorter of the two runs' total solver times
    (``epoch_time[-1]``, evaluation excluded); each run's training loss as measured by T (at
    its last epoch end at or before T); the ratio of the two.
    A ratio below 1 means the solver is ahead.
    """
    best = best_runs(records)
    first_order = [r for n, r in best.items() if is_first_order(n)]
    reference = min(first_order, key=final_loss) if first_order else None
    if reference is not None and not math.isfinite(final_loss(reference)):
        reference = None
    rows = []
    for name, record in best.items():
        mine_all = [r for r in records if r["solver"] == name]
        grid = {setting(r): finite_or_none(final_loss(r)) for r in mine_all}
        row: dict[str, Any] = {
            "solver": name,
            "lr": record.get("lr") if on_lr_grid(name) else None,
            "batch_size": record["batch_size"],
            "full_batch": bool(record.get("full_batch")),
            "final_loss": finite_or_none(final_loss(record)),
            "final_test_loss": last_or_none(record.get("test_loss")),
            "final_test_accuracy": last_or_none(record.get("test_accuracy")),
            "solver_time": record["epoch_time"][-1] if record["epoch_time"] else None,
            "wall_time": record["wall_time"],
            "grid": grid if len(mine_all) > 1 else None,
            "failed": record["failed"],
        }
        if reference is not None and math.isfinite(final_loss(record)):
            ref_loss = final_loss(reference)
            t, mine, theirs = losses_at_equal_time(record, reference)
            row.update(
                {
                    "ratio_equal_epochs": final_loss(record) / ref_loss,
                    "equal_time": t,
                    "loss_at_equal_time": mine,
                    "reference_loss_at_equal_time": theirs,
                    "ratio_equal_time": mine / theirs,
                    "time_to_reference_loss": time_to_loss(record, ref_loss),
                    "reference_time": reference["epoch_time"][-1],
                }
            )
        rows.append(row)
    return {
        "reference": None
        if reference is None
        else {
            "solver": reference["solver"],
            "lr": reference.get("lr"),
            "batch_size": reference["batch_size"],
        },
        "epochs": records[0]["epochs"] if records else None,
        "problem": records[0]["problem"] if records else None,
        "definitions": {
            "best": "each solver's grid point (lr, batch size) with the lowest final training loss",
            "reference": "the first-order solver (lr grid) with the lowest final training loss",
            "ratio_equal_epochs": "final training loss / reference's final training loss",
            "ratio_equal_time": "training loss at T / reference's training loss at T, T = the "
            "shorter of the two total solver times (evaluation excluded), "
            "each loss as measured by T (the last epoch end at or before T)",
            "time_to_reference_loss": "solver time at which the training loss first reaches "
            "the reference's final training loss (at an epoch end); "
            "the reference needed reference_time",
        },
        "solvers": rows,
    }


def study_settings(
    study: str,
    etas: Sequence[float] = ETAS,
    batch_sizes: Sequence[int] = BATCH_SIZES,
    activations: Sequence[str] = ABLATION_ACTIVATIONS,
) -> list[tuple[str, dict[str, Any]]]:
    """(label, overrides) per setting: ``options`` for the solver, ``batch_size``,
    ``activation``; everything else is ``ABLATION_SOLVER``'s defaults."""
    if study == "eta":
        return [(f"eta={e:g}", {"options": {"eta": e}}) for e in etas]
    if study == "step":
        return [
            ("taylor ratio", {"options": {"step": "taylor"}}),
            ("armijo backtracking", {"options": {"step": "armijo"}}),
        ]
    if study == "batch":
        return [(f"batch={b}", {"batch_size": b}) for b in batch_sizes]
    if study == "activation":
        return [(a, {"activation": a}) for a in activations]
    if study == "krylov":  # Algorithm 1's decisions and the Krylov loop's stopping rules
        return [(label, {"options": options}) for label, options in krylov_settings()]
    raise ValueError(f"unknown study {study!r}; expected one of {', '.join(STUDIES)}")


def variant_options(variant: str, base: str = "newton-krylov") -> dict[str, Any]:
    """The options that make solver ``base`` the named variant ``variant``: the entries of
    the variant's `config()` that differ from the base's."""
    base_config = make(base).config()
    return {k: v for k, v in make(variant).config().items() if base_config.get(k) != v}


def krylov_settings() -> list[tuple[str, dict[str, Any]]]:
    """The "krylov" study, (label, options) per row: Algorithm 1 on the Hessian as this
    project reads it, each of its ambiguous lines read as printed instead, the warm starts,
    the Krylov loop's stopping rules, and the Gauss-Newton matrix of newton-krylov-gn and of
    newton-krylov's defaults (their options read off the solvers)."""
    gauss_newton = variant_options("newton-krylov-gn", base=ABLATION_SOLVER)
    return [
        ("Algorithm 1 on H_j (newton-krylov-hessian)", {}),
        ("alpha = ||r|| / kappa as printed", {"cg_alpha": "paper"}),
        ("post-screening (1 + cos) dw as printed", {"post_screening": "paper"}),
        ("flat curvature 0.01 ||p|| as printed", {"flat_curvature": "paper"}),
        ("warm start = direction", {"warm_start": "direction"}),
        ("no warm start", {"warm_start": "none"}),
        ("CG through negative curvature", {"early_stop": False}),
        ("truncated Newton (forcing term)", {"krylov_stop": "forcing"}),
        ("max_krylov 5", {"max_krylov": 5}),
        ("Gauss-Newton G + lambda I", {k: v for k, v in gauss_newton.items() if k != "eta"}),
        (f"Gauss-Newton, eta {gauss_newton['eta']:g} (newton-krylov-gn)", gauss_newton),
        (
            "newton-krylov-gn, curvature on a quarter of the batch",
            {**gauss_newton, "curvature_fraction": 0.25},
        ),
        (
            "Gauss-Newton, lambda 1e-2, eta 0.5 (newton-krylov)",
            variant_options("newton-krylov", base=ABLATION_SOLVER),
        ),
    ]


def ablate(
    problem: Problem,
    study: str,
    epochs: int,
    batch_size: int,
    seed: int = 0,
    eta: float | None = None,
    progress: bool | None = None,
    log: Callable[[str], None] | None = None,
    extra: dict[str, Any] | None = None,
    cache: dict[str, dict[str, Any]] | None = None,
    **settings: Any,
) -> list[tuple[str, dict[str, Any]]]:
    """Newton-Krylov over the settings of one study; [(label, record)].

    ``cache`` (a dict kept across studies) reuses a run whose options, batch size and
    activation were already run -- the defaults appear in every study -- instead of
    training the same thing again: runs are deterministic, only the timings would differ.
    """
    out = []
    for name, override in study_settings(study, **settings):
        options = solver_options(ABLATION_SOLVER, eta=eta)
        options.update(override.get("options", {}))
        size = override.get("batch_size", batch_size)
        activation = override.get("activation") or problem.spec.resolved_activation()
        # keyed by the solver's full configuration: {"eta": 0.05} and {"step": "taylor"}
        # are the same run
        key = repr((sorted(make(ABLATION_SOLVER, **options).config().items()), size, activation))
        tags = {"study": study, "setting": name}
        if cache is not None and key in cache:
            record = {**cache[key], **tags}
        else:
            record = run(
                problem,
                ABLATION_SOLVER,
                options,
                epochs,
                size,
                seed,
                activation=activation,
                progress=progress,
                extra={**(extra or {}), **tags},
            )
            if cache is not None:
                cache[key] = record
        if log is not None:
            log(
                f"{study}: {name}: final training loss {fmt(final_loss(record))} in "
                f"{record['wall_time']:.1f} s" + (" (FAILED)" if record["failed"] else "")
            )
        out.append((name, record))
    return out
