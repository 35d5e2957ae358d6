"""How fast the TUI answers: printed figures, not a timed test.

1. Launch to first screen: `ftui` started in a detached tmux pane at 80x24; the pane is polled
   until the home screen's footer is painted, then until the hardware recommendation shows.
   Target: first paint <= 1.0 s.
2. Key to screen while training: with the fake engine logging a step every 10 ms (about 100
   events/s, far busier than a real run), Escape and `t` flip between the training and home
   screens; each key is timed from the press until the new screen is active and painted.
   Target: p95 <= 50 ms.

Run: .venv/bin/python bench/tui_latency.py [--runs 5] [--keys 40]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


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


async def key_latencies(keys: int) -> list[float]:
    from tests.tui.fake_backend import FakeBackend
    from tui.app import FtuiApp
    from tui.screens.home import HomeScreen
    from tui.screens.training import TrainingScreen

    backend = FakeBackend(runs_dir=Path(tempfile.mkdtemp()), steps=100_000, step_delay=0.01)
    app = FtuiApp(backend=backend)
    samples = []
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        app.start_training(app.config)
        await pilot.pause(0.5)
        assert app.training.status == "running"
        for i in range(keys):
            key, target = ("escape", HomeScreen) if i % 2 == 0 else ("t", TrainingScreen)
            start = time.perf_counter()
            await pilot.press(key)
            while not isinstance(app.screen, target):
                await asyncio.sleep(0.001)
            await pilot.pause()  # the refresh of the new screen has run
            samples.append(time.perf_counter() - start)
            await asyncio.sleep(0.05)
        app.train_stop.set()
        await app.workers.wait_for_complete()
        await pilot.pause()
    points = len(app.training.train_points)
    print(f"  ({points} loss points arrived during the measurement, none dropped: "
          f"{[s for s, _ in app.training.train_points] == list(range(1, points + 1))})")
    return samples


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--keys", type=int, default=40)
    args = parser.parse_args()

    times = launch_times(args.runs)
    if times:
        paints = [p for p, _ in times]
        recs = [r for _, r in times]
        print(f"launch -> first screen painted: median {statistics.median(paints):.2f} s, "
              f"max {max(paints):.2f} s over {len(times)} runs (target <= 1.0 s)")
        print(f"launch -> recommendation shown: median {statistics.median(recs):.2f} s")
    samples = asyncio.run(key_latencies(args.keys))
    ms = [s * 1000 for s in samples]
    print(f"key -> screen during a run: p50 {percentile(ms, 0.5):.1f} ms, p95 {percentile(ms, 0.95):.1f} ms, "
          f"max {max(ms):.1f} ms over {len(ms)} keys (target p95 <= 50 ms)")


if __name__ == "__main__":
    main()
