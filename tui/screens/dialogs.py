"""Modal dialogs: each is a ModalScreen[T] that answers through dismiss()."""

from __future__ import annotations

from rich.markdown import Markdown as RichMarkdown
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from tui.widgets.footer import Footer


class ConfirmScreen(ModalScreen[bool]):
    """A yes/no question; y or Enter says yes, n or Escape says no."""

    BINDINGS = [
        Binding("y,enter", "answer(True)", "Yes", id="yes"),
        Binding("n,escape", "answer(False)", "No", id="no"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.question, id="question")
            yield Label("[b]y[/b] yes   [b]n[/b] no", classes="dim")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class PresetNameScreen(ModalScreen["tuple[str, str] | None"]):
    """Asks a name and a one-line description for a new preset file."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="cancel")]

    def __init__(self, taken: set[str]) -> None:
        super().__init__()
        self.taken = taken

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Save as a new preset (Enter in the last field saves)")
            yield Input(placeholder="name, e.g. my-docker", id="preset-name")
            yield Input(placeholder="one-line description", id="preset-description")
            yield Label("", id="preset-error", classes="error")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        name = self.query_one("#preset-name", Input).value.strip()
        description = self.query_one("#preset-description", Input).value.strip()
        if event.input.id == "preset-name" and name:
            self.query_one("#preset-description", Input).focus()
            return
        error = self._problem(name)
        if error:
            self.query_one("#preset-error", Label).update(error)
            self.query_one("#preset-name", Input).focus()
            return
        self.dismiss((name, description))

    def _problem(self, name: str) -> str | None:
        if not name:
            return "error: name: give the preset a name"
        if not all(c.isalnum() or c in "-_" for c in name):
            return "error: name: use letters, digits, - and _ only (it becomes the file name)"
        if name in self.taken or name == "models":
            return f"error: name: a preset called {name!r} exists; choose another name"
        return None

    def action_cancel(self) -> None:
        self.dismiss(None)


class HelpScreen(ModalScreen[None]):
    """The help for the screen underneath: what it is for and its keys.

    Plain Statics in a scrolling box: it opens in one frame and every key stays reachable at
    80x24 (a Markdown table widget took several frames and was cut off below the fifth key)."""

    BINDINGS = [Binding("escape,q,question_mark,f1", "close", "Close", id="close")]

    def __init__(self, title: str, text: str, keys: list[tuple[str, str]]) -> None:
        super().__init__()
        self.title_text = title
        self.text = text
        self.keys = keys

    def compose(self) -> ComposeResult:
        width = max((len(key) for key, _ in self.keys), default=0) + 2
        keys = Text()
        for key, description in self.keys:
            keys.append(f"{key:<{width}}", style="bold")
            keys.append(f"{description}\n")
        keys.rstrip()
        with VerticalScroll(classes="dialog help"):
            yield Static(Text(self.title_text, style="bold"), id="help-title")
            yield Static(RichMarkdown(self.text), id="help-text")
            yield Static(keys, id="help-keys")
        yield Footer()

    @property
    def source(self) -> str:
        """The help as plain text (title, text and one line per key)."""
        lines = [self.title_text, self.text, *(f"{key}  {description}" for key, description in self.keys)]
        return "\n".join(lines)

    def action_close(self) -> None:
        self.dismiss(None)
