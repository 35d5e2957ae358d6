"""On/off widgets whose state reads as text, not as colour alone.

Textual's SelectionList draws `▐X▌` for every item and its Switch a coloured slider: the state
is only the colour, which a monochrome or 16-colour terminal, a screen reader or a `tmux
capture-pane` loses. These keep Textual's behaviour (keys, mouse, messages) and draw `[x]` or
`[ ]` instead.
"""

from __future__ import annotations

from rich.segment import Segment
from rich.style import Style
from textual.content import Content
from textual.strip import Strip
from textual.widgets import OptionList, SelectionList, Switch
from textual.widgets.option_list import OptionDoesNotExist
from textual.widgets.selection_list import SelectionType

CHECKED = "[x]"
UNCHECKED = "[ ]"


class CheckList(SelectionList[SelectionType]):
    """A SelectionList with `[x]`/`[ ]` in front of each item."""

    def _get_left_gutter_width(self) -> int:
        return len(CHECKED) + 1

    def render_line(self, y: int) -> Strip:
        line = OptionList.render_line(self, y)
        index = self.scroll_offset.y + y
        try:
            selection = self.get_option_at_index(index)
        except OptionDoesNotExist:
            return line
        selected = selection.value in self._selected
        # The prompt's own colours (highlight included): the button's colours can equal the
        # highlight's once a 16-colour terminal rounds them.
        base = next(iter(line)).style or self.rich_style
        style = base + Style(bold=selected, meta={"option": index})
        return Strip([Segment(CHECKED if selected else UNCHECKED, style), Segment(" ", base), *line])


class TextSwitch(Switch):
    """A Switch drawn as `[x] on` / `[ ] off`."""

    DEFAULT_CSS = """
    TextSwitch {
        border: none;
        padding: 0;
        height: 1;
        width: 10;
        background: transparent;
    }
    TextSwitch:focus {
        border: none;
        background-tint: transparent;
        text-style: reverse;
    }
    """

    def render(self) -> Content:
        return Content(f"{CHECKED} on" if self.value else f"{UNCHECKED} off")

    def get_content_width(self, container, viewport) -> int:
        return len(f"{UNCHECKED} off")
