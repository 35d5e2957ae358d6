"""Modal dialogs: each is a ModalScreen[T] that answers through dismiss()."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.markdown import Markdown as RichMarkdown
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from engine.config.schema import ConfigError, Problem, RunConfig
from engine.sweep import expand, parse_grid, suggested_rates
from tui.widgets.footer import Footer
from tui.widgets.toggles import TextSwitch

if TYPE_CHECKING:
    from engine.sweep import Variant


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


class SweepDialog(ModalScreen["tuple[list[Variant], bool] | None"]):
    """Asks the setting to sweep and its values (as `ftui sweep --set KEY=V1,V2,...` takes them)
    and answers the variants, checked against the schema, and whether to measure retention."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="cancel")]

    def __init__(self, config: RunConfig) -> None:
        super().__init__()
        self.config = config

    def compose(self) -> ComposeResult:
        rates = ", ".join(f"{r:g}" for r in suggested_rates(self.config))
        with Vertical(classes="dialog"):
            yield Static("Sweep: train this config once per value, one after another, overlay the "
                         "curves and choose the variant by validation loss (and retention when measured).")
            with Horizontal(classes="field-row"):
                yield Label("setting", classes="field-name short")
                yield Input("learning_rate", placeholder="e.g. learning_rate", id="sweep-field", compact=True,
                            select_on_focus=False)
            with Horizontal(classes="field-row"):
                yield Label("values", classes="field-name short")
                yield Input(rates, placeholder="comma-separated, e.g. 1e-5, 5e-5, 2e-4", id="sweep-values",
                            compact=True, select_on_focus=False)
            with Horizontal(classes="field-row"):
                yield Label("retention", classes="field-name short")
                yield TextSwitch(value=False, id="sweep-retention", animate=False)
                yield Label("export and score each variant (slower)", classes="dim")
            yield Static("", id="sweep-error", classes="error")
            yield Label("[b]Enter[/b] start   [b]Esc[/b] cancel", classes="dim")

    def on_mount(self) -> None:
        self.query_one("#sweep-values", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "sweep-field":
            self.query_one("#sweep-values", Input).focus()
            return
        try:
            variants = self.variants()
        except ConfigError as exc:
            self.query_one("#sweep-error", Static).update(str(exc))
            return
        self.dismiss((variants, self.query_one("#sweep-retention", TextSwitch).value))

    def variants(self) -> list[Variant]:
        """The variants the fields ask for; ConfigError says what is wrong with them."""
        name = self.query_one("#sweep-field", Input).value.strip()
        values = self.query_one("#sweep-values", Input).value.strip()
        if not name or "=" in name or "," in name:
            raise ConfigError([Problem("setting", "name one setting of the config form, e.g. learning_rate")])
        _, grid = parse_grid([f"{name}={values}"])
        if len(grid.get(name, ())) < 2:
            raise ConfigError([Problem(name, "give two or more values, comma-separated, e.g. 1e-5, 5e-5, 2e-4")])
        return expand(self.config, grid)

    def action_cancel(self) -> None:
        self.dismiss(None)


class HelpScreen(ModalScreen[None]):
    """The help for the screen underneath: what it is for and its keys.

    Plain Statics in a scrolling box: it opens in one frame and every key stays reachable at
    80x24 (a Markdown table widget took several frames and was cut off below the fifth key)."""

    BINDINGS = [
        Binding("escape,q,question_mark,f1", "close", "Close", id="close"),
        # The box has the focus and scrolls with the arrows and page keys itself (its bindings are
        # not shown); this binding adds space and says in the footer that the help scrolls.
        Binding("space", "page_down", "Scroll", id="scroll", key_display="↑↓ PgUp PgDn"),
    ]

    def __init__(self, title: str, text: str, keys: list[tuple[str, str]], docs: str = "") -> None:
        super().__init__()
        self.title_text = title
        self.text = text
        self.keys = keys
        self.docs = docs

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
            if self.docs:
                yield Static(Text(f"Manual: {self.docs}", style="dim"), id="help-docs")
        yield Footer()

    @property
    def source(self) -> str:
        """The help as plain text (title, text, one line per key and the manual's section)."""
        lines = [self.title_text, self.text, *(f"{key}  {description}" for key, description in self.keys)]
        return "\n".join([*lines, f"Manual: {self.docs}"] if self.docs else lines)

    def on_mount(self) -> None:
        self.query_one(VerticalScroll).focus()

    def action_page_down(self) -> None:
        self.query_one(VerticalScroll).scroll_page_down(animate=False)

    def action_close(self) -> None:
        self.dismiss(None)


STATUS_STYLES = {"ok": "green", "warn": "bold yellow", "error": "bold red"}


def render_checks(report: Any, error: str | None, running: bool) -> Group:
    """Each of the doctor's checks: its status in words, what was found, and the fix for a problem,
    in a grid so that wrapped lines keep their indent."""
    parts: list[Any] = []
    if error:
        parts.append(Text(f"The checks could not run: {error}\n", style="bold red"))
    if report is None:
        parts.append(Text("Checking this install…" if running else "Not checked yet.", style="italic"))
        return Group(*parts)
    if running and report.decoded:
        parts.append(Text("Checking again…\n", style="italic"))
    grid = Table.grid(padding=(0, 1))
    grid.add_column(width=5, no_wrap=True)
    grid.add_column(ratio=1)
    for check in report.checks:
        found = Text.assemble((check.name, "bold"), "  ", check.detail)
        if check.fix:
            found.append(f"\nfix: {check.fix}", style="italic")
        grid.add_row(Text(check.status, style=STATUS_STYLES.get(check.status, "")), found)
    if running and not report.decoded:
        grid.add_row(Text("…", style="dim"), Text.assemble(("llama.cpp decode", "bold"), (
            "  decoding the embedded model in a child process (a few seconds)", "dim")))
    parts.append(grid)
    return Group(*parts)


class DoctorScreen(ModalScreen[None]):
    """The install's checks (ftui doctor) in detail. The home screen runs them and calls `show`
    when a pass lands; r asks it for another pass through `rerun`."""

    BINDINGS = [
        Binding("escape,k", "close", "Close", id="close"),
        Binding("r", "rerun", "Check again", id="rerun"),
    ]

    def __init__(self, report: Any, error: str | None, running: bool, rerun: Callable[[], None]) -> None:
        super().__init__()
        self.report = report
        self.error = error
        self.running = running
        self.rerun = rerun

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog doctor", id="doctor-scroll"):
            yield Static(Text("This install, checked (ftui doctor)", style="bold"), id="doctor-title")
            yield Static(render_checks(self.report, self.error, self.running), id="doctor-checks")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#doctor-scroll").focus()

    def show(self, report: Any, error: str | None, running: bool) -> None:
        self.report, self.error, self.running = report, error, running
        self.query_one("#doctor-checks", Static).update(render_checks(report, error, running))

    def action_rerun(self) -> None:
        if not self.running:
            self.rerun()
            self.show(self.report, None, True)

    def action_close(self) -> None:
        self.dismiss(None)
