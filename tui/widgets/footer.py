"""Textual's Footer, recomposed only when the keys it shows change.

Textual's Footer rebuilds all its keys (a dozen widgets, each styled and mounted) every time
the screen signals that bindings may have changed: on every focus move, every screen push or
pop, and once per signal even when several arrive before the next frame. With screens kept
alive between visits (the training screen is), almost every one of those rebuilds draws the
same keys again, and it is the largest cost of switching screens. This Footer waits for the
signals of one frame to settle, compares what it would show with what it shows, and rebuilds
only on a difference.

Below 120 columns it is compact (one space between keys instead of two), so that every key
of the busiest screen fits in 80 columns.
"""

from __future__ import annotations

from textual.screen import Screen
from textual.widgets import Footer as TextualFooter

WIDE = 120
"""The app's -wide breakpoint (FtuiApp.HORIZONTAL_BREAKPOINTS)."""


class Footer(TextualFooter):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._shown: tuple[object, ...] | None = None
        self._check_pending = False
        self.compact = self.app.size.width < WIDE

    def on_resize(self) -> None:
        self.compact = self.app.size.width < WIDE

    def _keys(self) -> tuple[object, ...]:
        """What compose would draw: each shown binding with its state, and the palette key."""
        shown = tuple(
            (binding.key, binding.action, binding.description, self.app.get_key_display(binding), enabled,
             tooltip, binding.group)
            for (_, binding, enabled, tooltip) in self.screen.active_bindings.values()
            if binding.show
        )
        return shown, self.compact, self.show_command_palette, self.app.ENABLE_COMMAND_PALETTE

    def compose(self):
        if self._bindings_ready:
            self._shown = self._keys()
        yield from super().compose()

    def bindings_changed(self, screen: Screen) -> None:
        self._bindings_ready = True
        if not screen.app.app_focus:
            return
        if self.is_attached and screen is self.screen and not self._check_pending:
            self._check_pending = True
            self.call_after_refresh(self._recompose_if_changed)

    async def _recompose_if_changed(self) -> None:
        self._check_pending = False
        if not self.is_attached or self._pruning or self._keys() == self._shown:
            return
        await self.recompose()
