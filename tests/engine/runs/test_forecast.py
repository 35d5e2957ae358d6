"""The form's forecast counts the tokens a run will read as the run itself does: checked against
the planned tokens a real tiny run announces as it starts, and its time against that run's speed."""

from __future__ import annotations

import pytest

from engine.events import TrainStarted
from engine.runs.forecast import example_lengths, forecast, planned_tokens
from tests.engine.train.test_train_api import api_config, collect


@pytest.mark.slow
@pytest.mark.parametrize("changes", [{"epochs": 2.0, "val_split": 0.1}, {"max_steps": 5, "val_split": 0.0},
                                     {"epochs": 1.0, "val_split": 0.2, "batch_size": 3}])
def test_planned_tokens_match_what_the_run_plans(tmp_path, model_folder, changes):
    config = api_config(tmp_path, model_folder, max_steps=0, **changes) if "max_steps" not in changes \
        else api_config(tmp_path, model_folder, **changes)
    lengths = example_lengths(config)
    assert lengths is not None and len(lengths) == 40
    result, events = collect(config)
    assert result.status == "finished", result.reason
    [started] = [e for e in events if isinstance(e, TrainStarted)]
    # The form counts the mean example; the run, the examples its split and batches take.
    assert planned_tokens(config, lengths) == pytest.approx(started.planned_tokens, rel=0.1)

    again = forecast(config, lengths, "cpu")
    assert again.seconds is not None and f"measured by {result.run_dir.rsplit('/', 1)[-1]}" in again.time


def test_a_dataset_that_cannot_be_read_or_a_model_not_here_gives_no_lengths(tmp_path, model_folder):
    assert example_lengths(api_config(tmp_path, model_folder, dataset=str(tmp_path / "missing.jsonl"))) is None
    assert example_lengths(api_config(tmp_path, model_folder, model="someone/not-downloaded")) is None


def test_only_sft_counts_the_replayed_conversations(tmp_path, model_folder):
    """dpo and orpo train no replay (engine/train/replay.py `replays`): their forecast leaves it out."""
    lengths = [20] * 40
    plain, mixed = (api_config(tmp_path, model_folder, max_steps=0, retention_mix=mix) for mix in (0.0, 0.25))
    assert planned_tokens(mixed, lengths) > planned_tokens(plain, lengths)
    for objective in ("dpo", "orpo"):
        assert planned_tokens(mixed.replace(objective=objective), lengths) == planned_tokens(plain, lengths)
