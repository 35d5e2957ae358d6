"""Leftovers of killed writes are swept by the next write in their folder, and only leftovers:
a partial is removed when it is older than this process and its own process is gone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import engine.files.atomic
from engine.files.atomic import atomic_dir, atomic_file, remove_dir, sweep_partials, write_text_atomic

ROOT = Path(__file__).resolve().parents[3]


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def leftover(folder: Path, name: str, *, age: float = 3600.0, is_dir: bool = True) -> Path:
    path = folder / name
    if is_dir:
        path.mkdir()
        (path / "trainable.safetensors").write_bytes(b"\0" * 1000)
    else:
        path.write_bytes(b"\0" * 1000)
    then = engine.files.atomic.PROCESS_START - age
    os.utime(path, (then, then))
    return path


@pytest.mark.slow
def test_a_dead_processes_old_partial_goes_at_the_next_write_in_its_folder(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    stale_dir = leftover(folder, f".step-4.p{dead_pid()}.k2j4x9aa.partial")
    stale_file = leftover(folder, f".run.json.p{dead_pid()}.q1w2e3r4.partial", is_dir=False)
    write_text_atomic(folder / "note.txt", "x")
    assert sorted(p.name for p in folder.iterdir()) == ["note.txt"]
    assert not stale_dir.exists() and not stale_file.exists()


@pytest.mark.slow
def test_partials_that_may_still_be_written_are_kept(tmp_path):
    live = leftover(tmp_path, f".adapter.p{os.getppid()}.aaaa1111.partial")  # pytest's parent is alive
    mine = leftover(tmp_path, f".adapter.p{os.getpid()}.bbbb2222.partial")
    recent = leftover(tmp_path, f".adapter.p{dead_pid()}.cccc3333.partial", age=-5)  # newer than this process
    assert sweep_partials(tmp_path) == []
    assert live.exists() and mine.exists() and recent.exists()


def test_an_older_versions_partial_without_a_pid_goes_when_older_than_this_process(tmp_path):
    old = leftover(tmp_path, ".step-12.abc.partial")
    new = leftover(tmp_path, ".step-16.def.partial", age=-5)
    assert sweep_partials(tmp_path) == [old]
    assert new.exists()


def test_a_folder_a_kill_left_between_atomic_dirs_two_renames_is_put_back(tmp_path):
    kept = leftover(tmp_path, ".adapter.old")
    assert sweep_partials(tmp_path) == []
    assert not kept.exists() and (tmp_path / "adapter" / "trainable.safetensors").exists()
    leftover(tmp_path, ".adapter.old")  # now adapter/ exists: this one is the superseded copy
    assert sweep_partials(tmp_path) == [tmp_path / ".adapter.old"]


def test_temporary_names_carry_the_writing_process(tmp_path):
    with atomic_file(tmp_path / "a.json") as tmp:
        assert tmp.name.startswith(f".a.json.p{os.getpid()}.") and tmp.name.endswith(".partial")
    with atomic_dir(tmp_path / "step-2") as tmp:
        assert tmp.name.startswith(f".step-2.p{os.getpid()}.")


def test_remove_dir_never_leaves_a_half_deleted_folder_under_its_name(tmp_path, monkeypatch):
    import shutil

    target = tmp_path / "step-2"
    target.mkdir()
    (target / "state.json").write_text("{}")
    monkeypatch.setattr(shutil, "rmtree", lambda *a, **k: None)  # as if killed before any file went
    remove_dir(target)
    assert not target.exists()
    [gone] = tmp_path.iterdir()
    assert engine.files.atomic.PARTIAL.match(gone.name)["pid"] == str(os.getpid())


KILLED_WRITE = """
import sys, time
from pathlib import Path
sys.path.insert(0, {root!r})
from engine.files.atomic import atomic_dir
with atomic_dir(Path({folder!r}) / "step-8") as tmp:
    (tmp / "trainable.safetensors").write_bytes(bytes(10**6))
    print("writing", flush=True)
    time.sleep(60)
"""
NEXT_WRITE = """
import sys
from pathlib import Path
sys.path.insert(0, {root!r})
from engine.files.atomic import write_text_atomic
write_text_atomic(Path({folder!r}) / "state.json", "{{}}")
"""


@pytest.mark.slow
def test_a_sigkilled_write_is_swept_by_the_next_process_that_writes_there(tmp_path):
    folder = tmp_path / "checkpoints"
    child = subprocess.Popen([sys.executable, "-c", KILLED_WRITE.format(root=str(ROOT), folder=str(folder))],
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "writing"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    [partial] = folder.iterdir()
    assert partial.name.startswith(f".step-8.p{child.pid}.") and partial.name.endswith(".partial")
    time.sleep(0.05)  # the next process starts after the partial's last change
    subprocess.run([sys.executable, "-c", NEXT_WRITE.format(root=str(ROOT), folder=str(folder))], check=True)
    assert sorted(p.name for p in folder.iterdir()) == ["state.json"]


@pytest.mark.slow
def test_a_partial_of_an_exited_but_unreaped_process_is_a_leftover(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.time() + 30
    while Path(f"/proc/{child.pid}/stat").read_text().split(")")[-1].split()[0] != "Z" and time.time() < deadline:
        time.sleep(0.02)  # not reaped: os.kill(pid, 0) still finds a zombie
    stale = leftover(tmp_path, f".step-4.p{child.pid}.zzzz0000.partial")
    assert sweep_partials(tmp_path) == [stale]
    child.wait()
