"""The dataset check: format, counts, problems by line, what is trained, and how long examples are."""

from __future__ import annotations

import os
import re
from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.suggester import Suggester
from textual.widgets import Header, Input, Static

from engine.config.schema import ConfigError
from engine.data import DataReport
from engine.events import Progress
from tui.messages import DatasetChecked, EngineEventReceived, WorkFailed
from tui.screens.base import FtuiScreen
from tui.widgets.footer import Footer
from tui.widgets.length_histogram import LengthHistogram

DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet", ".txt")
MAX_PROBLEMS_SHOWN = 20


def _hub_id(text: str) -> bool:
    """`owner/name` and nothing more, as a Hugging Face hub dataset id is written; not a file name."""
    return re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", text) is not None and Path(text).suffix not in DATA_SUFFIXES


class PathSuggester(Suggester):
    """Completes the path typed so far to the first matching folder or data file (right arrow accepts)."""

    def __init__(self) -> None:
        super().__init__(use_cache=False, case_sensitive=True)

    async def get_suggestion(self, value: str) -> str | None:
        if not value:
            return None
        expanded = os.path.expanduser(value)
        folder, prefix = os.path.split(expanded)
        try:
            names = sorted(os.listdir(folder or "."))
        except OSError:
            return None
        for name in names:
            if not name.startswith(prefix) or name == prefix or name.startswith("."):
                continue
            full = os.path.join(folder, name)
            if os.path.isdir(full):
                return value + name[len(prefix):] + "/"
            if name.endswith(DATA_SUFFIXES):
                return value + name[len(prefix):]
        return None


def render_summary(summary: DataReport) -> Text:
    text = Text(f"{summary.path}\n", style="bold")
    text.append(f"format {summary.format}, {summary.rows} rows, {summary.usable_rows} usable")
    bad = summary.rows - summary.usable_rows
    if bad:
        text.append(f", {bad} skipped", style="yellow")
    if summary.percentiles:
        pct = summary.percentiles
        text.append(f"\ntokens: median {pct['p50']}, p95 {pct['p95']}, longest {pct['max']}; ")
        style = "yellow" if summary.over_length else "green"
        text.append(f"{summary.over_length} over max_seq_len {summary.max_seq_len} (truncated)", style=style)
    return text


def render_problems(summary: DataReport) -> Text:
    if not summary.problems:
        return Text("No problems found.", style="green")
    text = Text(f"{len(summary.problems)} problem(s):\n", style="bold yellow")
    for problem in summary.problems[:MAX_PROBLEMS_SHOWN]:
        text.append(f"  {problem}\n")
    if len(summary.problems) > MAX_PROBLEMS_SHOWN:
        text.append(f"  … and {len(summary.problems) - MAX_PROBLEMS_SHOWN} more (ftui data check lists all)\n")
    text.rstrip()
    return text


def render_sample(summary: DataReport) -> Text:
    text = Text("Sample as the model sees it (", style="bold")
    text.append("trained", style="reverse green")
    text.append(" / not trained):\n", style="bold")
    for segment in summary.sample:
        span, trained = segment.text, segment.trained
        # Reverse video as well as colour, so the trained part reads in 16 colours and monochrome.
        text.append(span, style="reverse green" if trained else "dim")
    return text


class DatasetScreen(FtuiScreen):
    TITLE = "Dataset"
    DOCS = "docs/tui.md#dataset"
    HELP = ("Type a data file path (right arrow accepts the completion) and press Enter to check it "
            "with the model's tokenizer and chat template. A file that checks out becomes the run's "
            "dataset. The sample shows which tokens carry the loss; the histogram shows how many "
            "examples the max_seq_len cut-off truncates. ctrl+t trains on the run's dataset, the "
            "last file that checked out (or the preset's), also after a file that was refused; "
            "training checks it again before the first step.")
    BINDINGS = [
        Binding("ctrl+t", "train", "Train", id="train"),
        Binding("ctrl+o", "app.goto('config')", "Config", id="config"),
    ]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(self.session.config.dataset, placeholder="path to .jsonl/.json/.csv/.parquet",
                    suggester=PathSuggester(), id="path", select_on_focus=False)
        with VerticalScroll(id="dataset-body"):
            yield Static(self._run_dataset_note("Enter checks the file typed above."), id="dataset-status")
            yield Static("", id="dataset-summary")
            yield Static("", id="dataset-problems")
            yield LengthHistogram(id="histogram")
            yield Static("", id="dataset-sample", classes="card")
        yield Footer()

    def on_mount(self) -> None:
        self.summary: DataReport | None = None
        self.checking = False
        self.query_one("#dataset-sample", Static).display = False
        self.query_one("#histogram").display = False
        self.query_one("#path", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        path = event.value.strip()
        if not path:
            return
        try:
            config = self.session.config.replace(dataset=os.path.expanduser(path))
        except ConfigError as exc:
            self._show_error(str(exc))
            return
        if not Path(config.dataset).exists() and not _hub_id(path):
            self._show_error(f"There is no file {path}. Check the spelling and the folder; the right arrow "
                             "completes names as you type. A dataset on the Hugging Face hub is written owner/name.")
            return
        self._clear_report()
        self.checking = True
        self.refresh_bindings()
        self.query_one("#dataset-status", Static).update("Checking… (the first check loads the tokenizer)")
        self.check(config)

    @work(thread=True, exclusive=True, group="dataset", exit_on_error=False)
    def check(self, config) -> None:  # noqa: ANN001
        try:
            summary = self.ftui.backend.check_dataset(
                config, on_event=lambda e: self.post_message(EngineEventReceived(e, "dataset")))
        except Exception as exc:
            reason = exc.args[0] if exc.args else exc
            if isinstance(reason, list):
                reason = "\n".join(str(p) for p in reason)
            self.post_message(WorkFailed("dataset", f"{type(exc).__name__}: {reason}"))
            return
        self.post_message(DatasetChecked(summary))

    def on_engine_event_received(self, message: EngineEventReceived) -> None:
        event = message.event
        if isinstance(event, Progress):
            total = f"/{event.total:g}" if event.total else ""
            self.query_one("#dataset-status", Static).update(f"{event.stage}: {event.done:g}{total} {event.unit}")

    def _clear_report(self) -> None:
        """Forget the last file's report, so that nothing on screen describes a file not asked about."""
        self.summary = None
        for name in ("#dataset-summary", "#dataset-problems", "#dataset-sample"):
            self.query_one(name, Static).update("")
        self.query_one("#dataset-sample").display = False
        self.query_one(LengthHistogram).display = False
        self.query_one("#dataset-body", VerticalScroll).scroll_home(animate=False)

    def _show_error(self, error: str) -> None:
        """The error alone, at the top where the eye is, with the file training would use."""
        self._clear_report()
        self.query_one("#dataset-status", Static).update(self._run_dataset_note(error, "bold red"))

    def on_work_failed(self, message: WorkFailed) -> None:
        self.checking = False
        self.refresh_bindings()
        self._show_error(f"Check failed: {message.error}")

    def on_dataset_checked(self, message: DatasetChecked) -> None:
        self.checking = False
        summary: DataReport = message.summary
        self.summary = summary
        status = self.query_one("#dataset-status", Static)
        if summary.refusal:
            status.update(self._run_dataset_note(f"Training would refuse this file: {summary.refusal}", "bold red"))
        elif summary.usable_rows:
            self.session.choose_config(self.session.config.replace(dataset=summary.path),
                                    f"{self.session.config_source}, dataset {Path(summary.path).name}")
            status.update(Text("Checked: this file is the run's dataset now.", style="green"))
        else:
            status.update(self._run_dataset_note("No usable rows: this file cannot be trained on.", "bold red"))
        self.query_one("#dataset-summary", Static).update(render_summary(summary))
        self.query_one("#dataset-problems", Static).update(render_problems(summary))
        sample = self.query_one("#dataset-sample", Static)
        sample.update(render_sample(summary) if summary.sample else "")
        sample.display = bool(summary.sample)  # an empty card is a box with nothing in it
        histogram = self.query_one(LengthHistogram)
        histogram.display = bool(summary.lengths)
        histogram.show(summary.lengths, summary.max_seq_len or self.session.config.max_seq_len)
        self.refresh_bindings()

    def _run_dataset_note(self, first: str, style: str = "") -> Text:
        """`first`, then which file ctrl+t trains on: the run's dataset, whatever this screen shows."""
        text = Text(first, style=style)
        text.append(f"\nThe run's dataset: {self.session.config.dataset} (ctrl+t trains on it).", style="")
        return text

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # The run always has a dataset (the last file that checked out, or the preset's), and
        # training checks it again before its first step: only a check in progress holds ctrl+t.
        if action == "train" and getattr(self, "checking", False):
            return None
        return True

    def action_train(self) -> None:
        self.ftui.start_training(self.session.config)
