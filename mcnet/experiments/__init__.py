"""The experiments behind ``mcnet train / compare / ablate / curvature``, as functions.

- `mcnet.experiments.problems`: a model, a loss and the data it trains on (`ProblemSpec`,
  `load_problem`, `Problem.build`), and the data decisions;
- `mcnet.experiments.runs`: one training run as a JSON-ready record (`run`), what is read
  off records, and the compressed file that holds a study's records;
- `mcnet.experiments.studies`: `compare` and `ablate`, and the settings they run;
- `mcnet.experiments.reports`: their Markdown tables, terminal text and figures, built from
  the records alone, so that a report can be redrawn from the records file.
"""

from __future__ import annotations

from mcnet.experiments.problems import (
    ACTIVATIONS,
    DATASETS,
    DEVICES,
    DTYPES,
    MODELS,
    Problem,
    ProblemError,
    ProblemSpec,
    load_problem,
)
from mcnet.experiments.reports import (
    ablation_markdown,
    ablation_text,
    curve_table,
    fmt,
    problem_text,
    read_compare,
    require_matplotlib,
    save_figure,
    write_ablation,
    write_compare,
)
from mcnet.experiments.runs import (
    batch_text,
    best_runs,
    final_loss,
    is_first_order,
    json_safe,
    label,
    loss_at_time,
    losses_at_equal_time,
    measured_losses,
    run,
    setting,
    solver_options,
    takes_eta,
    takes_lr,
    time_to_loss,
    versions,
    write_record,
)
from mcnet.experiments.studies import (
    ABLATION_ACTIVATIONS,
    BATCH_SIZES,
    DEFAULT_LRS,
    ETAS,
    STUDIES,
    ablate,
    compare,
    krylov_settings,
    summarize,
)

__all__ = [
    "ABLATION_ACTIVATIONS",
    "ACTIVATIONS",
    "BATCH_SIZES",
    "DATASETS",
    "DEFAULT_LRS",
    "DEVICES",
    "DTYPES",
    "ETAS",
    "MODELS",
    "STUDIES",
    "Problem",
    "ProblemError",
    "ProblemSpec",
    "ablate",
    "ablation_markdown",
    "ablation_text",
    "batch_text",
    "best_runs",
    "compare",
    "curve_table",
    "final_loss",
    "fmt",
    "is_first_order",
    "json_safe",
    "krylov_settings",
    "label",
    "load_problem",
    "loss_at_time",
    "losses_at_equal_time",
    "measured_losses",
    "problem_text",
    "read_compare",
    "require_matplotlib",
    "run",
    "save_figure",
    "setting",
    "solver_options",
    "summarize",
    "takes_eta",
    "takes_lr",
    "time_to_loss",
    "versions",
    "write_ablation",
    "write_compare",
    "write_record",
]
