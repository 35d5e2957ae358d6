"""A sweep as it runs: its variants' curves over one another, each variant's state and best
validation loss, and at the end the variant the engine chose and why.

It draws from the app's SweepLog, so it can be left and reopened without losing a point; it
redraws on a timer when the log has changed, as the training screen does."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Header, Static

from tui.screens.base import FtuiScreen
from tui.screens.dialogs import ConfirmScreen
from tui.screens.runs import STATUS_STYLE
from tui.widgets.curves_plot import CurvesPlot
from tui.widgets.footer import Footer

REDRAW_S = 0.25


class SweepScreen(FtuiScreen):
    TITLE = "Sweep"
    DOCS = "docs/tui.md#sweep"
    HELP = ("The variants of a sweep (ctrl+r on the config screen) train one after another, each in a "
            "process of its own, into one sweep folder. The chart lays their validation loss over one "
            "another (t switches to training loss); the table has each variant's best validation loss "
            "and, when measured, the share of the base model's right general answers it kept. At the end "
            "the engine chooses the variant with the lowest validation loss among those that kept the "
            "base model's general answers. x stops the sweep after asking: the variant in training stops "
            "at a checkpoint and the rest do not start. Quitting ftui lets the variant in training finish "
            "in its own process and starts no more. The runs screen lists the sweep's runs as a group.")
    BINDINGS = [
        Binding("x", "stop", "Stop", id="stop"),
        Binding("t", "toggle_curve", "Train/val", id="toggle"),
        Binding("r", "app.goto('runs')", "Runs", id="runs"),
    ]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="sweep-status")
        yield CurvesPlot(id="sweep-curves")
        yield DataTable(id="sweep-variants", cursor_type="row", show_cursor=False)
        yield Static("", id="sweep-verdict")
        yield Footer()

    def on_mount(self) -> None:
        self.training_curves = False
        self._shown: tuple[object, int, bool] | None = None
        self.query_one(DataTable).add_columns("variant", "status", "steps", "best val", "kept")
        self.set_interval(REDRAW_S, self.redraw)
        self.redraw()

    def on_screen_resume(self) -> None:
        self.redraw()

    def redraw(self) -> None:
        log = self.session.sweep
        if self._shown == (log, log.version, self.training_curves):
            return
        self._shown = (log, log.version, self.training_curves)
        self._show_status()
        self._show_curves()
        self._show_table()
        self._show_verdict()
        self.refresh_bindings()

    def _show_status(self) -> None:
        log = self.session.sweep
        text = Text(f"{log.status.upper()} ", style="bold")
        if log.status == "idle":
            text.append("no sweep yet: ctrl+r on the config screen starts one")
        else:
            text.append(f"{len(log.runs)}/{len(log.labels)} variants")
            if log.active and log.runs:
                current = log.runs[-1]
                text.append(f"  {log.labels[len(log.runs) - 1]}")
                if current.last_step:
                    step = current.last_step
                    text.append(f"  step {step.step}/{step.total_steps}  loss {step.loss:.4f}")
            if log.folder:
                text.append(f"\nin {log.folder}", style="dim")
        self.query_one("#sweep-status", Static).update(text)

    def _show_curves(self) -> None:
        log = self.session.sweep
        chosen = log.result.best if log.result else None
        series = [(f"{label} (chosen)" if label == chosen else label,
                   run.train_points if self.training_curves else run.val_points)
                  for label, run in zip(log.labels, log.runs, strict=False)]
        title = "training loss by step" if self.training_curves else "validation loss by step"
        self.query_one(CurvesPlot).show(title, series, max((run.total_steps for run in log.runs), default=0))

    def _show_table(self) -> None:
        log = self.session.sweep
        results = {v.label: v for v in log.result.variants} if log.result else {}
        table = self.query_one(DataTable)
        table.clear()
        for i, label in enumerate(log.labels):
            run = log.runs[i] if i < len(log.runs) else None
            status = run.status if run else ("waiting" if log.active else "not run")
            steps = f"{run.last_step.step}/{run.last_step.total_steps}" if run and run.last_step else "-"
            best = f"{run.best_val_loss:.4f}" if run and run.best_val_loss is not None else "-"
            result = results.get(label)
            kept = f"{result.retention:.0%}" if result and result.retention is not None else "-"
            mark = "* " if log.result and label == log.result.best else "  "
            table.add_row(Text(mark + label), Text(status, style=STATUS_STYLE.get(status, "")), steps, best, kept)

    def _show_verdict(self) -> None:
        log = self.session.sweep
        verdict = self.query_one("#sweep-verdict", Static)
        if log.error:
            verdict.update(Text(f"The sweep failed: {log.error}", style="bold red"))
        elif log.result and log.result.best:
            verdict.update(Text(f"Chosen (*): {log.result.reason}", style="bold green"))
        elif log.result:
            verdict.update(Text(f"No variant chosen: {log.result.reason}", style="bold red"))
        elif log.lines:
            # The latest line of the log, on one line: the chart keeps its height.
            verdict.update(Text(log.lines[-1], style="dim", no_wrap=True, overflow="ellipsis"))
        else:
            verdict.update("")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "stop":
            return True if self.session.sweep.status == "running" else None
        return True

    def action_toggle_curve(self) -> None:
        self.training_curves = not self.training_curves
        self.redraw()

    def action_stop(self) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                self.ftui.stop_sweep()
                self.redraw()

        self.app.push_screen(ConfirmScreen("Stop the sweep? The variant in training stops at a checkpoint and "
                                           "the rest do not start; the sweep chooses among those trained so far."),
                             answered)
