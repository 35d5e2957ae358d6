"""The first screen paints before any heavy library loads, with the real Backend."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ["torch", "transformers", "peft", "datasets", "llama_cpp", "bitsandbytes"]

SCRIPT = """
import asyncio, json, sys
from tui.app import FtuiApp
from tui.screens.home import HomeScreen

async def main():
    app = FtuiApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()
        painted = isinstance(app.screen, HomeScreen)
        hardware = str(app.screen.query_one("#hardware").render())
        doctor = str(app.screen.query_one("#doctor").render())
    print(json.dumps({"painted": painted, "hardware": hardware, "doctor": doctor, "modules": sorted(sys.modules)}))

asyncio.run(main())
"""


@pytest.mark.slow
def test_home_screen_paints_without_heavy_imports(tmp_path):
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "FTUI_CACHE": str(tmp_path)})
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["painted"]
    assert "Probing" not in result["hardware"] and "failed" not in result["hardware"]  # the real probe answered
    # The doctor's quick checks answered too, from a process of their own (they import torch).
    assert result["doctor"].startswith("doctor: ") and "checking" not in result["doctor"], result["doctor"]
    assert "could not run" not in result["doctor"]
    assert [m for m in HEAVY if m in result["modules"]] == []
