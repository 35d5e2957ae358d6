"""The queue in the TUI (issue 25 item 3): ctrl+n on the form queues the run and opens the queue
screen; its keys reorder and cancel waiting runs and start the runner; the runs screen says what
waits. The queue is the engine's real file in the test's folder; the fake only starts no runner."""

from __future__ import annotations

import pytest

from engine.runqueue.store import read_queue
from tests.tui.test_flow import SIZE, settle, text_of
from tui.app import FtuiApp
from tui.screens.queue import QueueScreen


@pytest.mark.slow
async def test_ctrl_n_queues_the_form_and_the_queue_screen_reorders_cancels_and_starts(backend, tmp_path):
    app = FtuiApp(backend=backend)
    folder = str(tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.session.choose_config(app.session.config.replace(output_dir=folder), "test")
        for name in ("alpha", "beta", "gamma"):
            app.goto("config")
            await settle(app, pilot)
            app.screen.query_one("#field-name").value = name
            await pilot.pause()
            await pilot.press("ctrl+n")
            await settle(app, pilot)
            assert isinstance(app.screen, QueueScreen)
        assert [c for c in backend.calls if c[0] == "queue_add"] == [("queue_add", n) for n in ("alpha", "beta", "gamma")]
        assert "3 waiting" in text_of(app, "#queue-note") and "s starts one" in text_of(app, "#queue-note")

        await pilot.press("down", "down")  # the cursor to gamma, the last
        await pilot.press("shift+up")  # gamma earlier by one: it starts before beta
        await settle(app, pilot)
        assert [e.label for e in read_queue(folder).waiting] == ["alpha", "gamma", "beta"]
        await pilot.press("up", "up", "x")  # alpha off the queue
        await settle(app, pilot)
        queue = read_queue(folder)
        assert [e.label for e in queue.waiting] == ["gamma", "beta"]
        assert queue.entries[0].status == "cancelled"
        assert "cancelled" in str(app.screen.query_one("#queue").get_row_at(0))

        await pilot.press("s")
        await settle(app, pilot)
        assert ("queue_start", folder) in backend.calls

        await pilot.press("escape")
        app.goto("runs")
        await settle(app, pilot)
        assert "queue: 2 waiting (w opens it)" in text_of(app, "#runs-note")
        await pilot.press("w")
        await settle(app, pilot)
        assert isinstance(app.screen, QueueScreen)
