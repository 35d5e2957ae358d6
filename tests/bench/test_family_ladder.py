"""The README's memory ladder per family is bench/family_ladder.py's output, not typed figures."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_readme_ladder_is_the_estimators():
    spec = importlib.util.spec_from_file_location("family_ladder", ROOT / "bench" / "family_ladder.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    table = module.ladder_table()
    assert table in (ROOT / "README.md").read_text(encoding="utf-8")
    gemma = next(line for line in table.splitlines() if "| gemma-3-1b |" in line)
    assert "262,144" in gemma  # the vocabulary where the chunked loss saves most
    saved = {line.split("|")[2].strip(): float(line.split("|")[6].split("GiB")[0]) for line in table.splitlines()[2:]}
    assert max(saved, key=saved.get).startswith("gemma-3")
