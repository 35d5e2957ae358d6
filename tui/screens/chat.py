"""Chat with a GGUF model, streaming; compare mode puts the base model's answer beside it, from
the base exported at the tuned file's type (made once in a worker, then cached); a thinking
model's reasoning is folded away until ctrl+t shows it; and the held-out evaluation of the run
shows in place of the conversation: its progress while it runs, then a summary that stays
(scores, retention, collapse, the diagnosis) and the answers side by side, wrapped to the
screen's width."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Header, Input, Static

from engine.errors import ActionableError
from engine.events import Progress
from engine.infer.thinking import split_thinking
from tui.messages import (
    BaseGgufReady,
    ChatPieceReceived,
    ChatReplyFinished,
    EngineEventReceived,
    EvalFinished,
    WorkFailed,
)
from tui.screens.base import FtuiScreen
from tui.widgets.footer import Footer

if TYPE_CHECKING:
    from engine.eval.evaluate import EvalReport

SIDES = ("tuned", "base")


class ChatScreen(FtuiScreen):
    TITLE = "Chat"
    DOCS = "docs/tui.md#chat"
    HELP = ("Type a message and press Enter; the reply streams in. The GGUF field takes any GGUF "
            "file (the last export is filled in). ctrl+b compares: the same prompt goes to the base "
            "model too and both answers show side by side; the base is the untuned model at the fine-tuned "
            "file's type (Q8_0 beside Q8_0), exported once and cached (seconds for the demo model, minutes "
            "for billions of parameters). ctrl+t shows or hides a thinking model's reasoning (Qwen3's "
            "<think> block). ctrl+r clears the conversation. "
            "ctrl+g runs the held-out evaluation of the run (30 s to a few minutes): its progress, then the "
            "scores, what the run kept of the base model's general answers, and each held-out prompt with "
            "the base and tuned answers side by side, in place of the conversation; ctrl+l switches "
            "between the conversation and the evaluation. Chat and evaluation run "
            "inside this ftui and end with it (quitting, a lost connection); the conversation is not kept.")
    BINDINGS = [
        Binding("ctrl+b", "compare", "Compare", id="compare"),
        Binding("ctrl+t", "toggle_thinking", "Thinking", id="thinking"),
        Binding("ctrl+r", "reset", "Reset", id="reset"),
        Binding("ctrl+g", "evaluate", "Eval", id="evaluate"),
        Binding("ctrl+l", "toggle_eval", "Results", id="results"),
    ]

    def compose(self) -> ComposeResult:
        session = self.session
        yield Header()
        with Horizontal(classes="field-row"):
            yield Static("GGUF", classes="field-name short")
            yield Input(session.run_focus.gguf or "", placeholder="path to a .gguf file", id="gguf", compact=True)
        with Horizontal(classes="field-row", id="base-row"):
            yield Static("base GGUF", classes="field-name short")
            yield Input("", placeholder="the untuned model's .gguf (made for you)", id="base-gguf", compact=True)
        yield Static("", id="base-note")
        with Horizontal(classes="field-row"):
            yield Static("system", classes="field-name short")
            yield Input(session.config.system_prompt, placeholder="system prompt (optional)", id="system", compact=True)
        with Horizontal(id="transcripts"):
            for side in SIDES:
                with VerticalScroll(id=f"pane-{side}", classes="pane"):
                    yield Static("", id=f"transcript-{side}")
        with VerticalScroll(id="eval-view") as view:
            view.border_title = "Evaluation (ctrl+l: conversation)"
            yield Static("", id="eval-status")
            yield Static("", id="eval-results")
        yield Input(placeholder="message (Enter sends)", id="prompt")
        yield Footer()

    def on_mount(self) -> None:
        self.compare = False
        self.busy = False
        self.sessions: dict[tuple[str, str], Any] = {}
        self.turns: dict[str, list[tuple[str, str]]] = {side: [] for side in SIDES}
        self.show_thinking = False
        self.base_made_for = ""
        """The tuned GGUF the base file in the field was made to match ("" when none was made)."""
        for widget in ("#base-row", "#base-note", "#pane-base"):
            self.query_one(widget).display = False
        self.query_one("#eval-view").display = False
        self.evaluated = False
        """The evaluation view has something to show (running or done): ctrl+l can switch to it."""
        self.query_one("#prompt", Input).focus()
        self._show_side("tuned")

    def on_unmount(self) -> None:
        for session in self.sessions.values():
            session.close()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        busy = getattr(self, "busy", False)
        if action in ("reset", "compare") and busy:
            return None
        if action == "evaluate" and (busy or not self.session.run_focus.run_dir):
            return None
        if action == "toggle_eval" and not getattr(self, "evaluated", False):
            return None
        return True

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "prompt":
            self.query_one("#prompt", Input).focus()
            return
        text = event.value.strip()
        if not text or self.busy:
            return
        paths = {"tuned": self.query_one("#gguf", Input).value.strip()}
        if self.compare and self.making_base():
            self.notify("The base model's file is still being made: the fine-tuned model answers alone this time.")
        elif self.compare:
            paths["base"] = self.query_one("#base-gguf", Input).value.strip()
        missing = [side for side, path in paths.items() if not path]
        if missing:
            self.notify(f"Give a GGUF path for the {' and '.join(missing)} model first.", severity="error")
            return
        event.input.value = ""
        self._show_eval(False)
        for side in paths:
            self.turns[side].append(("you", text))
            self.turns[side].append(("model", ""))
            self._show_side(side)
        self.busy = True
        self.refresh_bindings()
        self.generate(text, paths, self.query_one("#system", Input).value)

    @work(thread=True, exclusive=True, group="chat", exit_on_error=False)
    def generate(self, text: str, paths: dict[str, str], system: str) -> None:
        # One side after the other: on a CPU two models at once only fight for the cores.
        for side, path in paths.items():
            try:
                session = self.sessions.get((path, system))
                if session is None:
                    session = self.ftui.backend.open_chat(path, system)
                    self.sessions[(path, system)] = session
                    for note in session.notes:
                        self.app.call_from_thread(self.notify, f"{Path(path).name}: {note}", timeout=10)
                for piece in session.send(text):
                    self.post_message(ChatPieceReceived(piece, side))
            except ActionableError as exc:  # a file llama.cpp cannot load: what is wrong and what to do
                self.post_message(ChatReplyFinished(side, str(exc)))
                continue
            except Exception as exc:
                self.post_message(ChatReplyFinished(side, f"unexpected error: {type(exc).__name__}: {exc}"))
                continue
            self.post_message(ChatReplyFinished(side, cut_at=session.max_tokens if session.cut_short else None))
        self.post_message(ChatReplyFinished("all"))

    def on_chat_piece_received(self, message: ChatPieceReceived) -> None:
        turns = self.turns[message.side]
        role, so_far = turns[-1]
        turns[-1] = (role, so_far + message.piece)
        self._show_side(message.side)

    def on_chat_reply_finished(self, message: ChatReplyFinished) -> None:
        if message.side == "all":
            self.busy = False
            self.refresh_bindings()
            return
        turns = self.turns[message.side]
        if message.error:
            turns[-1] = ("error", message.error)
        elif message.cut_at:
            turns.append(("cut", f"(cut at the {message.cut_at}-token limit: the model had not finished)"))
        self._show_side(message.side)

    def _show_side(self, side: str) -> None:
        text = Text()
        if self.compare:
            text.append("fine-tuned\n" if side == "tuned" else "base\n", style="bold underline")
        if side == "base" and not self.turns["base"] and self.turns["tuned"]:
            text.append("A new conversation: the base model answers from your next message on; the fine-tuned "
                        "side keeps its history (ctrl+r clears both).", style="dim")
        elif not self.turns[side]:
            text.append("No messages yet.", style="dim")
        for role, content in self.turns[side]:
            if role == "cut":
                text.append(f"{content}\n", style="dim italic")
                continue
            style = {"you": "bold cyan", "model": "bold green", "error": "bold red"}[role]
            text.append(f"{role}: ", style=style)
            if role == "model":
                self._append_reply(text, content)
            else:
                text.append(f"{content}\n")
        self.query_one(f"#transcript-{side}", Static).update(text)
        self.query_one(f"#pane-{side}", VerticalScroll).scroll_end(animate=False)

    def _append_reply(self, text: Text, reply: str) -> None:
        """A reply, its reasoning folded into one dim line unless ctrl+t shows it."""
        split = split_thinking(reply)
        if split.thinking or not split.thinking_done:
            if self.show_thinking:
                text.append(f"{split.thinking}\n", style="dim italic")
            else:
                state = "thought" if split.thinking_done else "thinking…"
                text.append(f"({state} {len(split.thinking.split())} words; ctrl+t shows them) ", style="dim italic")
            reply = split.answer
        text.append(f"{reply}\n")

    def action_toggle_thinking(self) -> None:
        self.show_thinking = not self.show_thinking
        for side in SIDES:
            self._show_side(side)
        self.notify("Reasoning shown." if self.show_thinking else "Reasoning folded away.")

    def action_compare(self) -> None:
        self.compare = not self.compare
        for widget in ("#base-row", "#base-note", "#pane-base"):
            self.query_one(widget).display = self.compare
        for side in SIDES:
            self._show_side(side)
        self.notify("Compare mode on: the base model answers too." if self.compare else "Compare mode off.")
        tuned = self.query_one("#gguf", Input).value.strip()
        base = self.query_one("#base-gguf", Input).value.strip()
        if self.compare and tuned and (not base or self.base_made_for not in ("", tuned)):
            self.base_made_for = tuned
            self._note_base(Text("Making the base model's file at the fine-tuned file's type (once, then cached)…",
                                 style="bold"))
            self.make_base(tuned)

    def making_base(self) -> bool:
        return any(w.group == "base" and not w.is_finished for w in self.workers)

    @work(thread=True, exclusive=True, group="base", exit_on_error=False)
    def make_base(self, tuned: str) -> None:
        session = self.session
        try:
            path, quant = self.ftui.backend.base_gguf_like(
                session.run_focus.run_dir, session.config.model if session.config else "", tuned,
                lambda e: self.post_message(EngineEventReceived(e, "base")))
        except ActionableError as exc:
            self.post_message(BaseGgufReady("", "", str(exc)))
        except Exception as exc:  # a bug: say so where the path would be, not in a toast that goes
            self.post_message(BaseGgufReady("", "", f"unexpected error: {type(exc).__name__}: {exc}"))
        else:
            self.post_message(BaseGgufReady(str(path), quant))

    def on_base_gguf_ready(self, message: BaseGgufReady) -> None:
        if message.error:
            self._note_base(Text(f"No base file: {message.error}. Type a base GGUF path above.", style="red"))
            return
        field = self.query_one("#base-gguf", Input)
        field.value = message.path
        # The field shows the end of the path, the file's name, not the start of the folder.
        field.cursor_position = 0
        field.call_after_refresh(field.action_end)
        self._note_base(Text(f"base model at {message.quant}, the fine-tuned file's type (exported once, then "
                             "cached)", style="dim"))

    def _note_base(self, note: Text) -> None:
        self.query_one("#base-note", Static).update(note)

    def action_reset(self) -> None:
        for session in self.sessions.values():
            session.reset()
        self.turns = {side: [] for side in SIDES}
        for side in SIDES:
            self._show_side(side)

    def _show_eval(self, shown: bool) -> None:
        """The evaluation in place of the conversation, or the conversation back."""
        self.query_one("#eval-view").display = shown
        self.query_one("#transcripts").display = not shown

    def action_toggle_eval(self) -> None:
        self._show_eval(not self.query_one("#eval-view").display)

    def action_evaluate(self) -> None:
        self.busy = True
        self.evaluated = True
        self.refresh_bindings()
        self.query_one("#eval-status", Static).update(
            Text("Evaluating the held-out examples: starting (30 s to a few minutes)…", style="bold"))
        self.query_one("#eval-results", Static).update("")
        self._show_eval(True)
        self.evaluate(self.session.run_focus.run_dir)

    @work(thread=True, exclusive=True, group="eval", exit_on_error=False)
    def evaluate(self, run_dir: str) -> None:
        try:
            report = self.ftui.backend.evaluate(run_dir, lambda e: self.post_message(EngineEventReceived(e, "eval")))
        except Exception as exc:  # a bug, not a run that cannot be evaluated: still end the busy state
            self.post_message(WorkFailed("eval", f"unexpected error: {type(exc).__name__}: {exc}"))
            return
        if report.failure:
            advice = f" {report.failure.advice}" if report.failure.advice else ""
            self.post_message(WorkFailed("eval", report.failure.reason + advice))
            return
        self.post_message(EvalFinished(report))

    def on_engine_event_received(self, message: EngineEventReceived) -> None:
        event = message.event
        if message.origin == "base" and isinstance(event, Progress):
            self._note_base(Text(f"Making the base model's file: {_progress(event)}…", style="bold"))
            return
        if message.origin != "eval" or not isinstance(event, Progress) or not self.busy:
            return
        self.query_one("#eval-status", Static).update(
            Text(f"Evaluating the held-out examples: {_progress(event)}…", style="bold"))

    def on_eval_finished(self, message: EvalFinished) -> None:
        self.busy = False
        report = message.report
        self.query_one("#eval-status", Static).update(render_eval_summary(report))
        self.query_one("#eval-results", Static).update(render_eval_items(report))
        self._show_eval(True)
        self.query_one("#eval-view", VerticalScroll).scroll_home(animate=False)
        self.refresh_bindings()

    def on_work_failed(self, message: WorkFailed) -> None:
        self.busy = False
        self.query_one("#eval-status", Static).update(Text(f"Evaluation failed: {message.error}", style="bold red"))
        self._show_eval(True)
        self.refresh_bindings()


def render_eval_summary(report: EvalReport) -> Text:
    """The figures one to a line, and each diagnosis with its advice, to read while the answers scroll."""
    text = Text("Evaluation of the held-out examples\n", style="bold")
    for line in eval_summary(report).split("; "):
        if line:
            text.append(f"  {line}\n")
    r = report.retention
    for finding in r.findings if r is not None else ():
        text.append(f"  {finding.kind}: ", style="bold red")
        text.append(f"{finding.message}\n")
        text.append(f"    what to do: {finding.advice}\n")
    if r is not None and not r.findings:
        text.append("  no forgetting or collapse found\n", style="green")
    if report.skipped:
        text.append(f"  {len(report.skipped)} eval-file line(s) skipped: {report.skipped[0]}\n", style="yellow")
    text.rstrip()
    return text


def render_eval_items(report: EvalReport) -> Table | Group:
    """Each held-out prompt with its expected answer and both models' answers, wrapped in columns."""
    if not report.items:
        return Group(Text("No held-out prompts with an expected answer to show.", style="dim"))
    table = Table(expand=True, show_lines=True, padding=(0, 1))
    table.add_column("prompt", ratio=3)
    table.add_column("expected", ratio=2, min_width=8)
    table.add_column("base", ratio=3)
    table.add_column("tuned", ratio=3)
    for item in report.items:
        table.add_row(item.prompt, item.expected, _mark(item.base_reply, item.base_hit),
                      _mark(item.tuned_reply, item.tuned_hit))
    return table


def eval_summary(report: EvalReport) -> str:
    """Scores and losses, base vs tuned, in one line."""
    parts = []
    if report.tuned_score is not None:
        base = f"{report.base_score:.0%}" if report.base_score is not None else "-"
        parts.append(f"expected answer found: tuned {report.tuned_score:.0%}, base {base}")
    if report.tuned_val_loss is not None:
        base_loss = f"{report.base_val_loss:.3f}" if report.base_val_loss is not None else "-"
        parts.append(f"validation loss: tuned {report.tuned_val_loss:.3f}, base {base_loss} "
                     f"({report.val_examples} examples)")
    r = report.retention
    if r is not None:
        if r.exact.share is not None:
            parts.append(f"retention: keeps {r.exact.tuned_kept}/{r.exact.base_right} general answers "
                         f"({r.exact.share:.0%})")
        parts.append(f"collapse: base {r.base_collapse:.0%}, tuned {r.tuned_collapse:.0%}")
    return "; ".join(parts)


def _mark(reply: str, hit: bool) -> str:
    return f"{'✓' if hit else '✗'} {reply.strip()}"



def _progress(event: Progress) -> str:
    """What a progress event says is being done, with its count where it has one."""
    count = f" {event.done:g}/{event.total:g} {event.unit}".rstrip() if event.total else ""
    return f"{event.message or event.stage}{count}"
