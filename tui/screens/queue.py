"""The run queue of the output folder: what waits, what trains, what ended, and the keys to
reorder, cancel, pause and start it. The queue is the engine's file (engine/runqueue); its runner
is a process of its own, so the queue goes on after ftui closes."""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Header, Static

from engine.errors import ActionableError
from engine.runqueue.store import WAITING, Entry, Queue, runner_alive
from tui.screens.base import FtuiScreen
from tui.widgets.footer import Footer

STATUS_STYLE = {"queued": "cyan", "running": "bold cyan", "finished": "green", "stopped": "yellow",
                "failed": "red", "interrupted": "red", "cancelled": "dim"}
REFRESH_S = 2.0


class QueueScreen(FtuiScreen):
    TITLE = "Queue"
    DOCS = "docs/tui.md#queue"
    HELP = ("Runs queued to train one after another, unattended, in the output folder (ctrl+n on the "
            "config screen queues the form's run; `ftui queue add` queues from a terminal, a sweep too). "
            "A runner process trains them one at a time, each in a process of its own, and goes on after "
            "ftui closes or the SSH connection drops. A run that fails does not stop the rest. "
            "shift+up and shift+down (or K and J) move a waiting run earlier and later; x takes a waiting run off the queue, or stops the "
            "one training at its next step (with a checkpoint) and the queue goes on; p pauses the queue "
            "after the run training now; s starts the runner. The runs screen opens each run.")
    BINDINGS = [
        Binding("shift+up,K", "move(-1)", "Earlier", id="up", key_display="⇧↑"),
        Binding("shift+down,J", "move(1)", "Later", id="down", key_display="⇧↓"),
        Binding("x", "cancel", "Cancel", id="cancel"),
        Binding("p", "pause", "Pause", id="pause"),
        Binding("s", "start", "Start", id="start"),
    ]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="queue-note")
        yield DataTable(id="queue", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        self.queue = Queue(self.session.config.output_dir)
        table = self.query_one(DataTable)
        table.add_columns("#", "id", "status", "run", "result")
        self.reload()
        table.focus()
        self.set_interval(REFRESH_S, self.reload)

    def on_screen_resume(self) -> None:
        self.reload()

    def reload(self) -> None:
        table = self.query_one(DataTable)
        note = self.query_one("#queue-note", Static)
        was_on = self.current.id if self.current else None
        try:
            self.queue = self.ftui.backend.queue(self.session.config.output_dir)
        except ActionableError as exc:
            note.update(Text(f"{exc.reason}; {exc.advice}", style="red"))
            return
        table.clear()
        position = 0
        for entry in self.queue.entries:
            position += entry.status == WAITING
            result = entry.reason if entry.status != "running" else (entry.run_dir or "loading")
            table.add_row(str(position) if entry.status == WAITING else "", entry.id,
                          Text(entry.status, style=STATUS_STYLE.get(entry.status, "")), Text(entry.label),
                          Text(result), key=entry.id)
        ids = [e.id for e in self.queue.entries]
        if was_on in ids:
            table.move_cursor(row=ids.index(was_on), animate=False)
        note.update(self.summary())
        self.refresh_bindings()

    def summary(self) -> Text:
        queue = self.queue
        if not queue.entries:
            return Text(f"Nothing queued in {queue.folder}/: ctrl+n on the config screen queues a run.")
        said = f"{len(queue.waiting)} waiting in {queue.folder}/"
        if queue.running is not None:
            said += f", {queue.running.label} training"
        if queue.paused:
            return Text(f"{said}. Paused: {queue.paused}; s goes on.", style="yellow")
        if runner_alive(queue):
            return Text(f"{said}; the runner (pid {queue.runner_pid}) goes on after ftui closes.")
        return Text(f"{said}; no runner: s starts one." if queue.waiting else f"{said}.")

    @property
    def current(self) -> Entry | None:
        if not self.is_mounted or not self.queue.entries:
            return None
        row = self.query_one(DataTable).cursor_row
        return self.queue.entries[row] if row is not None and row < len(self.queue.entries) else None

    def on_data_table_row_highlighted(self, _event: DataTable.RowHighlighted) -> None:
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if not self.is_mounted or action in ("back", "help"):
            return True
        entry = self.current
        if action == "move":
            return (entry is not None and entry.status == WAITING) or None
        if action == "cancel":
            return (entry is not None and entry.status in (WAITING, "running")) or None
        if action == "pause":
            return (runner_alive(self.queue) and not self.queue.paused) or None
        if action == "start":
            return (bool(self.queue.waiting) and (bool(self.queue.paused) or not runner_alive(self.queue))) or None
        return True

    def action_move(self, by: int) -> None:
        entry = self.current
        if entry is None or entry.status != WAITING:
            return
        place = [e.id for e in self.queue.waiting].index(entry.id) + 1
        self._do(self.ftui.backend.queue_move, self.queue.folder, entry.id, max(1, place + by))

    def action_cancel(self) -> None:
        entry = self.current
        if entry is None:
            return
        if self._do(self.ftui.backend.queue_cancel, self.queue.folder, entry.id) and entry.status == "running":
            self.notify(f"Asked {entry.label} to stop after its step, with a checkpoint; the queue goes on.")

    def action_pause(self) -> None:
        if self._do(self.ftui.backend.queue_pause, self.queue.folder):
            self.notify("The queue starts no more runs after the one training now.")

    def action_start(self) -> None:
        if self._do(self.ftui.backend.queue_start, self.queue.folder):
            self.notify("The queue's runner trains the waiting runs one at a time.")

    def _do(self, change: Callable[..., object], *args: object) -> bool:
        try:
            change(*args)
        except (ActionableError, OSError) as exc:
            self.notify(str(exc), severity="error", timeout=10)
            return False
        self.reload()
        return True
