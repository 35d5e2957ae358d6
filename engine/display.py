"""Text ftui shows in a terminal: data and model text made safe, and durations in one form for both faces.

A reply, a dataset row or a GGUF's metadata can hold escape sequences: OSC 52 sets the
clipboard of the terminal that shows it, others retitle the window or redraw the screen, and
a carriage return can write over what was printed. Wherever ftui shows such text it goes
through `printable`, which keeps newlines and tabs and drops everything else a terminal acts on.
"""

from __future__ import annotations

import re

_SEQUENCES = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"  # CSI (or its one-byte form): colours, cursor moves, screen clears
    r"|(?:\x1b\]|\x9d)[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"  # OSC: clipboard (52), title (0, 2), links (8)
    r"|\x1b[P^_X][^\x1b]*(?:\x1b\\)?"  # DCS, PM, APC, SOS strings
    r"|\x1b[@-Z\\-_]?"  # any other escape, or a lone ESC
)
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
"""C0 controls but tab and newline, DEL, and the C1 controls (0x9b is a one-byte CSI)."""


def printable(text: str) -> str:
    return _CONTROLS.sub("", _SEQUENCES.sub("", text))


def duration(seconds: float) -> str:
    """A run's time taken or left as the CLI and the TUI show it: "7m05s" under an hour, "1h02m" from one
    (the seconds dropped); below zero counts as none."""
    seconds = int(max(0, seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
