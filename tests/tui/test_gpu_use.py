"""The training screen shows the GPU's utilisation and memory over the last steps (issue 25 item
5): live from the fake engine's sampled steps, and from a real tiny run whose sampler read a fake
NVML, replayed as the runs screen opens a past run; nothing of it on the CPU."""

from __future__ import annotations

import pytest

from engine.hardware.sampler import GpuSampler
from engine.runs import read_events
from tests.engine.hardware.conftest import FakeNvml
from tests.engine.hardware.test_sampler import UUID, cards
from tests.engine.train.tiny import make_model_folder, run_tiny, tiny_config
from tests.tui.fake_backend import FakeBackend
from tests.tui.test_flow import SIZE, settle, text_of
from tui.app import FtuiApp
from tui.training_log import TrainingLog


async def test_a_gpu_run_shows_how_busy_the_gpu_is_and_what_the_card_holds_as_it_trains(tmp_path):
    app = FtuiApp(backend=FakeBackend(runs_dir=tmp_path, gpu=True))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.start_training(app.session.config)
        await settle(app, pilot)
        assert app.session.training.status == "finished"
        line = text_of(app, "#gpu-use")
        # The fake sampler: step 12 of 12 at 82% busy, 9.6 GiB on the 12 GiB card, rising from 9.05.
        assert line.startswith("GPU busy  82% ") and "card 9.6/12 GiB ▆" in line and "peak 9.6" in line
        assert app.screen.query_one("#gpu-use").display


async def test_a_cpu_run_has_no_gpu_line(tmp_path):
    app = FtuiApp(backend=FakeBackend(runs_dir=tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.start_training(app.session.config)
        await settle(app, pilot)
        assert app.session.training.status == "finished"
        assert not app.screen.query_one("#gpu-use").display


@pytest.mark.slow
async def test_a_real_run_sampled_through_a_fake_nvml_shows_its_figures_when_opened(tmp_path, monkeypatch):
    nvml = FakeNvml(cards())
    monkeypatch.setattr("engine.train.loop.open_run_gpu", lambda device: GpuSampler.open(UUID, nvml))
    result, _ = run_tiny(tiny_config(tmp_path, max_steps=3), make_model_folder(tmp_path / "model"))
    assert result.status == "finished"

    app = FtuiApp(backend=FakeBackend(runs_dir=tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.session.training = TrainingLog.replay(read_events(result.run_dir), "finished", result.run_dir)
        app.goto("training")
        await settle(app, pilot)
        assert text_of(app, "#gpu-use") == "GPU busy  87% ▇▇▇ avg 87% · card 9.5 GiB ███ peak 9.5"
