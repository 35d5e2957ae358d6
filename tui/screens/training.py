"""The training screen: live loss, rate, ETA and memory, advice banners and the run's log.

It is installed once and kept, and draws from the app's TrainingLog, so leaving it during a
run and coming back loses nothing. Points arrive one message each; redraws are batched on a
timer so a fast run does not flood a slow SSH link.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Header, ProgressBar, RichLog, Static

from engine.display import duration
from engine.events import Diagnosis, TrainFailed, TrainFinished
from tui.messages import TrainingEventLogged, TrainingLogReplaced, TrainingStatusChanged
from tui.screens.base import FtuiScreen
from tui.screens.dialogs import ConfirmScreen
from tui.training_log import METRIC_LABELS, metrics_text
from tui.widgets.curves_plot import CurvesPlot
from tui.widgets.footer import Footer
from tui.widgets.gpu_use import GpuUse
from tui.widgets.loss_plot import LossPlot
from tui.widgets.reward_panel import RewardPanel

REDRAW_S = 0.25


class TrainingScreen(FtuiScreen):
    TITLE = "Training"
    DOCS = "docs/tui.md#training"
    HELP = ("The run in progress (or the run opened from the runs screen). x stops it after "
            "asking; the engine writes a checkpoint first, and the runs screen can resume it. "
            "s starts a run with the current configuration, asking first when a past run is shown. "
            "Banners appear when the engine sees overfitting, underfitting or divergence. "
            "The run trains in a process of its own: leaving this screen, quitting ftui or losing "
            "the connection does not stop it, and the next `ftui` (or `ftui attach`) shows it again "
            "with its whole curve. A dpo or orpo run draws its reward margin and the chosen and rejected "
            "rewards beside the loss, and its preference accuracy in the status line.")
    BINDINGS = [
        Binding("s", "start", "Start", id="start"),
        Binding("x", "stop", "Stop", id="stop"),
        Binding("e", "export", "Export", id="export"),
        Binding("o", "app.goto('config')", "Config", id="config"),
        Binding("r", "app.goto('runs')", "Runs", id="runs"),
    ]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="train-status")
        yield GpuUse(id="gpu-use")
        yield ProgressBar(id="train-progress", show_eta=False)
        yield Static("", id="diagnosis", classes="banner")
        with Horizontal(id="train-curves"):
            yield LossPlot(id="loss")
            yield CurvesPlot(id="objective-curves")
        yield RewardPanel(id="rewards")
        # min_width: RichLog renders at least 78 cells wide by default, which cut every line at 60 columns.
        yield RichLog(id="train-log", max_lines=2000, wrap=True, min_width=20)
        yield Footer()

    def on_mount(self) -> None:
        self._dirty = False
        self._shown_log: object = None
        """The TrainingLog the run log widget holds the lines of (the app replaces it per run)."""
        self._shown_lines = 0
        self._plotted_log: object = None
        self._plotted: tuple[int, ...] | None = None
        self.watch(self.query_one(RichLog), "scroll_y", self._follow_at_bottom, init=False)
        self.set_interval(REDRAW_S, self._redraw_if_dirty)
        self.redraw_all()

    # The app tells this screen what changed in the session's TrainingLog; how it is drawn is the screen's.

    def on_training_log_replaced(self, _message: TrainingLogReplaced) -> None:
        if self.is_mounted:
            self.redraw_all()

    def on_training_event_logged(self, message: TrainingEventLogged) -> None:
        if not self.is_mounted:
            return
        self._write_new_lines()
        event = message.event
        if isinstance(event, Diagnosis):
            self._show_diagnosis()
        if isinstance(event, TrainFinished | TrainFailed):
            self.refresh_bindings()
            if isinstance(event, TrainFailed):
                self.notify(f"Training failed: {event.reason}", severity="error", timeout=10)
            else:
                self.notify(f"Run {'stopped' if event.stopped else 'finished'}: {event.run_dir}")
        self._dirty = True
        if isinstance(event, TrainFinished | TrainFailed):
            self._redraw_if_dirty()

    def on_training_status_changed(self, _message: TrainingStatusChanged) -> None:
        self.refresh_status()

    def on_screen_resume(self) -> None:
        # The screen is kept while hidden and its log follows the run (TrainingEventLogged), so coming
        # back only needs what changed: a different run (opened from the runs screen) is
        # redrawn, the same one keeps its log and scroll position.
        if self.session.training is not self._shown_log or len(self.session.training.lines) != self._shown_lines:
            self.redraw_all()
        else:
            self._dirty = True
            self._redraw_if_dirty()

    def redraw_all(self) -> None:
        log = self.session.training
        widget = self.query_one(RichLog)
        widget.clear()
        widget.auto_scroll = True
        for line in log.lines:
            widget.write(line)
        self._shown_log, self._shown_lines = log, len(log.lines)
        self._show_diagnosis()
        self._dirty = True
        self._redraw_if_dirty()

    def _follow_at_bottom(self, scroll_y: float) -> None:
        """New lines follow the log while the reader is at its bottom; scrolled up to read
        back, the log stays put until the reader returns to the bottom (End)."""
        widget = self.query_one(RichLog)
        widget.auto_scroll = scroll_y >= widget.max_scroll_y

    def _write_new_lines(self) -> None:
        """The lines the log gained since last shown. Messages wait in this screen's queue while the
        app goes on recording, so the log may hold more lines than the event in hand added: each
        is written once, however the messages and the redraws interleave."""
        log = self.session.training
        if log is not self._shown_log:
            return  # a log replaced meanwhile is drawn whole (TrainingLogReplaced, or on resume)
        widget = self.query_one(RichLog)
        for line in log.lines[self._shown_lines:]:
            widget.write(line)
        self._shown_lines = len(log.lines)

    def refresh_status(self) -> None:
        if not self.is_mounted:
            return
        self._dirty = True
        self._redraw_if_dirty()

    def _show_diagnosis(self) -> None:
        banner = self.query_one("#diagnosis", Static)
        diagnoses = self.session.training.diagnoses
        if not diagnoses:
            banner.display = False
            return
        last = diagnoses[-1]
        text = Text(f"{last.kind.upper()} at step {last.step}: ", style="bold")
        text.append(f"{last.message} ")
        text.append(last.advice, style="italic")
        banner.update(text)
        banner.display = True

    def _redraw_if_dirty(self) -> None:
        if not self._dirty or self.app.screen is not self:
            return
        self._dirty = False
        log = self.session.training
        status = Text(f"{log.status.upper()} ", style="bold")
        step = log.last_step
        if step:
            status.append(f"step {step.step}/{step.total_steps}  epoch {step.epoch:.2f}  loss {step.loss:.4f}  "
                          f"lr {step.lr:.1e}\n")
            figures = metrics_text(step.metrics)
            if figures:
                status.append(f"{figures}  ")
            if log.status == "stopping":
                # What the stop waits for, in place of the rate and ETA it makes moot.
                status.append(f"stopping: ends step {step.step + 1}, then saves a checkpoint",
                              style="yellow")
            else:
                status.append(f"{step.tokens_per_s:,.0f} tok/s  ")
                status.append(f"ETA {duration(step.eta_s)}  " if log.active else f"took {duration(step.elapsed_s)}  ")
                status.append(f"mem {step.peak_mem_gib:.2f} GiB")
        elif log.status == "idle":
            status.append("no run yet: s starts one with the current configuration")
        elif log.status == "stopping":
            status.append("stopping: waits for a first step, then saves a checkpoint",
                          style="yellow")
        elif log.active:
            resumed = log.started.start_step if log.started and log.status == "running" else (
                log.train_points[-1][0] if log.train_points else 0)
            status.append(f"resumed at step {resumed}: " if resumed else "")
            status.append("figures come with the first step")
        if log.best_val_loss is not None:
            status.append(f"  best val {log.best_val_loss:.4f}")
        if log.failed:
            status.append(f"\n{log.failed.reason}", style="bold red")
        # A fixed-height line: no need for a layout pass of the whole screen.
        self.query_one("#train-status", Static).update(status, layout=False)
        self.query_one(GpuUse).show(log.gpu_points)
        progress = self.query_one(ProgressBar)
        # Without a step count a bar pulses ("working"): right while a run prepares, not when idle.
        progress.display = bool(log.total_steps) or log.active
        progress.update(total=log.total_steps or None, progress=step.step if step else 0)
        # plotext redraws the whole chart in Python: only when there is something new on it.
        plotted = (len(log.train_points), len(log.val_points), len(log.rewards), log.total_steps)
        if log is not self._plotted_log or plotted != self._plotted:
            self._plotted_log, self._plotted = log, plotted
            self.query_one(LossPlot).show(log.train_points, log.val_points, log.total_steps)
            self._show_objective_curves()
            self.query_one(RewardPanel).show(log.rewards, log.total_steps)

    def _show_objective_curves(self) -> None:
        """The objective's rewards and margin beside the loss; hidden for a run that logs none (SFT).
        Accuracy is a share, on another scale: the status line shows it."""
        log = self.session.training
        plot = self.query_one("#objective-curves", CurvesPlot)
        series = [(METRIC_LABELS.get(name, name), points) for name, points in log.metric_points.items()
                  if name != "accuracy"]
        plot.display = bool(series)
        if series:
            plot.show("reward by step", series, log.total_steps)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        log = self.session.training
        if action == "start":
            return None if log.active else True
        if action == "stop":
            return True if log.status in ("preparing", "running") else None
        if action == "export":
            return True if log.finished and not log.active else None
        return True

    def action_start(self) -> None:
        log, config = self.session.training, self.session.config
        if log.status == "idle":
            self.ftui.start_training(config)
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.ftui.start_training(config)

        # The screen shows a run that has ended: s starts another one, which is worth a question.
        self.app.push_screen(ConfirmScreen(
            f"Start a new run of {config.name} ({config.model}, {config.method}, {config.dataset})? "
            f"The {log.status} run shown stays in Runs."), answered)

    def action_stop(self) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                self.ftui.stop_training()
                self.query_one(RichLog).write("stop requested: finishing the step and writing a checkpoint…")
                self.refresh_bindings()

        self.app.push_screen(ConfirmScreen("Stop training? A checkpoint is written; the run can be resumed."),
                             answered)

    def action_export(self) -> None:
        self.session.focus_run(self.session.training.run_dir)
        self.ftui.goto("export")
