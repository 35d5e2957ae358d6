"""Whether a process named in a file (a run's record, a partial write's name) is still running."""

from __future__ import annotations

import os
from pathlib import Path


def pid_alive(pid: int) -> bool:
    """`pid` exists on this machine (another user's process counts) and is not a zombie: one that
    has exited but that its parent has not reaped yet, which os.kill(pid, 0) still finds."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """Linux's process state; elsewhere, no."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2:][:1] == "Z"
