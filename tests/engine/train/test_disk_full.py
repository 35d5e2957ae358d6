"""A full disk while training says "the disk is full", where, and which checkpoint was kept.

The ENOSPC is injected at the boundary, in the form each library really raises it (measured on
a 2 MB tmpfs): safetensors' own error type with the OS's words, torch.save's RuntimeError that
names no errno (told apart by the free space left), and Python's OSError.
"""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

from engine.events import TrainFailed
from tests.engine.train.tiny import run_tiny, tiny_config

pytestmark = pytest.mark.slow

SAFETENSORS_FULL = "Error while serializing: I/O error: No space left on device (os error 28)"
TORCH_SAVE_FULL = "[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534"


def failing_in_step_4(real, error: Exception, state: dict | None = None):
    """`real`, except that a write into the step-4 checkpoint raises `error` (and sets state["full"])."""

    def write(obj, path, *args, **kwargs):
        if Path(path).parent.name.startswith(".step-4."):
            if state is not None:
                state["full"] = True
            raise error
        return real(obj, path, *args, **kwargs)

    return write


def assert_disk_full_after_step_2(result, events):
    failed = events[-1]
    assert isinstance(failed, TrainFailed) and failed.step == 4
    assert failed.reason.startswith("the disk is full: writing step 4 to ")
    kept = Path(result.run_dir) / "checkpoints" / "step-2"
    assert f"the last complete checkpoint is {kept}" in failed.reason
    assert "free disk space" in failed.advice and "resume" in failed.advice
    assert "unexpected error" not in failed.reason
    assert not (Path(result.run_dir) / "checkpoints" / "step-4").exists()
    assert [p.name for p in (Path(result.run_dir) / "checkpoints").iterdir()] == ["step-2"]
    assert json.loads((Path(result.run_dir) / "run.json").read_text())["status"] == "failed"


def test_safetensors_own_full_disk_error_says_the_disk_is_full(tmp_path, model_folder, monkeypatch):
    import safetensors.torch
    from safetensors import SafetensorError

    monkeypatch.setattr(safetensors.torch, "save_file",
                        failing_in_step_4(safetensors.torch.save_file, SafetensorError(SAFETENSORS_FULL)))
    result, events = run_tiny(tiny_config(tmp_path, save_interval=2, val_split=0.0), model_folder)
    assert_disk_full_after_step_2(result, events)


def test_torch_saves_errno_less_runtime_error_on_a_full_disk_says_the_disk_is_full(tmp_path, model_folder,
                                                                                   monkeypatch):
    import torch

    import engine.files.disk_full

    state = {"full": False}
    monkeypatch.setattr(torch, "save", failing_in_step_4(torch.save, RuntimeError(TORCH_SAVE_FULL), state))
    monkeypatch.setattr(engine.files.disk_full, "free_bytes", lambda folder: 4096 if state["full"] else 10**12)
    result, events = run_tiny(tiny_config(tmp_path, save_interval=2, val_split=0.0), model_folder)
    assert_disk_full_after_step_2(result, events)


def test_the_same_runtime_error_with_space_left_is_not_called_a_full_disk(tmp_path, model_folder, monkeypatch):
    import torch

    import engine.files.disk_full

    def save(*args, **kwargs):
        raise RuntimeError(TORCH_SAVE_FULL)

    monkeypatch.setattr(torch, "save", save)
    monkeypatch.setattr(engine.files.disk_full, "free_bytes", lambda folder: 10**12)
    result, events = run_tiny(tiny_config(tmp_path, save_interval=2, val_split=0.0), model_folder)
    assert result.status == "failed" and "disk is full" not in result.reason
    assert "unexpected error" in result.reason and "inline_container" in result.reason


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_a_full_disk_outside_a_checkpoint_write_is_named_too(tmp_path, model_folder, monkeypatch, code):
    """metrics.jsonl is appended, not written atomically: its ENOSPC must not become 'unexpected error'."""
    from engine.events import StepLogged
    from engine.runs import RunDir

    real_append = RunDir.append_event

    def append(self, event):
        if isinstance(event, StepLogged) and event.step == 3:
            raise OSError(code, "No space left on device" if code == errno.ENOSPC else "Disk quota exceeded")
        return real_append(self, event)

    monkeypatch.setattr(RunDir, "append_event", append)
    result, events = run_tiny(tiny_config(tmp_path, save_interval=2, val_split=0.0), model_folder)
    failed = events[-1]
    assert isinstance(failed, TrainFailed) and failed.reason.startswith("the disk is full")
    assert "checkpoints/step-2" in failed.reason and "unexpected error" not in failed.reason
