"""The wall time a run predicts before its first step, from the speed this machine measured on
an earlier finished run of the same model, method and device (issue 25 item 4)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from cli.commands.train import ProgressView
from engine.events import StepLogged, TrainStarted, to_record
from engine.runs.record import RunRecord, write_record
from engine.runs.speed import measured_speed, predict
from tests.engine.train.tiny import run_tiny, tiny_config


def started(device: str = "cpu fp32") -> TrainStarted:
    return TrainStarted("r", 4, 1.0, 10, 1, 100, 1000, device, 0.0)


def steps(*speeds: float) -> list[StepLogged]:
    return [StepLogged(i, 4, 0.1, 1.0, 1e-3, 1.0, s, float(i), 0.0, 0.1) for i, s in enumerate(speeds, 1)]


def a_run(runs: Path, name: str, created: str, status: str = "finished", model: str = "m", method: str = "lora",
          device: str = "cpu fp32", speeds: tuple[float, ...] = (50.0, 100.0, 110.0, 120.0)) -> Path:
    folder = runs / name
    folder.mkdir(parents=True)
    write_record(folder, RunRecord(name, model, model, model, method, created, created, status, 4, 4))
    lines = [to_record(e) for e in [started(device), *steps(*speeds)]]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return folder


def test_the_newest_finished_run_of_the_same_model_method_and_device_is_the_measure(tmp_path):
    runs = tmp_path / "runs"
    measure = a_run(runs, "measure", "2026-01-02T00:00")
    a_run(runs, "older", "2026-01-01T00:00", speeds=(9.0, 9.0))
    a_run(runs, "failed", "2026-01-03T00:00", status="failed", speeds=(999.0, 999.0))
    a_run(runs, "other-device", "2026-01-04T00:00", device="cuda bf16", speeds=(999.0, 999.0))
    a_run(runs, "other-method", "2026-01-05T00:00", method="dora", speeds=(999.0, 999.0))
    a_run(runs, "other-model", "2026-01-06T00:00", model="big", speeds=(999.0, 999.0))

    speed = measured_speed(runs, "m", "lora", "cpu fp32")
    assert speed is not None and speed.run_dir == str(measure)
    assert speed.tokens_per_s == 110.0  # the median after the first (warm-up) step

    prediction = predict(runs, "m", "lora", "cpu fp32", 33_000)
    assert prediction.seconds == pytest.approx(300.0)
    assert prediction.text.startswith("predicted time: about 5 min for 33,000 tokens at 110 tokens/s")
    assert f"measured by {measure}" in prediction.text


def test_without_an_earlier_run_it_says_there_is_none_to_measure_from(tmp_path):
    a_run(tmp_path / "runs", "other-device", "2026-01-04T00:00", device="cuda bf16")
    prediction = predict(tmp_path / "runs", "m", "lora", "cpu fp32", 33_000)
    assert prediction.seconds is None
    assert "no earlier run to measure from" in prediction.text and "m, lora on cpu fp32" in prediction.text


@pytest.mark.slow
def test_a_real_run_predicts_from_the_one_before_and_ftui_train_prints_it(tmp_path, model_folder):
    config = tiny_config(tmp_path, max_steps=3)
    first, events = run_tiny(config, model_folder)
    begun = next(e for e in events if isinstance(e, TrainStarted))
    assert begun.predicted_s is None and "no earlier run to measure from" in begun.prediction
    assert begun.planned_tokens > 0

    second, events = run_tiny(config, model_folder)
    begun = next(e for e in events if isinstance(e, TrainStarted))
    assert begun.predicted_s is not None and begun.predicted_s > 0
    assert f"measured by {first.run_dir}" in begun.prediction

    out = io.StringIO()
    ProgressView(out).show(begun)
    assert "\n  predicted time: about " in out.getvalue() and first.run_dir in out.getvalue()
