"""The run queue of an output folder: queue.json, which the CLI and the TUI edit and the queue's
runner (engine/runqueue/runner.py) works through, one run at a time.

queue.json is rewritten whole under its final name (engine/files/atomic.py), so a reader never
sees half of it. Whoever changes it holds `.queue.lock` (an flock, released by the kernel when a
process dies) for the read-modify-write, so `ftui queue add` in one terminal and the runner
marking a run finished in its own process never lose each other's change.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import tomllib
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from engine.config.schema import RunConfig
from engine.errors import ActionableError
from engine.files.atomic import write_text_atomic
from engine.files.control import open_control

if TYPE_CHECKING:
    from engine.sweep import Variant

QUEUE_FILE = "queue.json"
LOCK_FILE = ".queue.lock"
WAITING = "queued"
RUNNING = "running"
ENDED = ("finished", "stopped", "failed", "interrupted", "cancelled")


class QueueError(ActionableError):
    """queue.json cannot be read, or an entry named does not exist or cannot change now."""


@dataclass(frozen=True)
class Entry:
    id: str
    label: str
    """The run's name, or for a sweep's variant the setting it tries (learning_rate=5e-05)."""
    config: str
    """The run's resolved config as TOML, fixed when it was queued."""
    status: str = WAITING
    """queued, running, finished, stopped, failed, interrupted (as the run ended) or cancelled (never started)."""
    group: str = ""
    """The sweep folder a variant trains into; empty for a run of its own."""
    stop_on_failure: bool = False
    """When this run fails, the runs after it wait (the queue pauses) instead of starting."""
    added: str = ""
    started: str = ""
    ended: str = ""
    run_dir: str = ""
    pid: int | None = None
    """The training process the runner launched for it."""
    reason: str = ""

    def run_config(self) -> RunConfig:
        return RunConfig.from_dict(tomllib.loads(self.config), source=f"queued run {self.id}")


@dataclass(frozen=True)
class Queue:
    folder: str
    entries: tuple[Entry, ...] = ()
    paused: str = ""
    """Why the runner will not start the next run (a paused queue, a run that failed); empty when it will."""
    runner_pid: int | None = None
    runner_host: str = ""

    @property
    def waiting(self) -> list[Entry]:
        return [e for e in self.entries if e.status == WAITING]

    @property
    def running(self) -> Entry | None:
        return next((e for e in self.entries if e.status == RUNNING), None)

    def find(self, entry_id: str) -> Entry:
        found = [e for e in self.entries if e.id == entry_id or e.id.startswith(entry_id)] if entry_id else []
        if len(found) != 1:
            known = ", ".join(e.id for e in self.entries) or "none"
            said = "matches several entries" if found else "is not in the queue"
            raise QueueError(f"{entry_id!r} {said} of {self.folder} (ids: {known})",
                             "name an entry by the id `ftui queue` lists")
        return found[0]


def queue_path(folder: str | Path) -> Path:
    return Path(folder) / QUEUE_FILE


def read_queue(folder: str | Path) -> Queue:
    """The queue of an output folder; an empty one when there is no queue.json."""
    path = queue_path(folder)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Queue(str(folder))
    except OSError as exc:
        raise QueueError(f"cannot read {path}: {exc.strerror or exc}", "check the folder's permissions") from None
    try:
        data = json.loads(text)
        entries = tuple(Entry(**e) for e in data["entries"])
        return Queue(str(folder), entries, str(data.get("paused", "")), data.get("runner_pid"),
                     str(data.get("runner_host", "")))
    except (ValueError, KeyError, TypeError) as exc:
        raise QueueError(f"{path} is damaged ({exc})",
                         "move it aside; the runs it started are in the folder, each with its own run.json") from None


def write_queue(queue: Queue) -> None:
    record = {"entries": [asdict(e) for e in queue.entries], "paused": queue.paused,
              "runner_pid": queue.runner_pid, "runner_host": queue.runner_host}
    write_text_atomic(queue_path(queue.folder), json.dumps(record, indent=2) + "\n")


@contextmanager
def editing(folder: str | Path) -> Iterator[list[Queue]]:
    """Hold the queue's lock; yields a one-item list whose queue, if replaced, is written back."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    fd = open_control(Path(folder) / LOCK_FILE, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        before = read_queue(folder)
        box = [before]
        yield box
        if box[0] is not before:
            write_queue(box[0])
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def now() -> str:
    """As run.json writes its times, so the two compare."""
    return datetime.now().astimezone().isoformat(timespec="seconds")


def add(folder: str | Path, configs: list[tuple[str, RunConfig]], group: str = "",
        stop_on_failure: bool = False) -> list[Entry]:
    """Queue runs (label, config) at the end, in order; they start after those already waiting."""
    new = [Entry(uuid.uuid4().hex[:6], label, config.to_toml(), group=group, stop_on_failure=stop_on_failure,
                 added=now()) for label, config in configs]
    with editing(folder) as box:
        box[0] = replace(box[0], entries=box[0].entries + tuple(new))
    return new


def add_sweep(config: RunConfig, variants: list[Variant], stop_on_failure: bool = False) -> tuple[Path, list[Entry]]:
    """Queue a sweep: its variants as one group, training into a new sweep folder that lists
    their table (sweep.json) as each ends, as `ftui sweep` does."""
    from engine.sweep import new_sweep_folder, variant_config, write_sweep

    sweep = new_sweep_folder(config.output_dir, config.name)
    write_sweep(sweep, [])
    configs = [(v.label, variant_config(v, sweep)) for v in variants]
    return sweep, add(config.output_dir, configs, group=str(sweep), stop_on_failure=stop_on_failure)


def move(folder: str | Path, entry_id: str, position: int) -> Queue:
    """Put a waiting entry at `position` (1 = next to start) among the waiting ones."""
    with editing(folder) as box:
        queue = box[0]
        entry = queue.find(entry_id)
        if entry.status != WAITING:
            raise QueueError(f"{entry.id} ({entry.label}) is {entry.status}; only waiting runs move",
                             "`ftui queue` lists which runs still wait")
        waiting = [e for e in queue.waiting if e.id != entry.id]
        waiting.insert(max(0, min(position - 1, len(waiting))), entry)
        order = iter(waiting)
        entries = tuple(next(order) if e.status == WAITING else e for e in queue.entries)
        box[0] = replace(queue, entries=entries)
        return box[0]


def cancel(folder: str | Path, entry_id: str) -> Entry:
    """Take a waiting run off the queue, or ask the running one to stop at its next step (with a
    checkpoint, as `ftui stop` does); the runner then goes on with the next."""
    from engine.runs.live import request_stop

    with editing(folder) as box:
        queue = box[0]
        entry = queue.find(entry_id)
        if entry.status == WAITING:
            entry = replace(entry, status="cancelled", ended=now(), reason="cancelled before it started")
            box[0] = replace(queue, entries=tuple(entry if e.id == entry.id else e for e in queue.entries))
        elif entry.status == RUNNING:
            if entry.run_dir:
                request_stop(entry.run_dir)
            elif entry.pid is not None:
                _terminate(entry.pid)  # still loading: the trainer stops at its first step
        else:
            raise QueueError(f"{entry.id} ({entry.label}) has already {entry.status}", "nothing to cancel")
        return entry


def pause(folder: str | Path, why: str = "paused by you") -> None:
    """The runner starts no more runs after the one in training; `resume_queue` undoes it."""
    with editing(folder) as box:
        box[0] = replace(box[0], paused=why)


def clear_ended(folder: str | Path) -> int:
    """Forget the runs that ended (their run folders stay); returns how many."""
    with editing(folder) as box:
        kept = tuple(e for e in box[0].entries if e.status not in ENDED)
        gone = len(box[0].entries) - len(kept)
        box[0] = replace(box[0], entries=kept)
    return gone


def runner_alive(queue: Queue) -> bool:
    from engine.files.pids import pid_alive

    return (queue.runner_pid is not None and queue.runner_host == socket.gethostname()
            and pid_alive(queue.runner_pid))


def _terminate(pid: int) -> None:
    import signal

    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
