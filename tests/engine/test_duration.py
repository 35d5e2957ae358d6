"""One duration format for both faces: the CLI's ETA and the TUI's ETA / "took" read the same."""

from __future__ import annotations

import io

import pytest

from cli.commands.train import ProgressView
from engine.display import duration
from engine.events import StepLogged


@pytest.mark.parametrize(("seconds", "shown"), [
    (0, "0m00s"), (59.9, "0m59s"), (425.9, "7m05s"), (3599.9, "59m59s"), (3600, "1h00m"), (3725, "1h02m"),
    (26 * 3600 + 5 * 60 + 59, "26h05m"), (-3, "0m00s"),
])
def test_minutes_and_seconds_under_an_hour_hours_and_minutes_from_one(seconds, shown):
    assert duration(seconds) == shown


def test_ftui_train_shows_the_eta_in_that_format():
    out = io.StringIO()  # not a terminal: one line per step
    ProgressView(out).show(StepLogged(step=3, total_steps=100, epoch=0.1, loss=1.5, lr=2e-4, grad_norm=1.0,
                                      tokens_per_s=900.0, elapsed_s=115.0, eta_s=3725.4, peak_mem_gib=1.2))
    assert "ETA 1h02m  mem 1.2 GiB" in out.getvalue()
