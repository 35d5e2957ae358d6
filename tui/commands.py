"""The command palette (ctrl+p): every screen to go to, the work ftui does wherever you are (train,
stop, export, evaluate), and every key of the current screen, so anything the footer has no room
for can still be found by name."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider

if TYPE_CHECKING:
    from tui.app import FtuiApp

DESTINATIONS = {
    "home": "Home: hardware and recommendation",
    "presets": "Presets",
    "config": "Configure the run",
    "dataset": "Dataset check",
    "training": "Training",
    "export": "Export to GGUF",
    "chat": "Chat with a model",
    "runs": "Past runs",
    "sweep": "Sweep: variants overlaid and the one chosen",
}


TASKS = (
    ("Train: start a run with the configured settings", "training", "start"),
    ("Stop the run in training (at its next step, with a checkpoint)", "training", "stop"),
    ("Export the run to verified GGUF files", "export", "start"),
    ("Evaluate the run: base against tuned on held-out prompts", "chat", "evaluate"),
    ("Resume a past run", "runs", "resume"),
)
"""(command, screen, its action): the work a person looks for by name, from any screen."""
SYSTEM_ACTIONS = ("quit", "command_palette")
"""App keys the palette's own system commands already list."""


class ScreenCommands(Provider):
    def _commands(self) -> list[tuple[str, object, str]]:
        app = cast("FtuiApp", self.app)
        out: list[tuple[str, object, str]] = [
            (f"Go to: {label}", partial(app.goto, name), f"open the {name} screen")
            for name, label in DESTINATIONS.items()
        ]
        out += [(text, partial(_on_screen, app, name, action), f"on the {name} screen")
                for text, name, action in TASKS]
        screen = self.screen
        for active in screen.active_bindings.values():
            binding = active.binding
            if not binding.description or not active.enabled or binding.action.startswith(SYSTEM_ACTIONS):
                continue
            out.append((f"{binding.description} ({binding.key_display or binding.key})",
                        partial(screen.run_action, binding.action), "on this screen"))
        return out

    async def discover(self) -> Hits:
        for text, command, help_text in self._commands():
            yield DiscoveryHit(text, command, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for text, command, help_text in self._commands():
            score = matcher.match(text)
            if score > 0:
                yield Hit(score, matcher.highlight(text), command, help=help_text)


def _on_screen(app: FtuiApp, name: str, action: str) -> None:
    """Go to the screen, then press its key there once it is shown."""
    app.goto(name)
    app.call_after_refresh(app.run_action, f"screen.{action}")
