"""A damaged newest checkpoint never blocks resume: the newest one that loads is used, and the
skipped one is named with why. Damage as a crash or a full disk leaves it: a truncated
trainable.safetensors, an empty rng.pt, a state.json cut mid-object, an unreadable config.toml."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

from engine.events import Diagnosis, StepLogged, TrainFailed, TrainStarted
from tests.engine.train.tiny import run_tiny, tiny_config

pytestmark = pytest.mark.slow


def losses(events):
    return {e.step: e.loss for e in events if isinstance(e, StepLogged)}


def config_for(tmp_path: Path):
    # Dropout on: the fallback must restore the older checkpoint's random state too.
    return tiny_config(tmp_path, lora_dropout=0.1, epochs=2.0, save_interval=2, eval_interval=5)


@pytest.fixture(scope="module")
def stopped(tmp_path_factory, model_folder):
    """A run stopped at step 4 (checkpoints step-2 and step-4) and the same run uninterrupted."""
    tmp = tmp_path_factory.mktemp("stopped")

    def stop_at_4(event, stop):
        if isinstance(event, StepLogged) and event.step == 4:
            stop.set()

    first, _ = run_tiny(config_for(tmp), model_folder, on_step=stop_at_4)
    _, whole = run_tiny(config_for(tmp).replace(output_dir=str(tmp / "whole")), model_folder)
    return Path(first.run_dir), losses(whole)


@pytest.fixture
def run_copy(stopped, tmp_path):
    run, _ = stopped
    copy = tmp_path / "runs" / run.name
    shutil.copytree(run, copy)
    return copy


def truncate(path: Path) -> None:
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size // 2)


DAMAGE = {
    "truncated trainable.safetensors": (lambda ck: truncate(ck / "trainable.safetensors"),
                                        "trainable.safetensors is cut short or damaged"),
    "empty rng.pt": (lambda ck: (ck / "rng.pt").write_bytes(b""), "rng.pt is empty"),
    "truncated optimizer.pt": (lambda ck: truncate(ck / "optimizer.pt"), "optimizer.pt is cut short or damaged"),
    "broken state.json": (lambda ck: (ck / "state.json").write_text('{"step": 4, "best_val'),
                          "state.json is not valid JSON"),
    "broken config.toml": (lambda ck: (ck / "config.toml").write_text("lora_r = [\n"), "config.toml does not read"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_resume_falls_back_to_the_newest_checkpoint_that_loads(run_copy, stopped, model_folder, damage):
    harm, words = DAMAGE[damage]
    harm(run_copy / "checkpoints" / "step-4")
    resumed, events = run_tiny(config_for(run_copy.parent.parent), model_folder, resume=str(run_copy))

    assert resumed.status == "finished", resumed.reason
    notice = next(e for e in events if isinstance(e, Diagnosis))
    assert notice.kind == "checkpoint" and notice.step == 2
    assert "skipped checkpoints/step-4" in notice.message and words in notice.message
    assert "resuming from step 2" in notice.message
    assert next(e for e in events if isinstance(e, TrainStarted)).start_step == 2
    _, whole = stopped
    after = losses(events)
    assert sorted(after) == list(range(3, 13))
    for step, loss in after.items():
        assert loss == pytest.approx(whole[step], abs=1e-4)


def test_the_train_api_reads_the_config_of_the_checkpoint_it_falls_back_to(run_copy, model_folder):
    from engine.train.load import saved_config

    (run_copy / "checkpoints" / "step-4" / "config.toml").write_text("lora_r = [\n")
    assert saved_config(run_copy).lora_r == 4


def test_when_no_checkpoint_loads_each_is_named_with_why(run_copy, model_folder):
    (run_copy / "checkpoints" / "step-4" / "rng.pt").write_bytes(b"")
    truncate(run_copy / "checkpoints" / "step-2" / "trainable.safetensors")
    resumed, events = run_tiny(config_for(run_copy.parent.parent), model_folder, resume=str(run_copy))

    assert resumed.status == "failed" and [type(e) for e in events] == [TrainFailed]
    assert f"no checkpoint in {run_copy} can be loaded" in resumed.reason
    assert "step-4: rng.pt is empty" in resumed.reason
    assert "step-2: trainable.safetensors is cut short or damaged" in resumed.reason
    assert "unexpected error" not in resumed.reason


def test_a_damaged_checkpoint_asked_for_by_name_is_refused_with_why(run_copy, model_folder):
    checkpoint = run_copy / "checkpoints" / "step-4"
    (checkpoint / "state.json").write_text("")
    resumed, _ = run_tiny(config_for(run_copy.parent.parent), model_folder, resume=str(checkpoint))

    assert resumed.status == "failed"
    assert f"{checkpoint} cannot be loaded: state.json is empty" in resumed.reason
    assert str(run_copy) in resumed.advice


def test_train_refuses_with_the_reasons_before_loading_anything(run_copy, model_folder):
    from engine.train import train

    for step in (2, 4):
        (run_copy / "checkpoints" / f"step-{step}" / "optimizer.pt").write_bytes(b"PK\x03\x04 cut")
    events: list = []
    result = train(tiny_config(run_copy), events.append, threading.Event(), resume=str(run_copy))
    assert result.status == "failed" and "optimizer.pt is cut short or damaged" in result.reason
    assert [type(e) for e in events] == [TrainFailed]
