"""Past runs: status, best validation loss and what each left behind, with the actions on them."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Header, Static

from engine.config.schema import ConfigError
from engine.errors import ActionableError
from engine.runs import RunInfo
from tui.screens.base import FtuiScreen
from tui.screens.compare import CompareScreen
from tui.screens.dialogs import ConfirmScreen
from tui.training_log import TrainingLog
from tui.widgets.footer import Footer

STATUS_STYLE = {"finished": "green", "stopped": "yellow", "failed": "red", "running": "cyan"}


def artifact_names(run: RunInfo) -> list[str]:
    """What a user can act on: weights, the export folder and each GGUF by name."""
    return [a for a in run.artifacts if a != "tokenizer"] + [Path(g).name for g in run.ggufs]


def run_label(run: RunInfo) -> str:
    """The run's folder, which starts with the date and time it started (2026-12-01-1712-demo):
    two runs of one name are told apart by it. A sweep's runs are SWEEP-FOLDER/RUN."""
    folder = Path(run.path).name
    return f"{run.group}/{folder}" if run.group else folder


class RunsScreen(FtuiScreen):
    TITLE = "Runs"
    DOCS = "docs/tui.md#runs"
    HELP = ("Runs found in the output folder, newest first, each by its folder, which starts with the "
            "date and time the run started. Enter opens a run's charts and log "
            "(a run training now, even one started elsewhere, is followed live and x stops it); "
            "u resumes a stopped, failed or interrupted run from its last checkpoint; e exports it; "
            "c chats with its GGUF; d deletes the run folder after asking. A run is interrupted when "
            "its process died without a word (killed, machine down). m (or space) marks runs and v lays "
            "their loss curves over one another; with none marked, v compares every run of the sweep "
            "the cursor is on (a sweep's runs are listed as SWEEP-FOLDER/RUN). f5 reads the folder again; "
            "w opens the queue of runs waiting to train one after another.")
    BINDINGS = [
        Binding("enter", "open", "Open", id="open"),
        Binding("u", "resume", "Resume", id="resume"),
        Binding("e", "export", "Export", id="export"),
        Binding("c", "chat", "Chat", id="chat"),
        Binding("d", "delete", "Delete", id="delete"),
        Binding("m,space", "mark", "Mark", id="mark"),
        Binding("v", "compare", "Compare", id="compare"),
        # Off the footer, which has no room for it at 80 columns; the list reloads on every return anyway.
        Binding("f5", "reload", "Reload", id="reload", show=False),
        Binding("w", "queue", "Queue", id="queue", show=False),
    ]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="runs-note")
        yield DataTable(id="runs", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        self.runs: list[RunInfo] = []
        self.marked: set[str] = set()
        """Paths of the runs marked for comparison."""
        table = self.query_one(DataTable)
        table.add_column("", key="mark")
        table.add_columns("run", "status", "steps", "best val", "method", "artifacts")
        self.action_reload()
        table.focus()

    def on_screen_resume(self) -> None:
        self.action_reload()

    def action_reload(self) -> None:
        table = self.query_one(DataTable)
        was_on = self.current.path if self.is_mounted and self.runs and self.current else None
        table.clear()
        try:
            self.runs = self.ftui.backend.list_runs(self.session.config.output_dir)
        except (OSError, ValueError) as exc:
            self.runs = []
            self.query_one("#runs-note", Static).update(Text(f"Could not read the runs: {exc}", style="red"))
        self.marked &= {run.path for run in self.runs}
        for run in self.runs:
            best = f"{run.best_val_loss:.4f}" if run.best_val_loss is not None else "-"
            table.add_row(self._mark(run), Text(run_label(run)), Text(run.status, style=STATUS_STYLE.get(run.status, "")),
                          f"{run.step}/{run.total_steps}", best, run.method, ", ".join(artifact_names(run)) or "-",
                          key=run.path)
        # Back from Compare, Export or a run's screen the cursor stays on the run it was on, so
        # that Enter opens that run and not the newest.
        paths = [run.path for run in self.runs]
        if was_on in paths:
            table.move_cursor(row=paths.index(was_on), animate=False)
        if not self.runs:
            self.query_one("#runs-note", Static).update(
                f"No runs in {self.session.config.output_dir}/ yet: train one from the config screen" + self._queued())
        else:
            self.query_one("#runs-note", Static).update(f"{len(self.runs)} run(s) in {self.session.config.output_dir}/"
                                                        + self._queued())
        self.refresh_bindings()

    def _queued(self) -> str:
        """What the folder's queue holds that has not ended, for the note above the table."""
        try:
            queue = self.ftui.backend.queue(self.session.config.output_dir)
        except ActionableError as exc:
            return f"; its queue: {exc.reason}"
        if not queue.waiting and queue.running is None:
            return ""
        training = ", 1 training" if queue.running is not None else ""
        return f"; queue: {len(queue.waiting)} waiting{training} (w opens it)"

    def action_queue(self) -> None:
        self.ftui.goto("queue")

    @property
    def current(self) -> RunInfo | None:
        table = self.query_one(DataTable)
        if not self.runs or table.cursor_row is None or table.cursor_row >= len(self.runs):
            return None
        return self.runs[table.cursor_row]

    def on_data_table_row_highlighted(self, _event: DataTable.RowHighlighted) -> None:
        self.refresh_bindings()

    def on_data_table_row_selected(self, _event: DataTable.RowSelected) -> None:
        self.action_open()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if not self.is_mounted or action in ("back", "help", "reload"):
            return True
        run = self.current
        if action == "open":
            return run is not None or None
        if action == "delete":
            return (run is not None and not self._is_live(run) and run.status != "running") or None
        if action == "resume":
            return (run is not None and run.resumable and not self.session.training.active) or None
        if action == "export":
            return (run is not None and run.trained) or None
        if action == "chat":
            return (run is not None and bool(run.ggufs)) or None
        if action == "mark":
            return run is not None or None
        if action == "compare":
            return bool(self.compared()) or None
        return True

    def _mark(self, run: RunInfo) -> Text:
        # Text, not str: the table reads a str cell as markup, where "[x]" is a tag and vanishes.
        return Text("[x]" if run.path in self.marked else "[ ]")

    def compared(self) -> list[str]:
        """What v compares: the marked runs, or with none marked every run of the current run's sweep."""
        if self.marked:
            return [r.path for r in self.runs if r.path in self.marked]
        run = self.current
        if run is None or not run.group:
            return []
        return [r.path for r in self.runs if r.group == run.group]

    def action_mark(self) -> None:
        run = self.current
        if run is None:
            return
        self.marked ^= {run.path}
        self.query_one(DataTable).update_cell(run.path, "mark", self._mark(run))
        self.refresh_bindings()

    def action_compare(self) -> None:
        run_dirs = self.compared()
        if run_dirs:
            self.app.push_screen(CompareScreen(run_dirs))

    def _is_live(self, run: RunInfo) -> bool:
        return self.session.training.active and self.session.training.run_dir == run.path

    def action_open(self) -> None:
        run = self.current
        if run is None:
            return
        if self._is_live(run):
            self.ftui.goto("training")
            return
        if self.session.training.active:
            self.notify("A run is in progress; its screen shows that run.", severity="warning")
            return
        if run.status == "running":  # trained by another process: follow it
            self.session.focus_run(run.path)
            self.ftui.attach_run(run.path)
            return
        self.session.training = TrainingLog.replay(self.ftui.backend.run_events(run.path), run.status, run.path)
        self.session.focus_run(run.path, run.ggufs[0] if run.ggufs else None)
        self.ftui.goto("training")

    def action_resume(self) -> None:
        run = self.current
        if run is None:
            return
        try:
            config = self.ftui.backend.run_config(run.path)
        except ConfigError as exc:
            self.notify(f"Cannot resume: {exc}", severity="error", timeout=10)
            return
        self.session.choose_config(config, f"run {run.name}")
        self.ftui.start_training(config, resume=run.path)

    def action_export(self) -> None:
        run = self.current
        if run is not None:
            self.session.focus_run(run.path, run.ggufs[0] if run.ggufs else None)
            self.ftui.goto("export")

    def action_chat(self) -> None:
        run = self.current
        if run is not None and run.ggufs:
            self.session.focus_run(run.path, run.ggufs[0])
            self.ftui.goto("chat")

    def action_delete(self) -> None:
        run = self.current
        if run is None:
            return

        def answered(yes: bool | None) -> None:
            if not yes:
                return
            try:
                self.ftui.backend.delete_run(run.path)
            except (OSError, ValueError) as exc:
                self.notify(f"Could not delete {run.path}: {exc}", severity="error")
                return
            self.notify(f"Deleted {run.path}")
            self.action_reload()

        self.app.push_screen(ConfirmScreen(f"Delete {run.path} and everything in it?"), answered)
