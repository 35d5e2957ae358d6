"""Engine functions stay short enough to read whole (issue 22).

A function over MAX_LINES (def to last line, docstring included) is split into parts whose names
say what each decides or computes. One that reads best top to bottom as a linear recipe may stay
long: it is named in RECIPES with the reason, and the entry goes when the function shrinks.
"""

from __future__ import annotations

import ast
from pathlib import Path

import engine

ENGINE = Path(engine.__file__).resolve().parent
MAX_LINES = 60
RECIPES: dict[str, str] = {}
"""`engine/<path>.py::<function>` -> why it stays one long function."""


def long_functions(engine_dir: Path) -> dict[str, str]:
    """`engine/<path>.py::<name>` -> `engine/<path>.py:<line> <name> (<n> lines)` for each function over MAX_LINES."""
    found = {}
    for path in sorted(engine_dir.rglob("*.py")):
        where = path.relative_to(engine_dir.parent).as_posix()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_LINES:
                    found[f"{where}::{node.name}"] = f"{where}:{node.lineno} {node.name} ({lines} lines)"
    return found


def test_no_engine_function_is_over_60_lines_unless_named_as_a_recipe():
    found = long_functions(ENGINE)
    too_long = [shown for key, shown in found.items() if key not in RECIPES]
    assert not too_long, (f"over {MAX_LINES} lines: split into named parts, or name it in RECIPES with why it "
                          "reads best as one recipe:\n  " + "\n  ".join(too_long))
    shrunk = [key for key in RECIPES if key not in found]
    assert not shrunk, f"no longer over {MAX_LINES} lines (or gone): take them out of RECIPES: {shrunk}"
