"""Text from datasets and models made safe to show in a terminal.

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
