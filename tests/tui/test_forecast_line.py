"""The config form predicts the run's time and says what this machine measured of its memory, as
the user edits (issue 25 items 1 and 4): from a finished run in the form's output folder, through
the engine's own forecast on the fake engine's dataset lengths."""

from __future__ import annotations

import pytest

from engine.config.presets import load_preset
from tests.engine.hardware.test_measured_memory import a_run
from tests.tui.test_flow import SIZE, settle, text_of
from tui.app import FtuiApp


async def wait_for_forecast(app, pilot, backend, asked: int) -> None:
    for _ in range(50):
        await pilot.pause(0.1)
        await app.workers.wait_for_complete()
        if len(backend.forecasts) >= asked:
            break
    await settle(app, pilot)


@pytest.mark.slow
async def test_the_form_predicts_the_time_from_a_run_measured_here_and_follows_the_epochs(backend, tmp_path):
    runs = tmp_path / "runs"
    demo = load_preset("demo").apply().replace(output_dir=str(runs), retention_mix=0.0, val_split=0.0)
    a_run(runs, "2026-12-01-0900-demo", "2026-12-01T09:00", demo, "cpu bfloat16 autocast", over=1.5)
    app = FtuiApp(backend=backend)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.session.choose_config(demo.replace(epochs=1.0), "test")
        app.goto("config")
        await wait_for_forecast(app, pilot, backend, 1)
        line = text_of(app, "#forecast")
        # 100 examples of 40 tokens, one epoch, at the 100 tokens/s the earlier run logged.
        assert "time: about 40 s (4,000 tokens at 100/s, measured by 2026-12-01-0900-demo)" in line
        assert line.endswith(" · the peak above counts the 1.50x this machine measured")

        epochs = app.screen.query_one("#field-epochs")
        asked = len(backend.forecasts)
        epochs.value = "3"
        epochs.value = "3."
        epochs.value = "3.0"
        await wait_for_forecast(app, pilot, backend, asked + 1)
        assert "time: about 2 min (12,000 tokens" in text_of(app, "#forecast")
        assert len(backend.forecasts) == asked + 1, "three quick edits, one forecast after the pause"


@pytest.mark.slow
async def test_without_a_run_to_measure_from_or_a_readable_dataset_the_line_says_so(backend, tmp_path):
    backend.example_lengths = None
    app = FtuiApp(backend=backend)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.session.choose_config(app.session.config.replace(output_dir=str(tmp_path / "runs")), "test")
        app.goto("config")
        await wait_for_forecast(app, pilot, backend, 1)
        assert text_of(app, "#forecast") == "time: when the dataset reads and the model is on this machine"
        backend.example_lengths = [40] * 10
        app.screen.query_one("#field-epochs").value = "1"
        await wait_for_forecast(app, pilot, backend, 2)
        assert "time: no finished smollm2-135m lora run on the cpu to measure from" in text_of(app, "#forecast")


async def test_home_plan_and_form_bar_show_one_figure_when_this_machine_measured_more(backend, tmp_path):
    """The home card planned with the measured peak (3.0 GiB) while the form's bar showed the plain
    estimate (2.4 GiB) for the same demo selection: both now count the measurement."""
    from engine.hardware.estimate import estimate_for
    from engine.hardware.recommend import recommend
    from engine.runs.memory import measured_memory

    runs = tmp_path / "runs"
    demo = load_preset("demo").apply().replace(output_dir=str(runs))
    a_run(runs, "2026-12-01-0900-demo", "2026-12-01T09:00", demo, "cpu bfloat16 autocast", over=1.5)
    backend.recommend = lambda report, family="llama", output_dir="runs": recommend(
        report, measured=measured_memory(str(runs), "cpu"))
    backend.estimate = estimate_for
    app = FtuiApp(backend=backend)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        planned = app.session.recommendation.peak_gib
        assert f"about {planned:.1f} GiB of RAM" in text_of(app, "#recommendation")
        plain = estimate_for(demo.replace(max_seq_len=app.session.recommendation.seq_len))
        assert plain is not None and f"{plain.tensors_gib:.1f}" != f"{planned:.1f}", "the measurement must show"
        await pilot.press("enter")
        await settle(app, pilot)
        assert text_of(app, "MemoryBar").startswith(f"Est. peak {planned:.1f} GiB")


async def test_at_60_columns_the_memory_bar_still_says_whether_the_run_fits(backend):
    """The bar's line was one row high: at 60 columns "(CPU mode) fits" fell off its end."""
    app = FtuiApp(backend=backend)
    async with app.run_test(size=(60, 20)) as pilot:
        await settle(app, pilot)
        app.goto("config")
        await settle(app, pilot)
        bar = app.screen.query_one("MemoryBar")
        assert bar.size.height >= 2 and app.screen.query_one("#forecast").region.y >= bar.region.bottom
        assert "RAM (CPU mode) fits" in " ".join(text_of(app, "MemoryBar").split())
