"""The queue's runner: a process of its own that starts the waiting runs of an output folder one
after another, each in its own training process (engine/train/detached.py), and ends when none
waits.

It runs in a new session with SIGHUP ignored, as a detached run does, so the terminal that
queued the runs can go. One runner per folder: it holds `.queue.runner.lock` (an flock the kernel
drops when the process dies) for its whole life, and a second one started meanwhile leaves at
once. It never starts a run while another run in the folder trains, one it started or not, so two
runs of the queue never share the GPU; a second folder has a queue of its own, for runs that may.
A run that fails does not stop the rest unless it was queued with `stop_on_failure`.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from engine.events import TrainStarted
from engine.files.control import open_control
from engine.files.paths import child_env
from engine.files.pids import pid_alive
from engine.runqueue.store import (
    RUNNING,
    Entry,
    Queue,
    QueueError,
    editing,
    now,
    read_queue,
    runner_alive,
)

RUNNER_LOCK = ".queue.runner.lock"
RUNNER_LOG = "queue.log"
"""Under the output folder's .launches/: what the runner did, and why, line by line."""
POLL_S = 2.0


def start_runner(folder: str | Path) -> int:
    """Start the folder's runner unless one runs (a paused queue is unpaused); returns its pid."""
    from engine.train.detached import LAUNCH_DIR

    folder = Path(folder)
    with editing(folder) as box:
        box[0] = replace(box[0], paused="")
        if runner_alive(box[0]):
            assert box[0].runner_pid is not None
            return box[0].runner_pid
        logs = folder / LAUNCH_DIR
        logs.mkdir(parents=True, exist_ok=True)
        with open(logs / RUNNER_LOG, "ab") as out, open(os.devnull, "rb") as nothing:
            process = subprocess.Popen([sys.executable, "-m", "engine.runqueue.runner", "--dir", str(folder)],
                                       stdin=nothing, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                       env=child_env())
        # Named under the lock, so a second `start` meanwhile finds it rather than starting another.
        box[0] = replace(box[0], runner_pid=process.pid, runner_host=socket.gethostname())
    return process.pid


def run_queue(folder: str | Path, stop: threading.Event) -> None:
    """Start waiting runs until none waits, the queue is paused or `stop` is set (which stops the
    run in training at its next step, with a checkpoint, and pauses the queue)."""
    folder = Path(folder)
    with editing(folder) as box:
        box[0] = replace(box[0], runner_pid=os.getpid(), runner_host=socket.gethostname())
    try:
        _settle_orphans(folder)
        while not stop.is_set():
            if not _wait_for_free_gpu(folder, stop):
                break
            with editing(folder) as box:
                queue = box[0]
                if queue.paused or not queue.waiting:
                    break
                entry = replace(queue.waiting[0], status=RUNNING, started=now())
                box[0] = _put(queue, entry)
            _log(f"starting {entry.id} ({entry.label})")
            ended = _train(folder, entry, stop)
            _log(f"{entry.id} ({entry.label}) {ended.status}" + (f": {ended.reason}" if ended.reason else ""))
            with editing(folder) as box:
                box[0] = _put(box[0], ended)
                if ended.status in ("failed", "interrupted") and ended.stop_on_failure:
                    box[0] = replace(box[0], paused=f"{ended.label} {ended.status}, and was queued to stop the "
                                                    "queue if it did")
            if ended.group:
                _write_sweep(folder, ended.group)
        if stop.is_set():
            with editing(folder) as box:
                box[0] = replace(box[0], paused="the queue's runner was asked to stop")
    finally:
        with editing(folder) as box:
            box[0] = replace(box[0], runner_pid=None, runner_host="")


def _train(folder: Path, entry: Entry, stop: threading.Event) -> Entry:
    """Launch the entry's run in its own process and follow it to its end; the entry as it ended."""
    from engine.config.schema import ConfigError
    from engine.train.detached import follow_launch, launch

    try:
        started = launch(entry.run_config())
    except (OSError, ConfigError) as exc:
        return replace(entry, status="failed", ended=now(), reason=f"could not start: {exc}")
    with editing(folder) as box:
        entry = replace(entry, pid=started.pid)
        box[0] = _put(box[0], entry)

    def seen(event: Any) -> None:
        nonlocal entry
        if isinstance(event, TrainStarted):
            with editing(folder) as box:
                entry = replace(entry, run_dir=event.run_dir)
                box[0] = _put(box[0], entry)

    result = follow_launch(started, seen, stop)
    assert result is not None  # only a follower asked to leave answers None
    return replace(entry, status=result.status, ended=now(), reason=result.reason,
                   run_dir=result.run_dir or entry.run_dir)


def _settle_orphans(folder: Path) -> None:
    """Runs a runner that died had started: wait for those still training, then take each one's
    end from its run folder."""
    from engine.runs import RunReadError, read_run

    for entry in read_queue(folder).entries:
        if entry.status != RUNNING:
            continue
        _log(f"{entry.id} ({entry.label}) was started by a runner that is gone; waiting for it to end")
        while entry.pid is not None and pid_alive(entry.pid):
            time.sleep(POLL_S)
        status, reason = "failed", "its training process ended before training began"
        if entry.run_dir:
            try:
                info = read_run(entry.run_dir)
                status, reason = info.status, info.reason
            except RunReadError as exc:
                reason = str(exc)
        with editing(folder) as box:
            box[0] = _put(box[0], replace(entry, status=status, reason=reason, ended=now()))


def _wait_for_free_gpu(folder: Path, stop: threading.Event) -> bool:
    """Wait while a run in the folder trains (one started by hand, or a resume); False when
    stopped first."""
    from engine.runs import list_runs

    said = False
    while not stop.is_set():
        live = [r for r in list_runs(folder) if r.status == "running"]
        if not live:
            return True
        if not said:
            _log(f"waiting for {live[0].path} (pid {live[0].pid}) to end before starting the next run")
            said = True
        stop.wait(POLL_S)
    return False


def _write_sweep(folder: Path, group: str) -> None:
    """The sweep folder's table (sweep.json) from the variants of the group that ended so far."""
    from engine.runs import RunReadError, read_run
    from engine.sweep import VariantResult, write_sweep

    results = []
    for e in read_queue(folder).entries:
        if e.group != group or e.status in (RUNNING, "queued", "cancelled"):
            continue
        best = None
        if e.run_dir:
            try:
                best = read_run(e.run_dir).best_val_loss
            except RunReadError:
                pass
        results.append(VariantResult(e.label, e.run_dir or None, e.status, best, None, ()))
    write_sweep(Path(group), results)


def _put(queue: Queue, entry: Entry) -> Queue:
    return replace(queue, entries=tuple(entry if e.id == entry.id else e for e in queue.entries))


def _log(line: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.runqueue.runner")
    parser.add_argument("--dir", required=True)
    args = parser.parse_args(argv)
    folder = Path(args.dir)
    fd = open_control(folder / RUNNER_LOCK, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return 0  # another runner works through this queue
    stop = threading.Event()
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        run_queue(folder, stop)
    except QueueError as exc:
        _log(f"{exc.reason}; {exc.advice}")
        return 1
    finally:
        os.close(fd)
    _log("no run waits; the runner ends")
    return 0


if __name__ == "__main__":
    sys.exit(main())
