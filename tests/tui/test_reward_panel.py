"""GRPO on the training screen: the reward curves and the latest sampled answer, from the run's
RewardLogged events (Pilot, fake engine); an SFT run shows no reward panel."""

from __future__ import annotations

from tests.tui.fake_backend import FakeBackend
from tests.tui.test_flow import SIZE, settle
from tui.app import FtuiApp
from tui.widgets.curves_plot import CurvesPlot
from tui.widgets.reward_panel import RewardPanel


async def test_a_grpo_run_shows_reward_curves_and_the_live_sample(tmp_path):
    app = FtuiApp(backend=FakeBackend(runs_dir=tmp_path))
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(app, pilot)
        app.start_training(app.session.config.replace(objective="grpo", reward_format="^Run: .*$"))
        await settle(app, pilot)
        assert app.session.training.status == "finished"
        panel = app.screen.query_one(RewardPanel)
        assert panel.display
        plot = panel.query_one(CurvesPlot)
        drawn = str(plot.render())
        assert all(label in drawn for label in ("reward", "format", "answer"))
        sample = str(panel.query_one("#reward-sample").render())
        assert "step 12  reward 1.200" in sample and "Run: `docker ps` #12" in sample and "(reward 1.20)" in sample


async def test_an_sft_run_has_no_reward_panel(tmp_path):
    app = FtuiApp(backend=FakeBackend(runs_dir=tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.start_training(app.session.config)
        await settle(app, pilot)
        assert app.session.training.status == "finished"
        assert not app.screen.query_one(RewardPanel).display


async def test_the_runs_overlay_shows_grpo_reward_curves(tmp_path):
    import threading

    from tui.screens.compare import CompareScreen

    backend = FakeBackend(runs_dir=tmp_path)
    app = FtuiApp(backend=backend)
    backend.train(app.session.config.replace(name="rl", objective="grpo", reward_format="^Run: .*$"), lambda _e: None,
                  threading.Event())
    backend.train(app.session.config.replace(name="sft"), lambda _e: None, threading.Event())
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.push_screen(CompareScreen(sorted(backend.runs)))
        await settle(app, pilot)
        assert "validation loss by step" in str(app.screen.query_one(CurvesPlot).render())
        await pilot.press("w")
        await pilot.pause()
        assert "mean reward by step" in str(app.screen.query_one(CurvesPlot).render())
        note = str(app.screen.query_one("#compare-note").render())
        assert "Mean reward of 2 run(s)" in note and "No reward points in 2026-01-01-1201-sft" in note
