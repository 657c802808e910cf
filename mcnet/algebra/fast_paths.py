"""The one registry of fast paths.

Each primitive (``"exp"``, ``"mul"``, ``"sigmoid_backward"``, ...) has an ordered list of
``(applies, run)`` rules, in the manner of the rules of JAX's ``jet``: ``applies(*args)``
says whether the rule covers these operands, ``run(*args)`` computes the result, or returns
None to fall through to the next rule. `first` is the only place the rules are consulted;
when none gives a result, the caller runs the general algebra. A rule must give the same
numbers as the general algebra (to roundoff, and bit for bit where the tests ask): fast
paths change speed, never results.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Applies = Callable[..., bool]
Run = Callable[..., Any]

_RULES: dict[str, list[tuple[Applies, Run]]] = {}


def register(names: str | tuple[str, ...], applies: Applies, run: Run) -> None:
    """Append a rule to each primitive of ``names`` (consulted after the earlier ones)."""
    for name in (names,) if isinstance(names, str) else names:
        _RULES.setdefault(name, []).append((applies, run))


def first(name: str, *args: Any) -> Any:
    """The result of the first rule of ``name`` that applies to ``args`` and gives one, or
    None (then the general algebra runs)."""
    for applies, run in _RULES.get(name, ()):
        if applies(*args):
            out = run(*args)
            if out is not None:
                return out
    return None


def rules(name: str) -> list[tuple[Applies, Run]]:
    """The rules of ``name``, in the order they are consulted (for tests and inspection)."""
    return list(_RULES.get(name, ()))
