"""The work the TUI must not repeat on the key path during a run (bench/tui_latency.py measures
the time): screens kept between visits are not rebuilt, the footer is rebuilt only when its keys
change, and a log scrolled up to read back is not yanked to the bottom by new lines."""

from __future__ import annotations

import pytest
from textual.widgets import RichLog

from tests.tui.fake_backend import FakeBackend
from tui.app import FtuiApp
from tui.screens.home import HomeScreen
from tui.screens.training import TrainingScreen
from tui.widgets.footer import Footer
from tui.widgets.loss_plot import LossPlot

SIZE = (80, 24)


@pytest.mark.slow
async def test_leaving_and_reopening_the_training_screen_rebuilds_nothing(tmp_path):
    app = FtuiApp(backend=FakeBackend(runs_dir=tmp_path, hold_at=6))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.start_training(app.session.config)
        await pilot.pause(0.5)
        screen = app.screen
        assert isinstance(screen, TrainingScreen) and app.session.training.active
        keys = list(screen.query_one(Footer).children)
        plot = screen.query_one(LossPlot)
        shows = []
        plot.show = lambda *args, **kwargs: shows.append(args)  # type: ignore[method-assign]
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, HomeScreen)
        await pilot.press("t")
        await pilot.pause(0.3)
        assert app.screen is screen
        assert list(screen.query_one(Footer).children) == keys, "the footer was rebuilt with the same keys"
        assert shows == [], "the chart was redrawn without a new point"
        app.train_stop.set()
        await app.workers.wait_for_complete()
        await pilot.pause(0.3)
        start = next(key for key in screen.query("FooterKey") if key.key == "s")
        assert not start.disabled, "the footer did not follow the run ending (Start is available again)"


@pytest.mark.slow
async def test_a_log_scrolled_up_stays_put_while_lines_arrive_and_end_follows_again(tmp_path):
    app = FtuiApp(backend=FakeBackend(runs_dir=tmp_path, steps=400, hold_at=200))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.start_training(app.session.config)
        await pilot.pause(0.5)
        log = app.screen.query_one(RichLog)
        assert log.max_scroll_y > 10 and log.scroll_y == log.max_scroll_y
        await pilot.press("home")
        await pilot.wait_for_scheduled_animations()  # the scroll animates: a busy CPU draws it late
        assert log.scroll_y == 0
        await pilot.press("escape", "t")  # leaving the screen keeps the place too
        await pilot.pause(0.3)
        app.train_stop.set()  # the stop checkpoint and the final line arrive
        await app.workers.wait_for_complete()
        await pilot.pause(0.3)
        assert app.session.training.lines[-1].startswith("stopped")
        assert log.scroll_y == 0
        await pilot.press("end")
        await pilot.wait_for_scheduled_animations()
        assert log.scroll_y == log.max_scroll_y
        app.start_training(app.session.config)  # a new run shows from its first line and follows
        await pilot.pause(0.5)
        assert log.scroll_y == log.max_scroll_y
        app.train_stop.set()
        await app.workers.wait_for_complete()
        await pilot.pause()


async def test_what_a_run_froze_is_collected_when_it_ends(tmp_path):
    """The heap is frozen when a run starts (full collections would scan torch's objects on the
    UI thread); a model left in a reference cycle must still be freed when the run ends."""
    import gc
    import weakref

    refs = []

    class Model:
        pass

    class CyclicBackend(FakeBackend):
        def train(self, config, on_event, stop, resume=None, leave=None):
            model = Model()
            model.self = model  # a cycle: only the garbage collector frees it
            refs.append(weakref.ref(model))
            return super().train(config, on_event, stop, resume, leave)

    app = FtuiApp(backend=CyclicBackend(runs_dir=tmp_path, hold_at=3))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.start_training(app.session.config)
        await pilot.pause(0.3)
        assert app.session.training.active
        assert refs[0]() is not None and gc.get_freeze_count() > 0
        app.train_stop.set()
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.session.training.status == "stopped"
    assert refs[0]() is None, "the run's model outlived the run"


async def test_at_60_columns_the_log_wraps_its_lines_instead_of_cutting_them(tmp_path):
    """RichLog renders 78 cells wide unless told otherwise: at 60 columns "4,884,480 of 139,399,488
    parameters tra" ended there, with the rest off screen and no way to scroll to it."""
    app = FtuiApp(backend=FakeBackend(runs_dir=tmp_path))
    async with app.run_test(size=(60, 20)) as pilot:
        await pilot.pause()
        app.start_training(app.session.config)
        await app.workers.wait_for_complete()
        await pilot.pause(0.3)
        log = app.screen.query_one(RichLog)
        longest = max(app.session.training.lines, key=len)
        assert len(longest) > log.scrollable_content_region.width, "the fake run logs no line long enough to wrap"
        assert max(strip.cell_length for strip in log.lines) <= log.scrollable_content_region.width
        shown = "".join("".join(strip.text.split()) for strip in log.lines)
        assert "".join(longest.split()) in shown, "a word of the line is missing from the screen"
