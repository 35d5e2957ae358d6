"""Telling the person at the terminal that a run ended: the bell, and a desktop notification
through the terminal itself (no D-Bus, no extra package), which reaches the laptop an SSH
session runs from.

Two escape sequences carry one: OSC 9 (iTerm2, WezTerm, kitty, Ghostty) and
OSC 777 (foot, rxvt-unicode, VTE terminals such as GNOME Terminal). A terminal that knows neither
ignores an OSC, but one that knows both would show two, so the sequence is chosen from what the
environment says of the terminal, and none is sent when it says nothing (the bell still rings).
Inside tmux or screen the terminal behind them is unknown: the bell only.
"""

from __future__ import annotations

from collections.abc import Mapping

OSC9_PROGRAMS = ("iTerm.app", "iTerm2", "WezTerm", "ghostty")
"""TERM_PROGRAM (or LC_TERMINAL, which iTerm2 passes over SSH) of the terminals that show OSC 9.
Not Windows Terminal or ConEmu: their OSC 9 is a family of other commands."""
OSC777_TERMS = ("foot", "rxvt-unicode")


def desktop_sequence(title: str, body: str, env: Mapping[str, str]) -> str:
    """The escape sequence that shows (title, body) as a desktop notification here, or ""."""
    title, body = _clean(title), _clean(body)
    term, program = env.get("TERM", ""), env.get("TERM_PROGRAM", "") or env.get("LC_TERMINAL", "")
    if env.get("TMUX") or term.startswith(("screen", "tmux")):
        return ""
    if program in OSC9_PROGRAMS or term == "xterm-kitty":
        return f"\x1b]9;{title}: {body}\x07"
    if env.get("VTE_VERSION") or term.startswith(OSC777_TERMS):
        return f"\x1b]777;notify;{title};{body}\x07"
    return ""


def _clean(text: str) -> str:
    """No control characters (an ESC or BEL would end the sequence early) and no ';' in OSC 777's fields."""
    return "".join(c if c.isprintable() else " " for c in text).replace(";", ",")[:200]
