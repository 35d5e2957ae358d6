"""Memory bars drawn as text, so they read the same in a 16-colour terminal and over slow SSH:
the verdict is spelled out ("fits", "over by 2.1 GiB"), colour only repeats it."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


def bar(used: float, total: float, width: int = 24, style: str = "green") -> Text:
    """`used` of `total` as a bar of `width` cells; past the end it is drawn full in red."""
    share = used / total if total > 0 else 1.0
    filled = min(width, round(share * width))
    over = share > 1.0
    text = Text("[")
    text.append("█" * filled, style="bold red" if over else style)
    text.append("░" * (width - filled), style="dim")
    text.append("]")
    return text


class MemoryBar(Static):
    """The estimated peak memory of a config against the memory it will run in."""

    DEFAULT_CSS = """
    MemoryBar {
        height: auto;
        width: 1fr;
    }
    """

    def show(self, peak_gib: float | None, free_gib: float | None, where: str = "free VRAM") -> None:
        if peak_gib is None:
            self.update("Memory estimate: model not in the catalog, no estimate")
            return
        text = Text("Est. peak ")
        text.append(f"{peak_gib:.1f} GiB ", style="bold")
        if not free_gib:
            text.append("(no memory figure to compare with)")
        else:
            text.append_text(bar(peak_gib, free_gib, width=20))
            text.append(f" of {free_gib:.1f} GiB {where} ")
            if peak_gib <= free_gib:
                text.append("fits", style="green")
            else:
                text.append(f"over by {peak_gib - free_gib:.1f} GiB", style="bold red")
        self.update(text)
