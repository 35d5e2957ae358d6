"""Preset files, each with its description and whether it fits the memory found."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Header, OptionList, Static
from textual.widgets.option_list import Option

from engine.config.schema import ConfigError
from tui.screens.base import FtuiScreen
from tui.widgets.footer import Footer


def fit_label(peak_gib: float | None, budget: float | None, where: str) -> Text:
    if peak_gib is None:
        return Text("no estimate (model not in catalog)", style="dim")
    if budget is None:
        return Text(f"~{peak_gib:.1f} GiB", style="dim")
    if peak_gib <= budget:
        return Text(f"fits: ~{peak_gib:.1f} of {budget:.1f} GiB", style="green")
    return Text(f"does not fit: needs {peak_gib - budget:.1f} GiB more than the {budget:.1f} GiB {where}",
                style="bold red")


class PresetsScreen(FtuiScreen):
    TITLE = "Presets"
    DOCS = "docs/tui.md#presets"
    HELP = ("Preset files from presets/: plain TOML values laid over the current configuration. "
            "Arrows and Enter, or the preset's number, choose one; the form opens with it applied. "
            "The estimate uses the current model; a preset that names its own model uses that.")
    BINDINGS = [
        Binding("enter", "choose", "Choose", id="choose", show=True),
        *[Binding(str(n), f"choose_number({n})", f"Preset {n}", show=False) for n in range(1, 10)],
    ]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="presets-note")
        yield OptionList(id="presets")
        yield Static("", id="preset-detail", classes="card")
        yield Footer()

    def on_mount(self) -> None:
        self.presets: list[Any] = []
        try:
            self.presets = self.ftui.backend.presets()
        except ConfigError as exc:
            self.query_one("#presets-note", Static).update(Text(f"A preset file is broken:\n{exc}", style="red"))
        budget, where = self.session.memory_budget()
        options = []
        for number, preset in enumerate(self.presets, start=1):
            config = preset.apply(self.session.config)
            estimate = self.ftui.backend.estimate(config)
            label = Text(f"{number} ", style="bold")
            label.append(f"{preset.name:<12}", style="bold")
            label.append(f"{preset.description}\n   ")
            label.append(f"{config.model}, {config.method}: ")
            label.append_text(fit_label(self.session.memory_need(estimate), budget, where))
            options.append(Option(label, id=preset.name))
        option_list = self.query_one(OptionList)
        option_list.add_options(options)
        if budget is None:
            self.query_one("#presets-note", Static).update("Fit is not checked until the hardware probe finishes.")
        option_list.focus()
        if options:
            option_list.highlighted = 0

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        preset = self.presets[event.option_index]
        changed = ", ".join(f"{k}={v}" for k, v in preset.values.items() if k not in ("name", "dataset"))
        self.query_one("#preset-detail", Static).update(Text(f"{preset.path.name}: {changed}", style="dim"))

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.apply(event.option_index)

    def action_choose(self) -> None:
        highlighted = self.query_one(OptionList).highlighted
        if highlighted is not None:
            self.apply(highlighted)

    def action_choose_number(self, number: int) -> None:
        if 1 <= number <= len(self.presets):
            self.apply(number - 1)

    def apply(self, index: int) -> None:
        preset = self.presets[index]
        self.session.choose_config(preset.apply(self.session.config), f"preset {preset.name}")
        self.notify(f"Preset {preset.name} applied.")
        self.ftui.goto("config")
