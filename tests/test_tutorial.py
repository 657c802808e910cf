"""docs/tutorial.md runs: its ```python blocks, in order, in one namespace."""

from __future__ import annotations

import re
from pathlib import Path

TUTORIAL = Path(__file__).resolve().parent.parent / "docs" / "tutorial.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)


def test_every_snippet_of_the_tutorial_runs_in_order():
    blocks = python_blocks(TUTORIAL.read_text())
    assert len(blocks) >= 6
    namespace: dict = {"__name__": "tutorial"}
    for number, block in enumerate(blocks, start=1):
        code = compile(block, f"{TUTORIAL.name}, python block {number}", "exec")
        exec(code, namespace)  # noqa: S102 - the tutorial's own code
