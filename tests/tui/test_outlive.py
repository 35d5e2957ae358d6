"""A run outlives the app: quitting or a hangup leaves it training, the next ftui shows it again
with its whole curve, x stops it; SIGTERM still stops it with a checkpoint; a second run on a
GPU a live run uses asks first. On the fake engine; tests/engine/train/test_outlive.py drives the real
processes, and test_tmux_outlive.py the real app in tmux."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from engine.runs import GpuHolder
from tests.tui.fake_backend import FakeBackend
from tests.tui.test_flow import SIZE, settle
from tui.app import FtuiApp
from tui.screens.dialogs import ConfirmScreen
from tui.screens.runs import RunsScreen
from tui.screens.training import TrainingScreen


async def start_held_run(app, pilot, backend) -> str:
    await settle(app, pilot)
    app.start_training(app.session.config)
    for _ in range(50):
        if app.session.training.run_dir and app.session.training.last_step:
            break
        await pilot.pause(0.05)
    assert app.session.training.active
    return app.session.training.run_dir


async def exited(app) -> bool:
    for _ in range(100):
        if not app.is_running:
            return True
        await asyncio.sleep(0.05)
    return False


@pytest.mark.parametrize("leave_by", ["quit", "hangup"])
async def test_quitting_or_a_hangup_leaves_the_run_training(tmp_path, leave_by):
    backend = FakeBackend(runs_dir=tmp_path, hold_at=3)
    app = FtuiApp(backend=backend)
    async with app.run_test(size=SIZE) as pilot:
        run_dir = await start_held_run(app, pilot, backend)
        if leave_by == "quit":
            await pilot.press("ctrl+q")
            await pilot.pause()
            assert isinstance(app.screen, ConfirmScreen) and "keeps training" in app.screen.question
            await pilot.press("y")
        else:
            os.kill(os.getpid(), signal.SIGHUP)
        assert await exited(app)
    assert not app.train_stop.is_set(), "leaving asked the run to stop"
    assert backend.runs[run_dir].status == "running"
    assert app.train_done.wait(5), "the follower did not leave"


async def test_sigterm_still_stops_the_run_with_a_checkpoint_then_exits(tmp_path):
    backend = FakeBackend(runs_dir=tmp_path, hold_at=3)
    app = FtuiApp(backend=backend)
    async with app.run_test(size=SIZE) as pilot:
        run_dir = await start_held_run(app, pilot, backend)
        os.kill(os.getpid(), signal.SIGTERM)
        assert await asyncio.to_thread(app.train_done.wait, 10)
        assert await exited(app)
    assert app.session.training.status == "stopped" and app.session.training.checkpoints[-1].reason == "stop"
    assert backend.runs[run_dir].status == "stopped"


@pytest.mark.slow
async def test_the_next_ftui_opens_the_live_run_with_every_point_and_x_stops_it(tmp_path):
    backend = FakeBackend(runs_dir=tmp_path, hold_at=6)
    first = FtuiApp(backend=backend)
    async with first.run_test(size=SIZE) as pilot:
        run_dir = await start_held_run(first, pilot, backend)
        for _ in range(50):
            if len(first.session.training.train_points) == 5:
                break
            await pilot.pause(0.05)
        await pilot.press("ctrl+q", "y")
        assert await exited(first)
    assert backend.runs[run_dir].status == "running"

    again = FtuiApp(backend=backend)
    async with again.run_test(size=SIZE) as pilot:
        for _ in range(50):
            if again.session.training.train_points:
                break
            await pilot.pause(0.05)
        assert isinstance(again.screen, TrainingScreen)
        assert backend.calls[-1] == ("attach", run_dir)
        assert [s for s, _ in again.session.training.train_points] == [1, 2, 3, 4, 5]
        assert again.session.training.active and again.session.training.run_dir == run_dir
        await pilot.press("x", "y")
        await settle(again, pilot)
        assert again.session.training.status == "stopped"
        assert again.session.training.checkpoints[-1].reason == "stop"
        assert backend.runs[run_dir].status == "stopped"


async def test_the_runs_screen_follows_a_run_that_trains_elsewhere(tmp_path):
    backend = FakeBackend(runs_dir=tmp_path)
    config = FtuiApp(backend=backend).session.config
    run_dir = str(tmp_path / "2026-01-01-1200-elsewhere")
    backend._record(run_dir, config, "running", 3, 12, None)
    backend.events[run_dir] = []
    app = FtuiApp(backend=backend)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)  # found at start and followed to its end
        assert backend.calls[-1] == ("attach", run_dir)
        assert app.session.training.status == "finished"
        app.goto("runs")
        await settle(app, pilot)
        assert isinstance(app.screen, RunsScreen)
        backend._record(run_dir, config, "running", 3, 12, None)
        app.screen.action_reload()
        assert app.screen.check_action("delete", ()) is None  # not while it trains
        await pilot.press("enter")
        await settle(app, pilot)
        assert isinstance(app.screen, TrainingScreen)
        assert backend.calls[-1] == ("attach", run_dir)


async def test_a_second_run_on_a_gpu_a_live_run_uses_asks_first(tmp_path):
    backend = FakeBackend(runs_dir=tmp_path, gpu=True)
    app = FtuiApp(backend=backend)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        live = backend._record(str(tmp_path / "live"), app.session.config, "running", 7, 12, None) or backend.runs[
            str(tmp_path / "live")]
        backend.holders = [GpuHolder(live, 0, "NVIDIA GeForce RTX 4070", 7.8)]
        app.start_training(app.session.config)
        await settle(app, pilot)
        assert isinstance(app.screen, ConfirmScreen)
        assert "7.8 GiB on GPU 0" in app.screen.question
        await pilot.press("n")
        await settle(app, pilot)
        assert not [c for c in backend.calls if c[0] == "train"]
        app.start_training(app.session.config)
        await settle(app, pilot)
        await pilot.press("y")
        await settle(app, pilot)
        assert [c for c in backend.calls if c[0] == "train"]
        assert app.session.training.status == "finished"
