"""Several runs' loss curves over one another (the TUI's `ftui runs --compare A B`): the runs
marked on the runs screen, or every run of a sweep."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Header, Static

from engine.runs.curves import Curves
from tui.screens.base import FtuiScreen
from tui.widgets.curves_plot import CurvesPlot
from tui.widgets.footer import Footer


class CompareScreen(FtuiScreen):
    TITLE = "Compare runs"
    DOCS = "docs/tui.md#compare"
    HELP = ("The loss curves of the runs marked on the runs screen (m marks, v compares), or of "
            "every run of the sweep the cursor was on, one colour each, named in the legend. The chart "
            "starts with validation loss, what a sweep chooses by; t switches to training loss and, when "
            "the runs trained with dpo or orpo, to their reward margin. The table has each run's steps, last "
            "training loss and best validation loss with its step. w shows the mean reward of GRPO runs "
            "instead, and back.")
    BINDINGS = [Binding("t", "toggle_curve", "Train/val", id="toggle"),
                Binding("w", "toggle_reward", "Reward", id="reward")]
    KINDS = ("validation", "training", "margin")
    """What t cycles through (margin only for runs that log one); w switches to GRPO's mean reward."""

    def __init__(self, run_dirs: list[str]) -> None:
        super().__init__()
        self.run_dirs = run_dirs

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="compare-note")
        yield CurvesPlot(id="compare-curves")
        yield DataTable(id="compare-runs", cursor_type="row", show_cursor=False)
        yield Footer()

    def on_mount(self) -> None:
        self.kind = "validation"
        self.curves: list[Curves] = []
        unreadable = []
        for run_dir in self.run_dirs:
            try:
                self.curves.append(self.ftui.backend.run_curves(run_dir))
            except (OSError, ValueError):
                unreadable.append(Path(run_dir).name)
        table = self.query_one(DataTable)
        table.add_columns("run", "steps", "last loss", "best val (step)")
        for c in self.curves:
            steps = str(c.train[-1][0]) if c.train else "-"
            last = f"{c.train[-1][1]:.4f}" if c.train else "-"
            best = f"{c.best_val[1]:.4f} ({c.best_val[0]})" if c.best_val else "-"
            table.add_row(c.run, steps, last, best)
        self.unreadable = unreadable
        self.show_curves()

    def show_curves(self) -> None:
        kind = self.kind
        series = [(c.run, list(self._points(c, kind))) for c in self.curves]
        last = max((c.train[-1][0] for c in self.curves if c.train), default=0)
        what = {"margin": "reward margin", "reward": "reward"}.get(kind, f"{kind} loss")
        self.query_one(CurvesPlot).show(f"{'mean ' if kind == 'reward' else ''}{what} by step", series, last)
        if kind == "reward":
            note = Text(f"Mean reward of {len(self.curves)} run(s); w shows their loss.")
        else:
            following = self._next_kind()
            after = "reward margin" if following == "margin" else f"{following} loss"
            note = Text(f"{what.capitalize()} of {len(self.curves)} run(s); t shows {after}.")
        empty = [name for name, points in series if not points]
        if empty:
            note.append(f" No {what} points in {', '.join(empty)}.", style="yellow")
        if self.unreadable:
            note.append(f" Could not read {', '.join(self.unreadable)}.", style="red")
        self.query_one("#compare-note", Static).update(note)

    @staticmethod
    def _points(curves: Curves, kind: str) -> tuple[tuple[int, float], ...]:
        if kind == "reward":
            return curves.reward
        if kind == "margin":
            return curves.metrics.get("margin", ())
        return curves.train if kind == "training" else curves.val

    def _next_kind(self) -> str:
        kinds = [k for k in self.KINDS if k != "margin" or any("margin" in c.metrics for c in self.curves)]
        return kinds[(kinds.index(self.kind) + 1) % len(kinds)] if self.kind in kinds else kinds[0]

    def action_toggle_curve(self) -> None:
        self.kind = self._next_kind()
        self.show_curves()

    def action_toggle_reward(self) -> None:
        self.kind = "validation" if self.kind == "reward" else "reward"
        self.show_curves()
