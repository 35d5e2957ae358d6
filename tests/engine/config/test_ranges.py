"""Settings' ranges are data that the check, the form's hints and the manual all read
(engine/config/ranges.py): a value out of range is refused with the range and what is typical,
the form shows the same, and docs/training.md's table is the table in the code."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from engine.config.ranges import RANGES
from engine.config.schema import RunConfig
from tui.screens.config_form import hint

ROOT = Path(__file__).resolve().parents[3]


def test_every_range_names_a_setting():
    names = {f.name for f in dataclasses.fields(RunConfig)}
    assert set(RANGES) <= names


@pytest.mark.parametrize("name", sorted(RANGES))
def test_a_value_just_outside_is_refused_and_the_default_is_inside(name):
    allowed = RANGES[name]
    default = getattr(RunConfig(), name)
    assert allowed.problem(default) == ""
    outside = allowed.low - 1
    message = next(p.message for p in RunConfig().replace(**{name: type(default)(outside)}).check()
                   if p.field == name)
    assert message == allowed.problem(type(default)(outside)) and message


def test_the_form_hint_and_the_manual_show_the_range():
    manual = (ROOT / "docs" / "training.md").read_text()
    for name, allowed in RANGES.items():
        assert f"| `{name}` | {allowed.hint()} |" in manual
        assert f"Range: {allowed.hint()}." in hint(name, {})
    assert RANGES["learning_rate"].hint() == "1e-6..1e-3; 2e-4 is typical for LoRA, 2e-5 for full fine-tuning"
    assert RANGES["val_split"].problem(0.5) and not RANGES["val_split"].problem(0.45)
