"""What every ftui screen shares: Escape goes back, F1 (or ? where no text field has focus) shows
this screen's help. The footer shows F1: on screens with a text field, ? is typed into it (the
configuration form takes ? as help in its fields of numbers, lists and choices)."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from textual.binding import Binding
from textual.screen import Screen

from tui.screens.dialogs import HelpScreen

if TYPE_CHECKING:
    from tui.app import FtuiApp
    from tui.session import Host, Session


class FtuiScreen(Screen[None]):
    HELP = ""
    """Markdown shown by F1 (or `?`): what the screen is for, in the user's terms."""
    DOCS = "docs/tui.md"
    """The manual's section on this screen, named under the help (the docs/ of ftui's source)."""

    BINDINGS = [
        Binding("escape", "back", "Back", id="back"),
        Binding("f1,question_mark", "help", "Help", id="help", key_display="F1"),
    ]

    @property
    def ftui(self) -> Host:
        """The app's few members a screen may use (tui/session.py): mypy fails a screen that
        reaches further, and fails here when the app stops providing one."""
        app = cast("FtuiApp", self.app)
        return app

    @property
    def session(self) -> Session:
        """What the screens share: the config, the run in focus, the hardware, the run's log."""
        return self.ftui.session

    def action_back(self) -> None:
        if len(self.app.screen_stack) > 2:
            self.app.pop_screen()

    def action_help(self, first: str = "") -> None:
        """The help screen; `first` (Markdown) goes above the screen's own help."""
        keys = []
        for _key, active in self.active_bindings.items():
            # Keys kept off the footer for room (quit, reload, the doctor) still carry an id: listed here.
            if active.binding.show or active.binding.id:
                key = active.binding.key_display or active.binding.key
                if active.binding.id == "help":
                    key = "F1, ?"
                line = (key, active.binding.description)
                if line not in keys:  # one line for a binding with two keys (? and f1)
                    keys.append(line)
        self.app.push_screen(HelpScreen(self.title or type(self).__name__, first + self.HELP, keys, self.DOCS))
