"""`ftui demo` as a user runs it, end to end on the embedded model: the run learns the Docker task
on prompts it never saw and keeps what the base model knew (issue 10's promise, measured)."""

from __future__ import annotations

import json

import pytest

from cli.main import main
from engine.eval.retention import RetentionThresholds

pytestmark = pytest.mark.e2e


def test_the_demo_learns_the_task_without_forgetting_the_rest(tmp_path, capsys):
    assert main(["demo", "--output-dir", str(tmp_path / "runs")]) == 0
    printed = capsys.readouterr().out
    run = next((tmp_path / "runs").iterdir())
    report = json.loads((run / "eval.json").read_text())
    retention = report["retention"]
    limits = RetentionThresholds()

    assert report["tuned_score"] >= report["base_score"] + 0.3, "the Docker task was not learned"
    assert retention["exact"]["base_right"] >= 40
    assert retention["exact"]["share"] >= limits.min_exact_retention
    assert retention["tuned_collapse"] - retention["base_collapse"] <= limits.max_collapse
    assert retention["nll_increase"] <= limits.max_nll_increase
    assert retention["findings"] == []
    assert "Retention (" in printed and "No forgetting or collapse found." in printed
