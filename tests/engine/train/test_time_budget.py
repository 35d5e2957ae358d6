"""A time budget (max_time): the run stops at a checkpoint when the next step would overrun it,
and says so (issue 25 item 4)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from engine.events import CheckpointSaved, StepLogged, TrainFinished
from engine.train.loop import _out_of_time
from tests.engine.train.tiny import run_tiny, tiny_config


def test_the_step_that_would_leave_no_room_for_the_next_is_the_last():
    assert not _out_of_time(None, 10_000, 5)                 # no budget
    assert not _out_of_time(60, 50, 0)                       # no pace known before the first step
    assert not _out_of_time(60, 30, 3)                       # 10 s a step: 30 + 20 fits in 60
    assert _out_of_time(60, 45, 3)                           # 15 s a step: 45 + 30 does not


@pytest.mark.slow
def test_a_spent_budget_stops_the_run_with_a_checkpoint_and_says_so(tmp_path, model_folder):
    def slow(event, stop):
        if isinstance(event, StepLogged):
            time.sleep(0.3)

    config = tiny_config(tmp_path, max_steps=20, save_interval=100, max_time="1s")
    result, events = run_tiny(config, model_folder, on_step=slow)

    assert result.status == "stopped", result.reason
    spent = re.fullmatch(r"the 1s time budget was spent at step (\d+)", result.reason)
    assert spent, result.reason
    last = int(spent.group(1))
    assert 1 <= last < 20 and result.steps == last
    assert (last, "stop") in [(e.step, e.reason) for e in events if isinstance(e, CheckpointSaved)]
    finished = events[-1]
    assert isinstance(finished, TrainFinished) and finished.stopped and finished.reason == result.reason
    record = json.loads((Path(result.run_dir) / "run.json").read_text())
    assert record["status"] == "stopped" and record["reason"] == result.reason and record["step"] == last


@pytest.mark.slow
def test_a_budget_the_run_fits_in_changes_nothing(tmp_path, model_folder):
    result, _ = run_tiny(tiny_config(tmp_path, max_steps=3, max_time="1h"), model_folder)
    assert result.status == "finished" and result.steps == 3
