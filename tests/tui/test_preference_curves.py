"""A dpo run's reward margin and rewards are drawn beside the loss, its accuracy is in the status line,
and the compare overlay cycles to the margin; an SFT run shows the loss alone."""

from __future__ import annotations

import pytest
from textual.widgets import Select, Static

from tests.tui.fake_backend import FakeBackend
from tests.tui.test_flow import SIZE, settle
from tui.app import FtuiApp
from tui.screens.compare import CompareScreen
from tui.screens.config_form import ConfigScreen
from tui.screens.training import TrainingScreen
from tui.widgets.curves_plot import CurvesPlot


def objective_plot(app) -> CurvesPlot:
    return app.screen.query_one("#objective-curves", CurvesPlot)


async def test_a_dpo_run_draws_margin_and_rewards_beside_the_loss(tmp_path):
    app = FtuiApp(backend=FakeBackend(runs_dir=tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.start_training(app.session.config.replace(objective="dpo"))
        await settle(app, pilot)
        assert isinstance(app.screen, TrainingScreen) and app.session.training.status == "finished"
        plot = objective_plot(app)
        assert plot.display
        drawn = plot.render().plain
        assert "reward by step" in drawn and "margin" in drawn and "chosen reward" in drawn
        assert app.session.training.metric_points["margin"][-1] == (12, 0.03 * 12)
        status = str(app.screen.query_one("#train-status", Static).render())
        assert "margin 0.3600" in status and "accuracy 100%" in status


async def test_an_sft_run_shows_the_loss_alone(tmp_path):
    app = FtuiApp(backend=FakeBackend(runs_dir=tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.start_training(app.session.config)
        await settle(app, pilot)
        assert not objective_plot(app).display
        assert "margin" not in str(app.screen.query_one("#train-status", Static).render())


@pytest.mark.slow
async def test_the_form_offers_the_objective_and_its_settings(tmp_path):
    app = FtuiApp(backend=FakeBackend(runs_dir=tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.goto("config")
        await settle(app, pilot)
        assert isinstance(app.screen, ConfigScreen)
        screen = app.screen
        screen.query_one("#field-objective", Select).value = "dpo"
        await settle(app, pilot)
        assert screen.config is not None and screen.config.objective == "dpo"
        screen.query_one("#field-dpo_beta").value = "0"
        await pilot.pause()
        assert "outside 1e-3..10" in str(screen.query_one("#problem-dpo_beta").render())


@pytest.mark.slow
async def test_the_compare_overlay_cycles_to_the_reward_margin(tmp_path):
    backend = FakeBackend(runs_dir=tmp_path)
    app = FtuiApp(backend=backend)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.start_training(app.session.config.replace(objective="dpo"))
        await settle(app, pilot)
        first = app.session.training.run_dir
        app.start_training(app.session.config.replace(objective="orpo"))
        await settle(app, pilot)
        app.push_screen(CompareScreen([first, app.session.training.run_dir]))
        await settle(app, pilot)
        await pilot.press("t", "t")  # validation, training, then the margin
        await settle(app, pilot)
        assert "reward margin by step" in app.screen.query_one(CurvesPlot).render().plain
        await pilot.press("t")
        await settle(app, pilot)
        assert "validation loss by step" in app.screen.query_one(CurvesPlot).render().plain
