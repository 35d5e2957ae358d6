"""The writing side of a run directory, used by the trainer alone while the run is live."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from engine.config.schema import RunConfig
from engine.events import to_record
from engine.files.atomic import write_text_atomic
from engine.files.control import append_line
from engine.runs.layout import checkpoint_path, new_run_path, write_config
from engine.runs.live import RunLock, Watcher, acquire
from engine.runs.record import RunRecord, read_record, write_record

METRICS_FILE = "metrics.jsonl"


@dataclass
class RunDir:
    path: Path
    config: RunConfig
    record: RunRecord
    lock: RunLock | None = None
    """Held from create/reopen until `live` ends: one writer per run."""

    @classmethod
    def create(cls, config: RunConfig, model_ref: str, base_model_ref: str | None) -> RunDir:
        path = new_run_path(config.output_dir, config.name)
        path.mkdir(parents=True)
        write_config(path, config)
        now = _now()
        record = RunRecord(name=config.name, model=config.model, model_ref=model_ref,
                           base_model_ref=base_model_ref or model_ref, method=config.method, created=now, updated=now)
        run = cls(path, config, record, acquire(path))
        run.write_status()
        return run

    @classmethod
    def reopen(cls, path: Path, config: RunConfig) -> RunDir:
        """The run again, for a resume; RunBusy names the process that is training it now."""
        lock = acquire(path)
        try:
            run = cls(path, config, read_record(path), lock)
            run.write_status(status="running", reason="")
        except BaseException:
            lock.release()
            raise
        return run

    @contextmanager
    def live(self, stop: threading.Event) -> Iterator[None]:
        """While training: the heartbeat beats and a stop file sets `stop`; afterwards the lock goes."""
        watcher = Watcher(self.path, stop).start()
        try:
            yield
        finally:
            watcher.close()
            if self.lock is not None:
                self.lock.release()

    @property
    def model_ref(self) -> str:
        return self.record.model_ref

    @property
    def base_model_ref(self) -> str:
        return self.record.base_model_ref

    def write_status(self, **changes: Any) -> None:
        self.record = dataclasses.replace(self.record, **changes, updated=_now(), pid=os.getpid(),
                                          host=socket.gethostname())
        write_record(self.path, self.record)

    def write_config(self, config: RunConfig) -> None:
        """The config a retry with a smaller setting actually runs, so resume and export read it."""
        self.config = config
        write_config(self.path, config)

    def checkpoint(self, step: int) -> Path:
        return checkpoint_path(self.path, step)

    def append_event(self, event: Any) -> None:
        append_line(self.path / METRICS_FILE, json.dumps({"time": round(time.time(), 3), **to_record(event)}))

    def truncate_metrics(self, after_step: int) -> None:
        """Drop what a killed or retried attempt logged past `after_step`, so curves do not double back."""
        path = self.path / METRICS_FILE
        if not path.exists():
            return
        kept = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                break  # a line cut short by the kill
            if isinstance(record.get("step"), int) and record["step"] > after_step:
                break
            kept.append(line)
        write_text_atomic(path, "".join(k + "\n" for k in kept))


class PeerRun(RunDir):
    """The run as a process other than rank 0 sees it: the same folder and config, and no writes
    (rank 0 writes run.json, metrics.jsonl, the lock and heartbeat for all of them)."""

    def __init__(self, path: Path, config: RunConfig):
        super().__init__(path, config, RunRecord(name=config.name, model=config.model, model_ref="", base_model_ref="",
                                                 method=config.method, created="", updated=""))

    @contextmanager
    def live(self, stop: threading.Event) -> Iterator[None]:
        yield

    def write_status(self, **changes: Any) -> None:
        self.record = dataclasses.replace(self.record, **changes)

    def write_config(self, config: RunConfig) -> None:
        self.config = config

    def append_event(self, event: Any) -> None:
        pass

    def truncate_metrics(self, after_step: int) -> None:
        pass


def record_failure(run_dir: Path, event: Any) -> None:
    """A failure rank 0 could not write itself (another process failed first and took it down):
    run.json says failed, with the reason, and metrics.jsonl ends with the TrainFailed."""
    record = read_record(run_dir)
    write_record(run_dir, dataclasses.replace(record, status="failed", reason=event.reason, updated=_now()))
    append_line(run_dir / METRICS_FILE, json.dumps({"time": round(time.time(), 3), **to_record(event)}))


def _now() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")
