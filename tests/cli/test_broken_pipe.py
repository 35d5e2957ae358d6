"""`ftui presets | head -1` and the like: a reader that stops early is not an error of ftui's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_closed_pipe_on_stdout_ends_ftui_quietly():
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader has gone before ftui writes its first line
    try:
        done = subprocess.run([sys.executable, "-m", "ftui", "presets"], cwd=ROOT, stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr, done.stderr
    assert done.returncode == 141
