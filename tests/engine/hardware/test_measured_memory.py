"""The peak a finished run measured, fed back to the next recommendation on this machine (issue 25
item 1): a run that went above its estimate raises the estimates the plan is made with, and the
reason says by which run; one below it changes nothing; the other device's runs are not used."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.config.schema import RunConfig
from engine.events import StepLogged, TrainStarted, to_record
from engine.hardware.estimate import estimate_for
from engine.hardware.probe import GpuInfo, HardwareReport
from engine.hardware.recommend import recommend
from engine.runs.layout import write_config
from engine.runs.memory import measured_memory
from engine.runs.record import RunRecord, write_record

RTX = GpuInfo(0, "RTX", 12.0, 10.5, 1.5, (8, 9), True, ())


def a_run(runs: Path, name: str, created: str, config: RunConfig, device: str, over: float,
          status: str = "finished") -> Path:
    """A run folder as training leaves it, whose steps logged `over` times its config's estimate."""
    folder = runs / name
    folder.mkdir(parents=True)
    write_config(folder, config)
    write_record(folder, RunRecord(name, config.model, config.model, config.model, config.method, created, created,
                                   status, 3, 3))
    estimated = estimate_for(config)
    assert estimated is not None
    peaks = [estimated.tensors_gib * over * share for share in (0.9, 1.0, 0.95)]
    events = [TrainStarted(str(folder), 3, 1.0, 10, 1, 100, 1000, device, 0.0),
              *(StepLogged(i, 3, 0.1, 1.0, 1e-3, 1.0, 100.0, float(i), 0.0, peak) for i, peak in enumerate(peaks, 1))]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(to_record(e)) + "\n" for e in events))
    return folder


def gpu_config() -> RunConfig:
    return RunConfig(model="llama-3.2-1b", method="lora", batch_size=4, max_seq_len=2048)


def test_a_gpu_run_above_its_estimate_makes_the_next_plan_smaller_and_says_why(tmp_path):
    runs = tmp_path / "runs"
    measured_run = a_run(runs, "over", "2026-12-02T00:00", gpu_config(), "cuda bf16", over=1.3)
    a_run(runs, "older", "2026-12-01T00:00", gpu_config(), "cuda bf16", over=3.0)
    a_run(runs, "failed", "2026-12-03T00:00", gpu_config(), "cuda bf16", over=3.0, status="failed")
    a_run(runs, "on-the-cpu", "2026-12-04T00:00", RunConfig(), "cpu fp32", over=3.0)

    measured = measured_memory(runs, "cuda")
    assert measured is not None and measured.run_dir == str(measured_run)
    assert measured.ratio == pytest.approx(1.3, rel=1e-3)

    plain = recommend([RTX])
    checked = recommend([RTX], measured=measured)
    assert (plain.model, plain.batch_size) == ("llama-3.1-8b-4bit", 2)
    assert checked.model == "llama-3.2-3b-4bit", "8B no longer fits once its estimate is raised 1.3x"
    assert checked.measured_from == str(measured_run) and not plain.measured_from
    assert "Planned with this machine's measurement" in checked.reason and "raised 1.30x" in checked.reason


def test_a_run_below_its_estimate_leaves_the_plan_as_it_was_and_says_the_estimate_holds(tmp_path):
    a_run(tmp_path / "runs", "under", "2026-12-02T00:00", gpu_config(), "cuda bf16", over=0.6)
    measured = measured_memory(tmp_path / "runs", "cuda")
    assert measured is not None and measured.ratio == 1.0
    checked = recommend([RTX], measured=measured)
    assert (checked.model, checked.batch_size, checked.peak_gib) == (recommend([RTX]).model, 2, recommend([RTX]).peak_gib)
    assert "the estimate holds on this machine" in checked.reason


def test_on_the_cpu_the_demo_plan_uses_the_cpu_run_and_ignores_a_gpu_one(tmp_path):
    from engine.config.presets import load_preset

    runs = tmp_path / "runs"
    demo = load_preset("demo").apply()
    a_run(runs, "gpu", "2026-12-05T00:00", gpu_config(), "cuda bf16", over=3.0)
    assert measured_memory(runs, "cpu") is None
    cpu = HardwareReport((), 2, 24.0, None, "no GPU")
    plain = recommend(cpu)
    a_run(runs, "demo", "2026-12-01T00:00", demo, "cpu bfloat16 autocast", over=1.5)
    checked = recommend(cpu, measured=measured_memory(runs, "cpu"))
    assert checked.peak_gib == pytest.approx(plain.peak_gib * 1.5, abs=0.01)
    assert "measured" in checked.reason and "demo (smollm2-135m, lora)" in checked.reason
    assert recommend(cpu, measured=measured_memory(runs, "cuda")).peak_gib == plain.peak_gib


def test_the_home_screens_recommendation_is_checked_against_the_forms_output_folder(tmp_path):
    from engine.config.presets import load_preset
    from tui.backend import Backend

    runs = tmp_path / "runs"
    a_run(runs, "demo", "2026-12-01T00:00", load_preset("demo").apply(), "cpu bfloat16 autocast", over=1.5)
    cpu = HardwareReport((), 2, 24.0, None, "no GPU")
    assert "raised 1.50x" in Backend().recommend(cpu, output_dir=str(runs)).reason
    assert "measured" not in Backend().recommend(cpu, output_dir=str(tmp_path / "elsewhere")).reason
