"""The one TUI test on the real engine: the embedded model trained, exported and chatted with,
by keys alone, at 80x24. Everything else in tests/tui runs on the fake backend."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tui.app import FtuiApp
from tui.backend import Backend
from tui.screens.chat import ChatScreen
from tui.screens.config_form import ConfigScreen
from tui.screens.export import ExportScreen
from tui.screens.training import TrainingScreen

pytestmark = pytest.mark.e2e


async def settle(app, pilot) -> None:
    await pilot.pause()
    await app.workers.wait_for_complete()
    await pilot.pause()
    await pilot.pause()


async def test_embedded_model_trains_exports_and_chats_from_the_keyboard(tmp_path):
    app = FtuiApp(backend=Backend())
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("enter")  # accept the CPU recommendation: the embedded demo
        await settle(app, pilot)
        assert isinstance(app.screen, ConfigScreen)
        form = app.screen
        form.query_one("#field-max_steps").value = "4"
        form.query_one("#field-eval_interval").value = "2"
        form.query_one("#field-output_dir").value = str(tmp_path)
        await pilot.pause()
        await pilot.press("ctrl+t")
        await settle(app, pilot)

        assert isinstance(app.screen, TrainingScreen)
        log = app.session.training
        assert log.status == "finished", log
        assert [s for s, _ in log.train_points] == [1, 2, 3, 4]
        assert [s for s, _ in log.val_points] == [2, 4]
        run_dir = Path(log.run_dir)
        assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()
        assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"

        await pilot.press("e")
        await settle(app, pilot)
        assert isinstance(app.screen, ExportScreen)
        await pilot.press("x")
        await settle(app, pilot)
        stages = str(app.screen.query_one("#export-stages").render())
        for step in ("merge", "write", "quantize", "modelfile", "verify"):
            assert step in stages, stages
        verify = str(app.screen.query_one("#export-verify").render())
        assert "PASS" in verify, verify
        gguf = run_dir / "export" / "model-Q8_0.gguf"
        assert gguf.is_file() and gguf.stat().st_size > 50_000_000
        assert f"ollama create demo -f {run_dir}/export/Modelfile" in str(app.screen.query_one("#ollama").render())

        await pilot.press("c")
        await settle(app, pilot)
        assert isinstance(app.screen, ChatScreen)
        assert app.screen.query_one("#gguf").value == str(gguf)
        await pilot.press(*"How do I list running containers?", "enter")
        await settle(app, pilot)
        reply = str(app.screen.query_one("#transcript-tuned").render())
        assert "How do I list running containers?" in reply
        assert len(reply.split("How do I list running containers?", 1)[1].strip()) > 3
        await pilot.press("ctrl+q")
