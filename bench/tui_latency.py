"""How fast the TUI answers: printed figures, not a timed test.

1. Launch to first screen: `ftui` started in a detached tmux pane at 80x24; the pane is polled
   until the home screen's footer is painted, then until the hardware recommendation shows.
   Target: first paint <= 1.0 s.
2. Key to screen: the app runs headless at 80x24 on a fake engine. Each key is posted the way
   the terminal driver posts it and timed until the first frame that shows its effect: the
   bench wraps `App._display`, renders every frame to terminal bytes there (the work a real
   terminal costs, which the headless driver skips) and checks the key's expected outcome at
   each frame. Keys are a few hundred ms apart (a user's pace, jittered so they do not lock
   to the screen's redraw timer), and nothing waits for the app to go idle between them.
   Two kinds of key, each measured with no run (the baseline: a finished run's log and loss
   on screen) and during a run logging a step every 1/rate s:
   - within the training screen: Home and End scroll the run log, ? opens the help and
     Escape closes it;
   - switching screens: Escape to the home screen and `t` back to training.
   A real run logs about 1-5 steps/s; 100 steps/s is a stress line.
   Target: p95 <= 50 ms during a run.

Run: .venv/bin/python bench/tui_latency.py [--runs 5] [--keys 48] [--rates 2,5,100]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import unicodedata
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

HISTORY_LINES = 60
"""Progress lines logged before the first step, so the run log has something to scroll."""
HISTORY_STEPS = 200
"""Steps logged at once before the paced ones: the loss chart is not empty when keys start."""


def launch_times(runs: int) -> list[tuple[float, float]] | None:
    if shutil.which("tmux") is None:
        print("launch: tmux not installed, skipped (apt-get install -y tmux)")
        return None
    ftui = ROOT / ".venv" / "bin" / "ftui"
    out = []
    for i in range(runs):
        session = f"ftui-bench-{os.getpid()}-{i}"
        start = time.perf_counter()
        subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "80", "-y", "24", str(ftui)], check=True)
        painted = recommended = None
        try:
            while time.perf_counter() - start < 20 and recommended is None:
                pane = subprocess.run(["tmux", "capture-pane", "-p", "-t", session],
                                      capture_output=True, text=True).stdout
                now = time.perf_counter() - start
                if painted is None and "Accept" in pane:
                    painted = now
                if painted is not None and "Recommended" in pane:
                    recommended = now
                time.sleep(0.01)
        finally:
            subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
        if painted is None or recommended is None:
            print(f"launch run {i}: the home screen did not appear within 20 s")
            continue
        out.append((painted, recommended))
    return out


def paced_backend(runs_dir: Path, rate: float | None):
    """The fake engine with a history (log lines and loss points at once), then one step every
    1/rate s until stopped; with rate None it finishes after the history."""
    from engine.events import CheckpointSaved, EvalLogged, Progress, StepLogged, TrainFinished, TrainStarted
    from tests.tui.fake_backend import FakeBackend

    class PacedBackend(FakeBackend):
        def train(self, config, on_event, stop: threading.Event, resume=None, leave=None):
            run_dir = str(self.runs_dir / "bench-run")
            for i in range(1, HISTORY_LINES + 1):
                on_event(Progress("tokenize", i * 100, HISTORY_LINES * 100, "examples"))
            total = 1_000_000 if rate else HISTORY_STEPS
            on_event(TrainStarted(run_dir, total, config.epochs, 54, 6, 921_600, 135_436_608, "cpu", 0.12, 0))
            step = 0
            while step < total and not stop.is_set():
                step += 1
                if step > HISTORY_STEPS:
                    stop.wait(1 / rate)
                loss = 3.0 / (1 + 0.01 * step)
                on_event(StepLogged(step, total, step / total, loss, 2e-4, 1.1, 1500.0, step * 0.5,
                                    (total - step) * 0.5, 0.42))
                if step % 4 == 0:
                    on_event(EvalLogged(step, loss + 0.1, loss + 0.1))
            on_event(CheckpointSaved(step, f"{run_dir}/adapter", "final"))
            on_event(TrainFinished(run_dir, step, 1.0, None, f"{run_dir}/adapter", stop.is_set(), "done"))

    return PacedBackend(runs_dir=runs_dir)


Outcome = Callable[[object], bool]
"""Called with each frame (a compositor update); True once the frame shows the key's effect."""


class Frames:
    """Wraps the app's `_display`: renders each frame as a terminal would, counts frames, and
    resolves the pending key's future at the first frame where its outcome holds."""

    def __init__(self, app) -> None:
        from textual._compositor import CompositorUpdate

        self.app = app
        self.count = 0
        self.pending: tuple[Outcome, asyncio.Future[float]] | None = None
        original = app._display

        def display(screen, renderable) -> None:
            original(screen, renderable)
            if renderable is None or screen is not app.screen:
                return
            if isinstance(renderable, CompositorUpdate):
                renderable.render_segments(app.console)
            self.count += 1
            if self.pending is not None:
                outcome, future = self.pending
                if outcome(renderable) and not future.done():
                    future.set_result(time.perf_counter())
                    self.pending = None

        app._display = display

    async def press(self, key: str, arm: Callable[[], Outcome | None]) -> float | str | None:
        """Post `key` as the driver does; seconds until a frame shows its outcome, None after 2 s,
        "no-op" when the key has nothing to change (it is still posted)."""
        from textual import events
        from textual.keys import _character_to_key, _get_unicode_name_from_key

        if len(key) == 1 and not key.isalnum():
            key = _character_to_key(key)
        try:
            char = unicodedata.lookup(_get_unicode_name_from_key(key))
        except KeyError:
            char = key if len(key) == 1 else None
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        outcome = arm()
        event = events.Key(key, char)
        event.set_sender(self.app)
        if outcome is None:
            self.app._driver.send_message(event)
            return "no-op"
        self.pending = (outcome, future)
        start = time.perf_counter()
        self.app._driver.send_message(event)
        try:
            return await asyncio.wait_for(future, 2.0) - start
        except TimeoutError:
            self.pending = None
            return None


def new_screen(app, cls: type) -> Callable[[], Outcome]:
    """A whole repaint of a `cls` screen: a screen kept from earlier first repaints its changed
    widgets over what the terminal shows, which is not yet the new screen."""
    from textual._compositor import LayoutUpdate

    return lambda: lambda frame: isinstance(app.screen, cls) and isinstance(frame, LayoutUpdate)


def scrolled(app, to_top: bool) -> Callable[[], Outcome | None]:
    """The run log moved from where it was when the key was posted (the first animation frame);
    None when it already was at the top (bottom): the key has nothing to show."""
    from textual.widgets import RichLog

    def arm() -> Outcome | None:
        log = app.get_screen("training").query_one(RichLog)
        before = log.scroll_y
        if before == (0 if to_top else log.max_scroll_y):
            return None
        return lambda frame: app.screen is log.screen and log.scroll_y != before

    return arm


def within_training_keys(app) -> list[tuple[str, Callable[[], Outcome | None]]]:
    """Keys a user presses on the training screen, whether or not a run is going."""
    from tui.screens.dialogs import HelpScreen
    from tui.screens.training import TrainingScreen

    return [("home", scrolled(app, to_top=True)), ("question_mark", new_screen(app, HelpScreen)),
            ("escape", new_screen(app, TrainingScreen)), ("end", scrolled(app, to_top=False))]


def switching_keys(app) -> list[tuple[str, Callable[[], Outcome | None]]]:
    from tui.screens.home import HomeScreen
    from tui.screens.training import TrainingScreen

    return [("escape", new_screen(app, HomeScreen)), ("t", new_screen(app, TrainingScreen))]


async def key_latencies(rate: float | None, kind: str, keys: int, seed: int = 1) -> tuple[list[float], str]:
    from tui.app import FtuiApp
    from tui.screens.training import TrainingScreen

    app = FtuiApp(backend=paced_backend(Path(tempfile.mkdtemp()), rate))
    samples: list[float] = []
    misses = noops = 0
    pace = random.Random(seed)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        app.start_training(app.session.config)
        if rate is None:
            await app.workers.wait_for_complete()
        await pilot.pause(1.0)
        assert isinstance(app.screen, TrainingScreen)
        assert app.session.training.active == (rate is not None), app.session.training.status
        frames = Frames(app)
        sequence = (within_training_keys if kind == "within" else switching_keys)(app)
        first_frame = frames.count
        start = time.perf_counter()
        for i in range(keys):
            key, arm = sequence[i % len(sequence)]
            took = await frames.press(key, arm)
            if took is None:
                misses += 1
            elif isinstance(took, str):
                noops += 1
            else:
                samples.append(took)
            await asyncio.sleep(pace.uniform(0.15, 0.35))
        fps = (frames.count - first_frame) / (time.perf_counter() - start)
        active = app.session.training.active
        app.train_stop.set()
        await app.workers.wait_for_complete()
        await pilot.pause()
    points = [s for s, _ in app.session.training.train_points]
    note = f"{fps:.0f} frames/s"
    if rate is not None:
        note += (f", {len(points)} loss points, run active throughout: {active}, "
                 f"none dropped: {points == list(range(1, len(points) + 1))}")
    if misses:
        note += f", {misses} keys showed nothing within 2 s"
    if noops:
        note += f", {noops} keys not timed: the log was already where they scroll to"
    return samples, note


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="launches timed in tmux (0 skips)")
    parser.add_argument("--keys", type=int, default=48, help="keys per line")
    parser.add_argument("--rates", default="2,5,100", help="steps/s of the runs measured; the last is the stress line")
    args = parser.parse_args()

    times = launch_times(args.runs) if args.runs else None
    if times:
        paints = [p for p, _ in times]
        recs = [r for _, r in times]
        print(f"launch -> first screen painted: median {statistics.median(paints):.2f} s, "
              f"max {max(paints):.2f} s over {len(times)} runs (target <= 1.0 s)")
        print(f"launch -> recommendation shown: median {statistics.median(recs):.2f} s")
    rates = [float(r) for r in args.rates.split(",") if r]
    for kind, title in (("within", "keys on the training screen"), ("switch", "switching screens")):
        print(f"key -> screen, {title} (target p95 <= 50 ms during a run):")
        base_p50 = base_p95 = None
        for rate in [None, *rates]:
            samples, note = asyncio.run(key_latencies(rate, kind, args.keys))
            ms = [s * 1000 for s in samples] or [float("nan")]
            p50, p95 = percentile(ms, 0.5), percentile(ms, 0.95)
            label = "no run (baseline)" if rate is None else f"run at {rate:g} steps/s"
            if rate is not None and rate == rates[-1] and len(rates) > 1:
                label += " (stress)"
            ratio = ""
            if base_p50 is None:
                base_p50, base_p95 = p50, p95
            else:
                ratio = f"  = {p50 / base_p50:.1f}x / {p95 / base_p95:.1f}x the baseline"
            print(f"  {label:<30} p50 {p50:6.1f} ms  p95 {p95:6.1f} ms  max {max(ms):6.1f} ms"
                  f"{ratio}  ({len(samples)} keys, {note})")


if __name__ == "__main__":
    main()
