"""The GPU figures NVML gives each logged step reach metrics.jsonl (issue 25 item 5), on the fake NVML."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.hardware.sampler import GpuSampler
from tests.engine.hardware.conftest import FakeNvml
from tests.engine.hardware.test_sampler import UUID, cards
from tests.engine.train.tiny import run_tiny, tiny_config


@pytest.mark.slow
def test_each_logged_step_keeps_the_gpu_figures_in_metrics(tmp_path, model_folder, monkeypatch):
    nvml = FakeNvml(cards())
    monkeypatch.setattr("engine.train.loop.open_run_gpu", lambda device: GpuSampler.open(UUID, nvml))
    result, _ = run_tiny(tiny_config(tmp_path, max_steps=2), model_folder)
    assert result.status == "finished"
    lines = [json.loads(line) for line in (Path(result.run_dir) / "metrics.jsonl").read_text().splitlines()]
    steps = [line for line in lines if line["event"] == "StepLogged"]
    assert [(s["gpu_used_gib"], s["gpu_util"]) for s in steps] == [(9.5, 87), (9.5, 87)]
    assert nvml.shutdowns == 1


@pytest.mark.slow
def test_on_the_cpu_the_figures_are_none(tmp_path, model_folder):
    result, events = run_tiny(tiny_config(tmp_path, max_steps=1), model_folder)
    [step] = [e for e in events if type(e).__name__ == "StepLogged"]
    assert step.gpu_used_gib is None and step.gpu_util is None


def test_the_progress_line_shows_how_busy_the_gpu_is():
    import io

    from cli.commands.train import ProgressView
    from engine.events import StepLogged

    out = io.StringIO()
    ProgressView(out).show(StepLogged(3, 10, 0.3, 1.2, 1e-4, 1.0, 900.0, 3.0, 7.0, 6.2, gpu_used_gib=9.5, gpu_util=87))
    assert "mem 6.2 GiB  GPU 87% 9.5 GiB used" in out.getvalue()


def test_trackers_get_the_gpu_figures_when_there_are_some():
    from engine.events import StepLogged
    from engine.train.tracking import metrics

    on_gpu = metrics(StepLogged(3, 10, 0.3, 1.2, 1e-4, 1.0, 900.0, 3.0, 7.0, 6.2, gpu_used_gib=9.5, gpu_util=87))
    on_cpu = metrics(StepLogged(3, 10, 0.3, 1.2, 1e-4, 1.0, 900.0, 3.0, 7.0, 6.2))
    assert on_gpu is not None and on_cpu is not None
    assert on_gpu[1]["gpu/used_gib"] == 9.5 and on_gpu[1]["gpu/util_percent"] == 87.0
    assert not any(k.startswith("gpu/") for k in on_cpu[1])
