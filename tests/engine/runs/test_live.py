"""A live run's files: one writer per run (the lock names the holder), a heartbeat whose
staleness marks a dead run interrupted, a stop file the trainer answers with a checkpoint, a
follower that turns metrics.jsonl lines back into events, and the GPU memory a live run holds."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from engine.events import CheckpointSaved, StepLogged, TrainFailed, TrainFinished, TrainStarted, to_record
from engine.hardware.probe import probe
from engine.runs import RunBusy, delete_run, gpu_holders, is_live, list_runs, read_run, refuse_if_live, request_stop
from engine.runs.follow import follow
from engine.runs.live import HEARTBEAT_FILE, STALE_S, STOP_FILE, Watcher, acquire
from engine.runs.record import RunRecord, write_record
from tests.engine.hardware.conftest import FakeCard, FakeNvml
from tests.engine.train.tiny import run_tiny, tiny_config


def a_run(folder: Path, status: str = "running", pid: int | None = None, host: str | None = None,
          heartbeat_age: float | None = 0.0) -> Path:
    folder.mkdir(parents=True)
    write_record(folder, RunRecord("r", "m", "m", "m", "lora", "2026-01-01T00:00", "2026-01-01T00:00", status,
                                   5, 20, pid=os.getpid() if pid is None else pid,
                                   host=socket.gethostname() if host is None else host))
    if heartbeat_age is not None:
        beat = folder / HEARTBEAT_FILE
        beat.touch()
        old = time.time() - heartbeat_age
        os.utime(beat, (old, old))
    return folder


def dead_pid() -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def test_a_second_writer_is_refused_naming_the_first(tmp_path):
    run = a_run(tmp_path / "run")
    lock = acquire(run)
    with pytest.raises(RunBusy) as refused:
        acquire(run)
    assert refused.value.pid == os.getpid()
    assert f"process {os.getpid()}" in refused.value.reason and "ftui stop" in refused.value.advice
    lock.release()
    acquire(run).release()


def test_a_lock_held_without_a_heartbeat_says_how_to_clear_it(tmp_path):
    """As an NFS server keeps the lock of a machine that died: held, but nothing beats."""
    run = a_run(tmp_path / "run")
    lock = acquire(run)
    try:
        old = time.time() - STALE_S - 600
        os.utime(run / HEARTBEAT_FILE, (old, old))
        with pytest.raises(RunBusy) as refused:
            acquire(run)
        assert "has not touched the heartbeat for 11 min" in refused.value.reason
        assert f"remove {run / 'lock'} and resume" in refused.value.advice
    finally:
        lock.release()


def test_a_stop_file_left_by_a_dead_session_does_not_stop_the_next(tmp_path):
    run = a_run(tmp_path / "run")
    request_stop(run)
    acquire(run).release()
    assert not (run / STOP_FILE).exists()


@pytest.mark.parametrize("pid, host, age, expected", [
    (None, None, 0.0, "running"),                      # this process, fresh heartbeat
    (None, None, STALE_S + 60, "interrupted"),         # alive but silent: frozen, or a reused pid
    ("dead", None, 0.0, "interrupted"),                # kill -9
    (None, None, None, "running"),                     # a run from before heartbeats: the pid decides
    (12345, "another-host", 0.0, "running"),           # another machine: the heartbeat decides
    (12345, "another-host", STALE_S + 60, "interrupted"),
    (1, "another-host", None, "interrupted"),          # copied from a machine that died: no heartbeat, not live
    (None, "", None, "running"),                       # no host recorded (older runs): this machine's pid decides
])
def test_liveness_comes_from_pid_and_heartbeat(tmp_path, pid, host, age, expected):
    run = a_run(tmp_path / "run", pid=dead_pid() if pid == "dead" else pid, host=host, heartbeat_age=age)
    info = read_run(run)
    assert info.status == expected
    assert is_live(run) == (expected == "running")
    assert info.resumable == (expected == "interrupted")


@pytest.mark.parametrize("heartbeat", [None, STALE_S + 3 * 3600])
def test_a_run_copied_from_a_machine_that_died_is_interrupted_resumable_and_not_stopped(tmp_path, capsys, heartbeat):
    from cli.main import main

    run = a_run(tmp_path / "runs" / "copied", pid=1, host="dead-gpu-box", heartbeat_age=heartbeat)
    info = read_run(run)
    assert info.status == "interrupted" and info.resumable
    assert "process 1 on dead-gpu-box" in info.reason
    assert ("3 h" in info.reason) if heartbeat else ("no heartbeat file" in info.reason)
    refuse_if_live(run)  # a resume is not refused as "being trained by process 1"

    assert main(["runs", "--dir", str(tmp_path / "runs")]) == 0
    listed = capsys.readouterr().out
    assert "interrupted" in listed and f"ftui train --resume {run}" in listed

    started = time.monotonic()
    assert main(["stop", str(run)]) == 3
    assert time.monotonic() - started < 5
    said = capsys.readouterr()
    assert "waiting" not in said.out
    assert f"nothing trains {run} now" in said.err and f"resume it with ftui train --resume {run}" in said.err
    assert not (run / STOP_FILE).exists()
    acquire(run).release()  # nor by its lock


def test_stopping_a_finished_run_says_there_is_nothing_to_stop(tmp_path, capsys):
    from cli.main import main

    run = a_run(tmp_path / "run", status="finished")
    assert main(["stop", str(run)]) == 3
    assert "is not training (finished at step 5/20); there is nothing to stop" in capsys.readouterr().err


def test_a_live_run_is_not_deleted(tmp_path):
    run = a_run(tmp_path / "run")
    with pytest.raises(ValueError, match="training now"):
        delete_run(run)


def test_the_watcher_beats_and_turns_a_stop_file_into_the_stop_event(tmp_path):
    run = a_run(tmp_path / "run", heartbeat_age=STALE_S + 60)
    stop = threading.Event()
    watcher = Watcher(run, stop).start()
    try:
        for _ in range(20):  # beaten at start
            if read_run(run).status == "running":
                break
            time.sleep(0.05)
        assert read_run(run).status == "running"
        request_stop(run)
        assert stop.wait(3)
    finally:
        watcher.close()
    assert not (run / STOP_FILE).exists()


def test_a_live_run_on_the_gpu_says_how_much_it_holds(tmp_path):
    mine = a_run(tmp_path / "runs" / "live", pid=os.getpid())
    a_run(tmp_path / "runs" / "dead", pid=dead_pid())
    nvml = FakeNvml([FakeCard("NVIDIA GeForce RTX 4090", 24.0, used_gib=9.0,
                              processes=[(os.getpid(), "python", 7.8), (999_999, "Xorg", 0.3)])])
    holders = gpu_holders(list_runs(tmp_path / "runs"), probe(nvml))
    assert [(Path(h.run.path), h.gpu_index, round(h.used_gib, 2)) for h in holders] == [(mine, 0, 7.8)]
    assert f"(pid {os.getpid()}) holds 7.8 GiB on GPU 0 (NVIDIA GeForce RTX 4090)" in holders[0].describe()


def line(event) -> str:
    return json.dumps({"time": 0, **to_record(event)}) + "\n"


def step(n: int) -> StepLogged:
    return StepLogged(n, 9, 0.1, 2.0, 1e-3, 1.0, 100.0, 1.0, 1.0, 0.1)


def test_the_follower_reads_the_past_then_each_new_line_and_waits_for_halves(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text(line(TrainStarted("r", 9, 1.0, 8, 1, 10, 100, "cpu", 0.0)) + line(step(1)))
    writing = threading.Event()
    writing.set()
    seen: list = []

    def writer() -> None:
        with open(metrics, "a") as fh:
            text = line(step(2))
            fh.write(text[:20])
            fh.flush()
            time.sleep(0.3)  # the follower polls meanwhile and must not take half a line
            fh.write(text[20:] + line(TrainFinished("r", 2, 2.0, None, "a", True, "stopped")))
        writing.clear()

    threading.Thread(target=writer).start()
    end = follow(metrics, seen.append, writing.is_set, poll_s=0.05)
    assert isinstance(end, TrainFinished)
    assert [type(e).__name__ for e in seen] == ["TrainStarted", "StepLogged", "StepLogged", "TrainFinished"]


def test_the_follower_does_not_stop_at_an_earlier_session_end_and_reports_a_death(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text(line(step(1)) + line(TrainFinished("r", 1, 2.0, None, "a", True, "stopped"))
                       + line(TrainStarted("r", 9, 1.0, 8, 1, 10, 100, "cpu", 0.0, 1)) + line(step(2)))
    backlog: list = []
    seen: list = []
    assert follow(metrics, seen.append, lambda: False, on_backlog=backlog.extend, poll_s=0.05) is None
    assert len(backlog) == 4 and seen == []


def test_the_follower_takes_up_a_rewritten_file_where_it_departs(tmp_path):
    """The trainer rewrites metrics.jsonl without a retried attempt's lines (OOM retry)."""
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text(line(step(1)) + line(step(2)) + line(step(3)))
    seen: list = []
    alive = threading.Event()
    alive.set()

    def rewrite() -> None:
        time.sleep(0.2)
        tmp = tmp_path / "new"
        tmp.write_text(line(step(1)) + line(CheckpointSaved(1, "c", "interval")))
        os.replace(tmp, metrics)
        time.sleep(0.2)
        with open(metrics, "a") as fh:
            fh.write(line(TrainFailed("gone", "")))
        alive.clear()

    threading.Thread(target=rewrite).start()
    end = follow(metrics, seen.append, alive.is_set, poll_s=0.05)
    assert isinstance(end, TrainFailed)
    assert [getattr(e, "step", None) for e in seen] == [1, 2, 3, 1, None]


@pytest.mark.slow
def test_a_stop_file_stops_a_real_run_with_a_checkpoint(tmp_path, model_folder):
    config = tiny_config(tmp_path, max_steps=40, save_interval=100, val_split=0.0)
    run_dirs: list[str] = []

    def on_step(event, stop):
        if isinstance(event, TrainStarted):
            run_dirs.append(event.run_dir)
            assert is_live(event.run_dir)
        if isinstance(event, StepLogged) and event.step == 2:
            request_stop(run_dirs[0])

    result, events = run_tiny(config, model_folder, on_step=on_step)
    assert result.status == "stopped" and result.steps < 40
    assert "stop" in [e.reason for e in events if isinstance(e, CheckpointSaved)]
    assert not is_live(run_dirs[0]) and not (Path(run_dirs[0]) / STOP_FILE).exists()

    # One writer per run: a resume while another process holds the run is refused, naming it,
    # and leaves its metrics alone.
    lock = acquire(run_dirs[0])
    metrics = (Path(run_dirs[0]) / "metrics.jsonl").read_text()
    result, events = run_tiny(config, model_folder, resume=run_dirs[0])
    lock.release()
    assert result.status == "failed" and f"process {os.getpid()}" in result.reason
    assert isinstance(events[-1], TrainFailed) and not any(isinstance(e, StepLogged) for e in events)
    assert (Path(run_dirs[0]) / "metrics.jsonl").read_text() == metrics


@pytest.mark.slow
def test_ftui_train_on_a_gpu_a_live_run_holds_says_how_much_and_does_not_start_unasked(
        tmp_path, monkeypatch, capsys):
    import engine.hardware.probe
    from cli.main import main

    a_run(tmp_path / "runs" / "live")
    nvml = FakeNvml([FakeCard("NVIDIA GeForce RTX 4090", 24.0, used_gib=9.0,
                              processes=[(os.getpid(), "python", 7.8)])])
    real_probe = engine.hardware.probe.probe
    monkeypatch.setattr(engine.hardware.probe, "probe", lambda: real_probe(nvml))
    config = tmp_path / "run.toml"
    config.write_text(tiny_config(tmp_path).to_toml())

    assert main(["train", "--config", str(config)]) == 1  # stdin is not a terminal: no one to ask
    err = capsys.readouterr().err
    assert "holds 7.8 GiB on GPU 0 (NVIDIA GeForce RTX 4090)" in err and "--yes" in err
    assert list((tmp_path / "runs").iterdir()) == [tmp_path / "runs" / "live"]
