"""Training: `fit` runs any solver of `mcnet.solvers` over minibatches.

`Oracle` evaluates the objective for the solvers (on one process, or as a map-reduce over a
Dask cluster: `mcnet.training.distributed.DaskOracle`), `History` records a run, and
`mcnet.training.checkpoint` saves and resumes one. The solvers never import this package.
"""

from __future__ import annotations

from mcnet.errors import TrainingError
from mcnet.training.fit import evaluate, fit
from mcnet.training.history import History
from mcnet.training.oracle import Oracle

__all__ = ["History", "Oracle", "TrainingError", "evaluate", "fit"]
