"""Export a trained run to GGUF: choose types, watch each stage, then the files, their
verification against the merged model, and the line that loads it into Ollama."""

from __future__ import annotations

import threading
from pathlib import Path
from shlex import quote

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Header, Static

from engine.config.schema import QUANT_TYPES
from engine.events import (
    ExportFailed,
    ExportFileWritten,
    ExportFinished,
    ExportStageStarted,
    ExportVerified,
    Progress,
)
from tui.messages import EngineEventReceived, WorkFailed
from tui.screens.base import FtuiScreen
from tui.widgets.footer import Footer
from tui.widgets.toggles import CheckList

QUANT_HINTS = {
    "F16": "16 bits a weight, lossless: the largest file",
    "BF16": "16 bits, lossless, for models trained in bf16",
    "Q8_0": "8.5 bits, near-lossless, about half of F16",
    "Q6_K": "6.6 bits, very close to Q8_0",
    "Q5_K_M": "5.7 bits, a small loss",
    "Q4_K_M": "4.8 bits, the usual size/quality trade-off",
}
"""What each GGUF type costs and keeps (llama.cpp's bits per weight), shown beside its name."""


def quant_prompt(quant: str) -> Text:
    text = Text(f"{quant:<8}", style="bold")
    text.append(QUANT_HINTS.get(quant, ""), style="dim")
    return text


def size_text(size_bytes: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size_bytes < 1024 or unit == "GiB":
            return f"{size_bytes:.0f} {unit}" if unit == "B" else f"{size_bytes:.1f} {unit}"
        size_bytes /= 1024  # type: ignore[assignment]
    return ""


def ollama_line(run_dir: str, modelfile: str) -> str:
    name = Path(run_dir).name.split("-", 4)[-1].lower() or "ftui-model"
    return f"ollama create {quote(name)} -f {quote(str(modelfile))}"


class ExportScreen(FtuiScreen):
    TITLE = "Export"
    DOCS = "docs/tui.md#export"
    HELP = ("Space toggles a GGUF type, x starts the export of the selected run: merge the adapter, "
            "convert to F16, quantize, then check each file against the merged model (same token "
            "ids, same next-token choices). y copies the `ollama create` line (works over SSH in "
            "terminals that allow OSC 52). c chats with the exported model. A run exported before shows "
            "its GGUFs, their verification and the ollama line at once. Unlike training, an export "
            "runs inside this ftui: quitting or losing the connection ends it, a file it was writing "
            "is never taken as finished, and x here starts it again.")
    BINDINGS = [
        Binding("x", "start", "Export", id="start"),
        Binding("y", "copy", "Copy ollama line", id="copy"),
        Binding("c", "chat", "Chat", id="chat"),
        Binding("ctrl+x", "cancel", "Cancel", id="cancel"),
    ]

    def compose(self) -> ComposeResult:
        quants = set(self.session.config.export_quants)
        yield Header()
        yield Static("", id="export-run")
        with VerticalScroll(id="export-body"):
            yield CheckList(*[(quant_prompt(q), q, q in quants) for q in QUANT_TYPES], id="quants", compact=True)
            yield Static("", id="export-stages")
            yield DataTable(id="export-files", cursor_type="row", zebra_stripes=False)
            yield Static("", id="export-verify")
            yield Static("", id="ollama", classes="card")
        yield Footer()

    def on_mount(self) -> None:
        self.exporting = False
        self.stop = threading.Event()
        self.stages: dict[str, str] = {}
        self.files: list[ExportFileWritten] = []
        self.checks: list[ExportVerified] = []
        self.modelfile: str | None = None
        self.ggufs: list[str] = []
        table = self.query_one(DataTable)
        table.add_columns("file", "kind", "size")
        table.display = False
        self.query_one("#ollama", Static).display = False
        run = self.session.run_focus.run_dir
        label = Text("Run: ", style="bold")
        label.append(run or "none: train a run first or choose one on the runs screen")
        self.query_one("#export-run", Static).update(label)
        self.query_one(CheckList).focus()
        if run:
            self._show_earlier_export(run)

    def _show_earlier_export(self, run_dir: str) -> None:
        """A run exported before: its GGUFs, whether they passed verification, and the ollama
        line, so that y and c work at once and x is needed only for other types."""
        try:
            info = self.ftui.backend.run_info(run_dir)
        except (OSError, ValueError):
            return
        if not info.ggufs:
            return
        self.ggufs = list(info.ggufs)
        table = self.query_one(DataTable)
        for gguf in info.ggufs:
            try:
                size = size_text(Path(gguf).stat().st_size)
            except OSError:
                size = "?"
            table.add_row(Path(gguf).name, "gguf", size)
        table.display = True
        focused = self.session.run_focus.gguf
        chosen: str = focused if focused is not None and focused in info.ggufs else info.ggufs[0]
        for modelfile in (Path(chosen).with_suffix(".Modelfile"), Path(chosen).parent / "Modelfile"):
            if modelfile.is_file():
                self.modelfile = str(modelfile)
                break
        verified = {"verified": "all passed verification", "failed": "one FAILED verification",
                    "unverified": "not verified (the export stopped before it)"}.get(info.export_status, "")
        done = Text(f"Exported before: {len(info.ggufs)} GGUF file(s) in {Path(chosen).parent}, {verified}. "
                    "y copies the ollama line, c chats, x exports again.",
                    style="bold red" if info.export_status == "failed" else "green")
        self.query_one("#export-stages", Static).update(done)
        self._show_ollama()
        self.refresh_bindings()

    def _show_ollama(self) -> None:
        if not self.modelfile:
            return
        line = ollama_line(self.session.run_focus.run_dir or "", self.modelfile)
        card = self.query_one("#ollama", Static)
        card.update(Text.assemble(("Load into Ollama:\n", "bold"), line))
        card.display = True
        self.ollama = line

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        exporting = getattr(self, "exporting", False)
        if action == "start":
            return None if exporting or not self.session.run_focus.run_dir else True
        if action == "cancel":
            return True if exporting else None
        if action == "copy":
            return True if getattr(self, "modelfile", None) else None
        if action == "chat":
            return True if getattr(self, "ggufs", None) else None
        return True

    def action_start(self) -> None:
        quants = tuple(self.query_one(CheckList).selected)
        if not quants:
            self.notify("Select at least one GGUF type (space toggles).", severity="warning")
            return
        self.exporting = True
        self.stop = threading.Event()
        self.stages.clear()
        self.files.clear()
        self.checks.clear()
        self.ggufs = []
        self.modelfile = None
        self.query_one("#ollama", Static).display = False
        self.query_one(DataTable).clear()
        self.refresh_bindings()
        self.run_export(self.session.run_focus.run_dir, quants)

    def action_cancel(self) -> None:
        self.stop.set()
        self.notify("Cancelling the export after the current stage…")

    @work(thread=True, exclusive=True, group="export", exit_on_error=False)
    def run_export(self, run_dir: str, quants: tuple[str, ...]) -> None:
        try:
            self.ftui.backend.export(run_dir, quants,
                                     lambda e: self.post_message(EngineEventReceived(e, "export")), self.stop)
        except Exception as exc:
            self.post_message(WorkFailed("export", f"{type(exc).__name__}: {exc}"))

    def on_engine_event_received(self, message: EngineEventReceived) -> None:
        event = message.event
        if isinstance(event, Progress):
            done = f"{event.done / event.total:.0%}" if event.total else f"{event.done:g} {event.unit}"
            self.stages[event.stage] = f"{done} {event.message}".strip()
            self._show_stages()
        elif isinstance(event, ExportStageStarted):
            label = f"{event.stage}: {event.detail}" if event.detail else event.stage
            self.stages["export"] = f"{event.index / event.total:.0%} {label}"
            if event.stage not in ("merge", "write", "done"):
                # quantize, modelfile and verify report only through the export's own stages.
                self.stages[event.stage] = event.detail
            self._show_stages()
        elif isinstance(event, ExportFileWritten):
            self.files.append(event)
            table = self.query_one(DataTable)
            table.display = True
            # Names only: the folder is on the result line, and full paths push size off 80 columns.
            table.add_row(Path(event.path).name, event.quant or event.kind, size_text(event.size_bytes))
            if event.kind == "modelfile":
                self.modelfile = event.path
            if event.kind == "gguf":
                self.ggufs.append(event.path)
        elif isinstance(event, ExportVerified):
            self.checks.append(event)
            self._show_checks()
        elif isinstance(event, ExportFinished):
            self._finish(Text(f"Export finished: {len(event.files)} files in {event.out_dir}", style="green"))
        elif isinstance(event, ExportFailed):
            self._finish(Text(f"Export failed: {event.reason} {event.advice}", style="bold red"))

    def on_work_failed(self, message: WorkFailed) -> None:
        self._finish(Text(f"Export failed: {message.error}", style="bold red"))

    def _finish(self, outcome: Text) -> None:
        self.exporting = False
        self.stages["result"] = outcome.plain
        stages = self.query_one("#export-stages", Static)
        text = self._stage_text()
        text.append_text(outcome)
        stages.update(text)
        self._show_ollama()
        if self.ggufs:
            self.session.focus_gguf(self._chat_gguf())
        # What the export ended with is at the bottom of the panel, below the fold at 80x24:
        # the line above the panel says so, and the panel scrolls down to it.
        summary = Text("Run: ", style="bold")
        summary.append(f"{self.session.run_focus.run_dir}\n")
        summary.append_text(outcome)
        if self.checks:
            passed = sum(c.passed for c in self.checks)
            summary.append(f"; verified {passed}/{len(self.checks)}" + (", y copies the ollama line" if self.modelfile
                                                                         else ""), style=outcome.style)
        self.query_one("#export-run", Static).update(summary)
        self.call_after_refresh(self.query_one("#export-body", VerticalScroll).scroll_end, animate=False)
        self.refresh_bindings()

    def _stage_text(self) -> Text:
        text = Text()
        for stage, state in self.stages.items():
            if stage != "result":
                text.append(f"{stage:<14}", style="bold")
                text.append(f"{state}\n")
        return text

    def _show_stages(self) -> None:
        self.query_one("#export-stages", Static).update(self._stage_text())

    def _show_checks(self) -> None:
        text = Text("Verification against the merged model\n", style="bold")
        for check in self.checks:
            text.append(f"{check.quant:<8}", style="bold")
            text.append("PASS " if check.passed else "FAIL ", style="green" if check.passed else "bold red")
            text.append(f"token ids {'match' if check.token_ids_match else 'DIFFER'}, "
                        f"argmax agreement {check.argmax_agreement:.1%}")
            if check.max_abs_logit_diff is not None:
                text.append(f", max logit diff {check.max_abs_logit_diff:.3f}")
            if check.stops_at_end_of_turn is not None:
                text.append(f", stops at end of turn: {'yes' if check.stops_at_end_of_turn else 'no'}")
            text.append("\n")
        text.rstrip()
        self.query_one("#export-verify", Static).update(text)

    def action_copy(self) -> None:
        self.app.copy_to_clipboard(self.ollama)
        self.notify(f"Copied: {self.ollama}")

    def action_chat(self) -> None:
        self.session.focus_gguf(self._chat_gguf())
        self.ftui.goto("chat")

    def _chat_gguf(self) -> str:
        """The file the run's Modelfile names, as Runs and `ftui chat RUN` choose it."""
        run_dir = self.session.run_focus.run_dir
        try:
            ggufs = self.ftui.backend.run_info(run_dir).ggufs if run_dir else ()
        except (ValueError, OSError):  # the run folder went away or was never a run
            ggufs = ()
        return ggufs[0] if ggufs else self.ggufs[-1]
