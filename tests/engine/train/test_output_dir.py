"""An output_dir that cannot hold a run is refused at preflight, naming the path and why, before
any model loads: a file, a path under a file, a folder without write permission, a read-only
filesystem. These were tracebacks (FileExistsError, NotADirectoryError, PermissionError, EROFS)
from the worker thread, often cut to `Exception in thread` on a pipe."""

from __future__ import annotations

import os
import threading

import pytest

from cli.main import main
from engine.events import TrainFailed
from engine.train import train
from engine.train.preflight import PreflightError, check_output_dir
from tests.engine.train.tiny import tiny_config


def refusal(folder) -> str:
    with pytest.raises(PreflightError) as caught:
        check_output_dir(folder)
    return f"{caught.value.reason} | {caught.value.advice}"


def test_a_file_is_not_a_folder(tmp_path):
    (tmp_path / "runs").write_text("x")
    assert refusal(tmp_path / "runs").startswith(f"output_dir {tmp_path / 'runs'} is a file, not a folder")


def test_a_path_under_a_file(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    message = refusal(tmp_path / "notes.txt" / "runs" / "deeper")
    assert f"output_dir {tmp_path / 'notes.txt' / 'runs' / 'deeper'} is under {tmp_path / 'notes.txt'}" in message
    assert "which is a file" in message


def test_a_folder_without_write_permission(tmp_path, monkeypatch):
    # Faked at the boundary: the tests may run as root, whom permissions do not stop.
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if str(p) == str(tmp_path) else real_access(p, mode))
    message = refusal(tmp_path / "runs")
    assert f"cannot write in {tmp_path} (permission denied)" in message and "output_dir" in message


def test_a_read_only_filesystem(tmp_path, monkeypatch):
    real_statvfs = os.statvfs

    def statvfs(path):
        result = real_statvfs(path)
        if str(path) != str(tmp_path):
            return result
        return os.statvfs_result((*result[:8], result.f_flag | os.ST_RDONLY, result.f_namemax))

    monkeypatch.setattr(os, "statvfs", statvfs)
    assert f"{tmp_path} is on a read-only filesystem" in refusal(tmp_path / "runs")


def test_a_writable_folder_or_one_to_be_made_passes(tmp_path):
    check_output_dir(tmp_path)
    check_output_dir(tmp_path / "not" / "yet")
    assert not (tmp_path / "not").exists()  # preflight makes nothing


@pytest.mark.slow
def test_train_refuses_before_loading_the_model(tmp_path):
    (tmp_path / "runs").write_text("x")
    events: list = []
    result = train(tiny_config(tmp_path, model="/nowhere/model"), events.append, threading.Event())
    assert result.status == "failed" and "is a file, not a folder" in result.reason
    assert [type(e) for e in events] == [TrainFailed]


@pytest.mark.slow
def test_ftui_train_says_so_without_a_traceback(tmp_path, capsys):
    (tmp_path / "blocker").write_text("x")
    code = main(["train", "--preset", "demo", "--set", f"output_dir={tmp_path / 'blocker' / 'runs'}"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert f"is under {tmp_path / 'blocker'}, which is a file" in err
