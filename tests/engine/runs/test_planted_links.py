"""A shared run folder with a control file planted as a symbolic link: ftui never writes through
it (the victim's file keeps its bytes) and says which file and why (engine/files/control.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.events import StepLogged, TrainFailed
from engine.files.control import UnsafeFile, append_line, check_control, open_control
from engine.runs import request_stop
from engine.runs.live import acquire
from tests.engine.train.tiny import run_tiny, tiny_config

PRECIOUS = "ssh-ed25519 AAAA... the victim's key\n"


@pytest.fixture
def precious(tmp_path) -> Path:
    victim = tmp_path / "victim" / "authorized_keys"
    victim.parent.mkdir()
    victim.write_text(PRECIOUS)
    return victim


def plant(run_dir: Path, name: str, target: Path) -> Path:
    link = run_dir / name
    link.unlink(missing_ok=True)
    link.symlink_to(target)
    return link


@pytest.mark.slow
@pytest.mark.parametrize("name", ["lock", "metrics.jsonl", "output.log", "heartbeat"])
def test_resuming_a_run_with_a_planted_link_refuses_and_leaves_the_target_alone(tmp_path, model_folder, precious,
                                                                                  name):
    config = tiny_config(tmp_path, max_steps=2, save_interval=1, val_split=0.0)
    result, _ = run_tiny(config, model_folder)
    run_dir = Path(result.run_dir)
    plant(run_dir, name, precious)

    result, events = run_tiny(config, model_folder, resume=str(run_dir))
    assert result.status == "failed" and isinstance(events[-1], TrainFailed)
    assert f"{run_dir / name} is a symbolic link" in result.reason and "remove the link" in events[-1].advice
    assert not any(isinstance(e, StepLogged) for e in events)
    assert precious.read_text() == PRECIOUS


def test_a_stop_request_never_writes_through_a_planted_stop_file(tmp_path, precious):
    plant(tmp_path, "stop", precious)
    request_stop(tmp_path)
    assert precious.read_text() == PRECIOUS


def test_a_dangling_link_is_not_followed_to_create_its_target(tmp_path):
    target = tmp_path / "elsewhere" / "new-file"
    target.parent.mkdir()
    plant(tmp_path, "metrics.jsonl", target)
    with pytest.raises(UnsafeFile):
        append_line(tmp_path / "metrics.jsonl", "{}")
    assert not target.exists()


def test_another_users_file_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "lock"
    path.write_text("")
    monkeypatch.setattr(os, "geteuid", lambda: os.stat(path).st_uid + 1)  # as if someone else wrote it
    with pytest.raises(UnsafeFile) as raised:
        os.close(open_control(path, os.O_RDONLY))
    assert "belongs to another user" in raised.value.reason
    with pytest.raises(UnsafeFile):
        check_control(path)
    with pytest.raises(UnsafeFile):
        acquire(tmp_path)
