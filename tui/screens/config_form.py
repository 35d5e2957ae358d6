"""The configuration form: every RunConfig field, grouped, with its hint, checked as typed
against the engine's own schema, and a memory estimate that follows the fields it depends on."""

from __future__ import annotations

import dataclasses
from typing import Any

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widget import Widget
from textual.widgets import Header, Input, Label, Select, Static, Switch

from engine.config.ranges import RANGES
from engine.config.schema import ConfigError, Problem, RunConfig, field_docs, parse_set
from engine.errors import ActionableError
from engine.sweep import Variant
from tui.screens.base import FtuiScreen
from tui.screens.dialogs import PresetNameScreen, SweepDialog
from tui.widgets.bars import MemoryBar
from tui.widgets.footer import Footer
from tui.widgets.forecast_line import ForecastLine
from tui.widgets.toggles import TextSwitch

GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Model", ("name", "model", "method", "trust_remote_code")),
    ("Objective", ("objective", "dpo_beta", "dpo_loss", "dpo_sft_weight", "orpo_lambda")),
    ("GRPO", ("grpo_group_size", "grpo_max_completion_tokens", "grpo_temperature", "grpo_kl_beta",
              "grpo_clip_epsilon", "grpo_iterations", "grpo_guide", "rewards", "reward_format", "reward_file")),
    ("Data", ("dataset", "dataset_format", "max_seq_len", "packing", "system_prompt", "train_on_responses_only",
              "max_bad_share", "columns", "roles", "messages_field", "dataset_split")),
    ("LoRA", ("lora_r", "lora_alpha", "lora_dropout", "target_modules")),
    ("Optimisation", ("learning_rate", "batch_size", "grad_accum", "optimizer", "weight_decay", "max_grad_norm",
                      "precision", "gradient_checkpointing", "oom_retry", "seed")),
    ("GPUs", ("gpus", "strategy")),
    ("Schedule", ("epochs", "max_steps", "max_time", "scheduler", "warmup_ratio", "warmup_steps")),
    ("Evaluation", ("val_split", "eval_interval", "save_interval", "keep_checkpoints", "early_stopping_patience",
                    "report_to")),
    ("Retention", ("retention_mix", "retention_data", "retention_prompts")),
    ("Export", ("export_quants", "export_gguf", "output_dir")),
    ("Notifications", ("notify_url", "notify_command")),
)
CHOICES = {
    "objective": ("sft", "dpo", "orpo", "grpo"),
    "method": ("lora", "qlora", "dora", "full"),
    "dpo_loss": ("sigmoid", "ipo"),
    "dataset_format": ("auto", "alpaca", "sharegpt", "messages", "text", "prompt_completion", "preference"),
    "optimizer": ("adamw", "adamw_8bit", "paged_adamw_8bit"),
    "scheduler": ("cosine", "linear", "constant"),
    "strategy": ("auto", "ddp", "fsdp"),
    "precision": ("auto", "bf16", "fp32"),
}
ESTIMATE_FIELDS = {"model", "method", "batch_size", "max_seq_len", "gradient_checkpointing", "optimizer",
                   "lora_r", "target_modules", "gpus", "strategy"}


def field_kinds() -> dict[str, Any]:
    return {f.name: f.default for f in dataclasses.fields(RunConfig)}


def as_text(value: Any) -> str:
    if isinstance(value, tuple | list):
        return ", ".join(value)
    return str(value)


class ValueInput(Input):
    """A field of numbers or a list, where ? can never belong: it is left to the screen, as help
    on the field, instead of being typed into it and turning the field into an error."""

    def check_consume_key(self, key: str, character: str | None) -> bool:
        return character != "?" and super().check_consume_key(key, character)

    async def _on_key(self, event: events.Key) -> None:
        if event.character == "?":
            event.stop()
            event.prevent_default()
            await self.run_action("screen.field_help")
            return
        await super()._on_key(event)


class ConfigScreen(FtuiScreen):
    TITLE = "Configure"
    DOCS = "docs/tui.md#configure"
    HELP = ("Every setting of the run, grouped. The line under each field says what raising it does. "
            "Problems show under the field as you type (errors stop the run, warnings are advice); "
            "the banner at the top names the fields in error, and ctrl+t with an error says so and "
            "moves to the first of them. "
            "The bar at the top is the estimated peak memory against the memory found. "
            "Tab and shift+Tab move between fields; ctrl+s saves the form as a new preset file; ctrl+r "
            "sweeps a setting (the learning rate first): one run per value, curves overlaid, the best chosen; "
            "ctrl+n queues the run to train after those waiting, unattended (the queue screen).")
    BINDINGS = [
        Binding("ctrl+t", "train", "Train", id="train"),
        Binding("ctrl+o", "dataset", "Dataset", id="dataset"),
        Binding("ctrl+s", "save_preset", "Save preset", id="save"),
        Binding("ctrl+r", "sweep", "Sweep", id="sweep"),
        # Off the footer, full at 80 columns; F1 lists it, and the queue screen names it.
        Binding("ctrl+n", "queue", "Queue", id="queue", show=False),
        # ? is typed into a text field; a ValueInput (numbers, lists) leaves it to this binding.
        Binding("f1,question_mark", "field_help", "Help", id="help", key_display="F1"),
    ]

    def compose(self) -> ComposeResult:
        docs = field_docs()
        kinds = field_kinds()
        values = self.session.config.to_dict()
        yield Header()
        yield MemoryBar(id="memory")
        yield ForecastLine(id="forecast")
        yield Static("", id="form-status")
        with VerticalScroll(id="form"):
            for group, names in GROUPS:
                yield Label(group, classes="group")
                for name in names:
                    with Horizontal(classes="field-row"):
                        yield Label(name, classes="field-name")
                        yield self._widget(name, kinds[name], values[name])
                    yield Static(hint(name, docs), classes="hint")
                    yield Static("", id=f"problem-{name}", classes="problem")
        yield Footer()

    def _widget(self, name: str, default: Any, value: Any) -> Widget:
        wid = f"field-{name}"
        if name in CHOICES:
            return Select([(c, c) for c in CHOICES[name]], value=value, allow_blank=False, id=wid, compact=True)
        if isinstance(default, bool):
            return TextSwitch(value=bool(value), id=wid, animate=False)
        field_input = Input if isinstance(default, str) else ValueInput
        return field_input(as_text(value), id=wid, compact=True, select_on_focus=False)

    def on_mount(self) -> None:
        self.problems: list[Problem] = []
        self.config: RunConfig | None = self.session.config
        self.query_one("#form-status", Static).update(Text(f"From {self.session.config_source}", style="dim"))
        self.revalidate()
        self.query_one("#field-name").focus()

    def read_values(self) -> dict[str, Any]:
        kinds = field_kinds()
        out: dict[str, Any] = {}
        for name, default in kinds.items():
            widget = self.query_one(f"#field-{name}")
            if isinstance(widget, Select | Switch):
                out[name] = widget.value
            elif isinstance(default, str) or isinstance(default, tuple):
                out[name] = widget.value
            else:
                raw = widget.value.strip()
                out[name] = parse_set([f"{name}={raw}"])[name] if raw else raw
        return out

    def revalidate(self) -> None:
        try:
            config = RunConfig.from_dict(self.read_values(), source="the form")
            problems = config.check(self.ftui.backend.context_length(config.model))
        except ConfigError as exc:
            config, problems = None, exc.problems
        self.config = config if not any(p.level == "error" for p in problems) else None
        self.problems = problems
        by_field: dict[str, list[Problem]] = {}
        for problem in problems:
            by_field.setdefault(problem.field, []).append(problem)
        for name in field_kinds():
            text = Text()
            for problem in by_field.get(name, []):
                style = "bold red" if problem.level == "error" else "yellow"
                text.append(f"{problem.level}: {problem.message}\n", style=style)
            widget = self.query_one(f"#problem-{name}", Static)
            text.rstrip()
            widget.update(text)
            widget.display = bool(text)
        errors = self.errors()
        status = self.query_one("#form-status", Static)
        if errors:
            named = ", ".join(dict.fromkeys(p.field for p in errors))
            status.update(Text(f"{len(errors)} error{'s' if len(errors) > 1 else ''} in {named}: fix to train or "
                               "save (ctrl+t goes to the first)", style="bold red"))
        else:
            status.update(Text(f"Valid ({self.session.config_source}).", style="green"))
        if config is not None:
            self.show_estimate(config)
        else:
            self.query_one(ForecastLine).follow(None)
        self.refresh_bindings()

    def errors(self) -> list[Problem]:
        """The problems that stop a run, in the form's order from the top."""
        order = {name: i for i, name in enumerate(n for _, names in GROUPS for n in names)}
        errors = [p for p in self.problems if p.level == "error"]
        return sorted(errors, key=lambda p: order.get(p.field.split(".")[0].split("[")[0], len(order)))

    def show_estimate(self, config: RunConfig) -> None:
        estimate = self.ftui.backend.estimate(config)
        budget, where = self.session.memory_budget()
        self.query_one(MemoryBar).show(self.session.memory_need(estimate), budget, where)
        self.query_one(ForecastLine).follow(config)

    def on_input_changed(self, _event: Input.Changed) -> None:
        self.revalidate()

    def on_select_changed(self, _event: Select.Changed) -> None:
        self.revalidate()

    def on_switch_changed(self, _event: Switch.Changed) -> None:
        self.revalidate()

    def _commit(self, doing: str = "train") -> RunConfig | None:
        """The form's config made the app's, or None after saying why `doing` cannot start and
        moving to the first field in error (scrolled into view). ctrl+t and the others stay live
        with errors in the form so that pressing them explains instead of doing nothing."""
        if self.config is None:
            errors = self.errors()
            first = errors[0] if errors else None
            where = f" {first.field}: {first.message}" if first else ""
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            self.notify(f"Cannot {doing} yet, the form has an error:{where}{more}", severity="error")
            if first is not None:
                self._focus_field(first.field)
            return None
        if self.config != self.session.config:
            self.session.choose_config(self.config, "edited in the form")
        return self.config

    def action_field_help(self) -> None:
        """The screen's help with the focused field's hint first."""
        focused = self.focused
        name = (focused.id or "").removeprefix("field-") if focused is not None else ""
        self.action_help(f"**{name}**: {field_docs().get(name, '')}\n\n" if name in field_kinds() else "")

    def _focus_field(self, name: str) -> None:
        # A problem may name a part of a field ("columns.prompt"); its widget is the field's own.
        base = name.split(".")[0].split("[")[0]
        if base in field_kinds():
            self.query_one(f"#field-{base}").focus()

    def action_train(self) -> None:
        config = self._commit()
        if config is not None:
            self.ftui.start_training(config)

    def action_sweep(self) -> None:
        config = self._commit("start a sweep")
        if config is None:
            return

        def start(answer: tuple[list[Variant], bool] | None) -> None:
            if answer is not None:
                self.ftui.start_sweep(*answer)

        self.app.push_screen(SweepDialog(config), start)

    def action_queue(self) -> None:
        """Queue the run to train after those waiting, unattended (engine/runqueue)."""
        config = self._commit("queue the run")
        if config is None:
            return
        try:
            entry = self.ftui.backend.queue_add(config)
        except (ActionableError, OSError) as exc:
            self.notify(f"Could not queue the run: {exc}", severity="error", timeout=10)
            return
        self.notify(f"Queued {entry.label} ({entry.id}); it trains after the runs waiting before it.")
        self.ftui.goto("queue")

    def action_dataset(self) -> None:
        if self._commit("open the dataset") is not None:
            self.ftui.goto("dataset")

    def action_save_preset(self) -> None:
        config = self._commit("save a preset")
        if config is None:
            return
        taken = {p.name for p in self.ftui.backend.presets()}

        def save(answer: tuple[str, str] | None) -> None:
            if answer is None:
                return
            name, description = answer
            try:
                path = self.ftui.backend.save_preset(config.replace(name=name), name, description)
            except OSError as exc:
                self.notify(f"Could not save the preset: {exc}", severity="error")
                return
            self.session.choose_config(self.session.config, f"preset {name}")
            self.notify(f"Saved {path}")

        self.app.push_screen(PresetNameScreen(taken), save)

    def on_screen_resume(self) -> None:
        # The dataset screen may have changed the dataset path.
        if hasattr(self, "problems"):
            field = self.query_one("#field-dataset", Input)
            if field.value != self.session.config.dataset:
                field.value = self.session.config.dataset


def hint(name: str, docs: dict[str, str]) -> str:
    """The field's docstring, and its range and typical values where it has one (engine/config/ranges.py)."""
    allowed = RANGES.get(name)
    return f"{docs.get(name, '')} Range: {allowed.hint()}." if allowed else docs.get(name, "")
