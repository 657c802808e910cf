"""Training checkpoints: one ``.npz`` file (no pickle), written atomically.

It holds the flat parameters ``w``, the solver state (``state/<name>``, arrays and
scalars), and ``meta``: JSON with the completed epoch count, the run's configuration (to
refuse resuming a different run) and the history so far. All of fit's randomness derives
from (seed, epoch, iteration), so nothing else is needed to continue bit for bit.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from mcnet.solvers.history import write_atomic

FILENAME = "checkpoint.npz"
FORMAT = 1


def save(directory: Path, w, state: dict[str, Any], meta: dict[str, Any]) -> Path:
    arrays = {"w": _host(w), "meta": np.array(json.dumps({"format": FORMAT, **meta}))}
    for name, value in state.items():
        arrays[f"state/{name}"] = _host(value) if hasattr(value, "shape") else np.array(value)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path = Path(directory) / FILENAME
    write_atomic(path, buffer.getvalue())
    return path


def load(directory: Path, xp) -> tuple[Any, dict[str, Any], dict[str, Any]] | None:
    """(w, state, meta) from the directory's checkpoint, or None if there is none."""
    path = Path(directory) / FILENAME
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as archive:
            meta = json.loads(str(archive["meta"]))
            w = xp.asarray(archive["w"])
            state = {}
            for key in archive.files:
                if key.startswith("state/"):
                    value = archive[key]
                    # scalars were saved as 0-d arrays; arrays go back to the device
                    state[key[6:]] = value.item() if value.ndim == 0 else xp.asarray(value)
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"checkpoint {path} is unreadable or corrupt: {exc}") from exc
    if meta.get("format") != FORMAT:
        raise ValueError(f"checkpoint {path} has format {meta.get('format')}, expected {FORMAT}")
    return w, state, meta


def _host(a) -> np.ndarray:
    return a.get() if hasattr(a, "get") and not isinstance(a, np.ndarray) else np.asarray(a)
