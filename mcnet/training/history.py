"""`History`: what a training run did, per epoch and per iteration, as JSON."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any

from mcnet.errors import OutputError


@dataclasses.dataclass
class History:
    """The record of one `mcnet.fit` run.

    ``train_loss`` has ``epochs + 1`` entries: the full training loss before training and
    after each epoch; ``test_loss`` and ``test_accuracy`` follow it when test data is given
    (accuracy is None where the loss has no classes). ``epoch_time`` is the solver's
    cumulative wall time at each of those points (0 first; evaluation excluded).
    ``interim_loss`` holds the full training losses measured inside epochs when `mcnet.fit`
    is given ``evaluate_every``: one dict per measurement with iteration (the steps taken),
    time (the solver's cumulative wall time then, evaluation excluded) and train_loss.
    ``records`` has one dict per iteration: epoch, iteration, loss (the batch loss at the
    start of the step), time (seconds of the step), step_size, krylov_iterations,
    adjustments, skipped, rejected, reason and ``evaluations`` (counts by kind).
    """

    solver: str
    config: dict[str, Any]
    train_loss: list[float] = dataclasses.field(default_factory=list)
    test_loss: list[float] = dataclasses.field(default_factory=list)
    test_accuracy: list[float | None] = dataclasses.field(default_factory=list)
    epoch_time: list[float] = dataclasses.field(default_factory=list)
    interim_loss: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    records: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    seconds_by_kind: dict[str, float] = dataclasses.field(default_factory=dict)
    evaluations: dict[str, int] = dataclasses.field(default_factory=dict)
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def iterations(self) -> list[dict[str, Any]]:
        """The per-iteration records."""
        return self.records

    @property
    def time(self) -> list[float]:
        """Cumulative solver wall time at the end of each iteration."""
        total, out = 0.0, []
        for record in self.records:
            total += record["time"]
            out.append(total)
        return out

    @property
    def loss(self) -> list[float]:
        """The batch loss of each iteration."""
        return [record["loss"] for record in self.records]

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["iterations"] = data.pop("records")
        data["time"] = self.time
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> History:
        data = dict(data)
        data["records"] = data.pop("iterations")
        data.pop("time", None)
        return cls(**data)

    def to_json(self, path: str | os.PathLike | None = None, **extra: Any) -> str:
        """The history as JSON text (non-finite numbers as null); written atomically to
        ``path`` if given. ``extra`` keys (command line, versions, ...) are added on top."""
        text = json.dumps(json_safe({**self.to_dict(), **extra}), indent=1)
        if path is not None:
            write_atomic(Path(path), text.encode())
        return text


def json_safe(value: Any) -> Any:
    """JSON has no NaN or infinity: they become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def check_writable(path: Path) -> None:
    """Raise `OutputError` unless `write_atomic` can put a file at ``path``: nothing there
    or a regular file (never a directory, a symbolic link, a FIFO or a device, which the
    rename would replace), and a writable folder (made on writing if it does not exist)."""
    path = Path(path)
    if path.is_symlink():
        raise OutputError(
            f"{path} is a symbolic link; writing would replace the link, not "
            "write to its target (expected a regular file path: give the "
            "target's path, or remove the link)"
        )
    if path.is_dir():
        raise OutputError(f"{path} is a directory (expected a file path, e.g. {path / 'run.json'})")
    if path.exists() and not path.is_file():
        raise OutputError(
            f"{path} is not a regular file (a FIFO, device or socket) and is "
            "not replaced (expected a regular file path)"
        )
    folder = path.parent
    while not os.path.lexists(folder):
        folder = folder.parent
    if not folder.is_dir():
        raise OutputError(f"cannot write {path}: {folder} is not a directory")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {path}: the folder {folder} is not writable")


def write_atomic(path: Path, payload: bytes) -> None:
    """Write, fsync, rename: a reader sees the old file or the new one, never half of one.

    Refuses (`OutputError`) a path that `check_writable` refuses."""
    check_writable(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as file:
            file.write(payload)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
