"""Textual's Footer, recomposed only when the keys it shows change.

Textual's Footer rebuilds all its keys (a dozen widgets, each styled and mounted) every time
the screen signals that bindings may have changed: on every focus move, every screen push or
pop, and once per signal even when several arrive before the next frame. With screens kept
alive between visits (the training screen is), almost every one of those rebuilds draws the
same keys again, and it is the largest cost of switching screens. This Footer waits for the
signals of one frame to settle, compares what it would show with what it shows, and rebuilds
only on a difference.

Below 120 columns it is compact (one space between keys instead of two), so that every key
of the busiest screen fits in 80 columns. Where they still do not fit (60 columns), the keys
wrap onto a second line (a third if need be) instead of running off the right edge, hidden
under the palette key: every key stays on screen, and none is cut to a stray letter.
"""

from __future__ import annotations

from rich.cells import cell_len
from textual.containers import HorizontalGroup
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer as TextualFooter
from textual.widgets._footer import FooterKey

WIDE = 120
"""The app's -wide breakpoint (FtuiApp.HORIZONTAL_BREAKPOINTS)."""


class FooterRow(HorizontalGroup):
    """One line of keys when they take more than one."""

    DEFAULT_CSS = """
    FooterRow {
        height: 1;
        width: 1fr;
    }
    """


class Footer(TextualFooter):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._shown: tuple[object, ...] | None = None
        self._check_pending = False
        self.compact = self.app.size.width < WIDE

    def on_resize(self) -> None:
        self.compact = self.app.size.width < WIDE
        if self._bindings_ready and self.is_attached and not self._check_pending:
            self._check_pending = True
            self.call_after_refresh(self._recompose_if_changed)

    def _width(self, key: FooterKey) -> int:
        """Cells a key takes in the row, margin included (Textual's Footer CSS)."""
        label = cell_len(key.key_display)
        if key.description:
            label += 1 + cell_len(key.description) + (0 if self.compact else 2)
        return label + (2 if key.has_class("-command-palette") else 1)

    def _keep_toasts_above(self, rows: int) -> None:
        """Textual keeps its toasts one line up from the bottom, over a second line of keys."""
        for rack in self.screen.query("#textual-toastrack"):
            rack.styles.margin = (0, 0, max(rows, 1), 0)

    def _rows(self, keys: list[FooterKey], room: int) -> list[list[FooterKey]]:
        rows: list[list[FooterKey]] = [[]]
        used = 0
        for key in keys:
            width = self._width(key)
            if rows[-1] and used + width > room:
                rows.append([])
                used = 0
            rows[-1].append(key)
            used += width
        return rows

    def _keys(self) -> tuple[object, ...]:
        """What compose would draw: each shown binding with its state, and the palette key."""
        shown = tuple(
            (binding.key, binding.action, binding.description, self.app.get_key_display(binding), enabled,
             tooltip, binding.group)
            for (_, binding, enabled, tooltip) in self.screen.active_bindings.values()
            if binding.show
        )
        return shown, self.compact, self.show_command_palette, self.app.ENABLE_COMMAND_PALETTE, self.app.size.width

    def compose(self):
        if self._bindings_ready:
            self._shown = self._keys()
        widgets: list[Widget] = list(super().compose())
        keys = [w for w in widgets if isinstance(w, FooterKey) and not w.has_class("-command-palette")]
        palette = [w for w in widgets if w.has_class("-command-palette")]
        room = self.app.size.width - sum(self._width(p) for p in palette if isinstance(p, FooterKey))
        rows = self._rows(keys, room) if len(keys) == len(widgets) - len(palette) else [keys]
        self._keep_toasts_above(len(rows))
        if len(rows) == 1:  # the usual case: Textual's own one-line footer
            self.styles.height = 1
            self.styles.layout = "horizontal"
            yield from widgets
            return
        self.styles.height = len(rows)
        self.styles.layout = "vertical"
        for row in rows:
            yield FooterRow(*row)
        yield from palette

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
