"""The runs a user has made, as `ftui runs`, the TUI's run list, export and chat read them."""

from __future__ import annotations

import dataclasses
import json
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from shlex import quote
from typing import TYPE_CHECKING

from engine.runs.layout import (
    SWEEP_FILE,
    chat_gguf,
    complete_checkpoints,
    export_dir,
    find_ggufs,
    run_dir_of,
    verify_path,
)
from engine.runs.live import RunBusy, not_live_because, writer_alive
from engine.runs.record import RunReadError, read_record, record_path
from engine.runs.writer import METRICS_FILE

if TYPE_CHECKING:
    from engine.events import Event
    from engine.hardware.probe import HardwareReport

ARTIFACTS = ("adapter", "model", "tokenizer", "export")


@dataclass(frozen=True)
class RunInfo:
    path: str
    name: str
    status: str
    """running, finished, stopped, failed, interrupted (the process died without saying so), or
    unreadable (run.json is damaged; `reason` says how)."""
    step: int
    total_steps: int
    best_val_loss: float | None
    model: str
    model_ref: str
    base_model_ref: str
    method: str
    created: str
    updated: str
    checkpoints: tuple[str, ...]
    """Complete checkpoints, oldest first."""
    artifacts: tuple[str, ...]
    """Which of adapter, model, tokenizer, export are present."""
    ggufs: tuple[str, ...] = ()
    """Exported GGUF files."""
    export_status: str = ""
    """"" without GGUFs; "verified" when verify.json passed every one; "failed" when it failed one;
    "unverified" when it is missing or names other files (an export stopped before verifying)."""
    reason: str = ""
    """Why it ended as it did; for an interrupted run, why nothing trains it now."""
    pid: int | None = None
    """The process that trains (or last trained) the run."""
    host: str = ""
    group: str = ""
    """The sweep folder a run belongs to (engine/sweep.py), empty for a run of its own."""

    @property
    def resumable(self) -> bool:
        return self.status in ("stopped", "failed", "interrupted") and self.step < self.total_steps

    @property
    def trained(self) -> bool:
        """Has weights to export or chat with."""
        return "adapter" in self.artifacts or "model" in self.artifacts


def read_events(path: str | Path) -> list[Event]:
    """The events a run logged to metrics.jsonl, in order, to redraw its charts. A line cut
    short by a killed process, or of an event type this version does not know, is skipped."""
    from engine.events import from_record

    metrics = Path(path) / METRICS_FILE
    if not metrics.exists():
        return []
    out: list[Event] = []
    for line in metrics.read_text(encoding="utf-8").splitlines():
        try:
            event = from_record(json.loads(line))
        except (ValueError, TypeError):
            continue
        if event is not None:
            out.append(event)
    return out


def read_run(path: str | Path) -> RunInfo:
    path = Path(path)
    record = read_record(path)
    status: str = record.status
    reason = record.reason
    if status == "running":
        gone = not_live_because(path, record.pid, record.host)
        if gone:
            status, reason = "interrupted", gone
    return RunInfo(
        path=str(path), name=record.name, status=status, step=record.step, total_steps=record.total_steps,
        best_val_loss=record.best_val_loss, model=record.model, model_ref=record.model_ref,
        base_model_ref=record.base_model_ref, method=record.method, created=record.created, updated=record.updated,
        checkpoints=tuple(str(p) for p in complete_checkpoints(path)),
        artifacts=tuple(a for a in ARTIFACTS if (path / a).is_dir()),
        ggufs=_chat_first(path), export_status=export_status(path),
        reason=reason, pid=record.pid,
        host=record.host,
    )


def export_status(run_dir: str | Path) -> str:
    """What verify.json says of the run's exported GGUFs (see RunInfo.export_status)."""
    ggufs = find_ggufs(run_dir)
    if not ggufs:
        return ""
    try:
        report = json.loads(verify_path(export_dir(run_dir)).read_text(encoding="utf-8"))
        passed = {Path(f["path"]).name: f["passed"] for f in report["files"]}
    except (OSError, ValueError, KeyError, TypeError):
        return "unverified"
    if any(p.name not in passed for p in ggufs.values()):
        return "unverified"
    return "verified" if all(passed[p.name] is True for p in ggufs.values()) else "failed"


def is_live(path: str | Path) -> bool:
    """Whether a process is training the run now: run.json says running, and its process and
    heartbeat say so too. Cheaper than read_run, for followers that ask often."""
    try:
        record = read_record(path)
    except RunReadError:
        return False
    return record.status == "running" and writer_alive(path, record.pid, record.host)


def refuse_if_live(path: str | Path) -> None:
    """RunBusy when a process trains the run that `path` (a run directory or one of its
    checkpoints) belongs to: a quick answer before a resume loads the model, which the run's lock
    would refuse later anyway."""
    run_dir = run_dir_of(path)
    if is_live(run_dir):
        record = read_record(run_dir)
        raise RunBusy(run_dir, record.pid, record.host)


def list_runs(output_dir: str | Path = "runs") -> list[RunInfo]:
    """Runs under output_dir, newest first. A run whose run.json cannot be read is listed as
    unreadable, with the reason, rather than left out."""
    folder = Path(output_dir)
    runs = []
    for p in folder.iterdir() if folder.is_dir() else ():
        if p.is_dir() and (p / SWEEP_FILE).exists():
            runs += [dataclasses.replace(r, group=p.name) for r in list_runs(p)]
        elif p.is_dir() and record_path(p).exists():
            try:
                runs.append(read_run(p))
            except RunReadError as exc:
                runs.append(_unreadable(p, str(exc)))
    return sorted(runs, key=lambda r: (r.created, r.path), reverse=True)


def delete_run(path: str | Path) -> None:
    path = Path(path)
    if not record_path(path).exists():
        raise ValueError(f"{path} has no run.json: not deleting a folder that is not a run")
    if is_live(path):
        raise ValueError(f"{path} is training now: stop it first (ftui stop {quote(str(path))})")
    shutil.rmtree(path)


def _unreadable(path: Path, reason: str) -> RunInfo:
    return RunInfo(path=str(path), name=path.name, status="unreadable", step=0, total_steps=0, best_val_loss=None,
                   model="", model_ref="", base_model_ref="", method="", created="", updated="",
                   checkpoints=(), artifacts=(), reason=reason)


@dataclass(frozen=True)
class GpuHolder:
    """A live run of this machine that NVML sees on a GPU, with the memory it holds there."""

    run: RunInfo
    gpu_index: int
    gpu_name: str
    used_gib: float | None

    def describe(self) -> str:
        held = f"holds {self.used_gib:.1f} GiB" if self.used_gib is not None else "is running (NVML does not say how much memory it holds)"
        return f"run {self.run.name} (pid {self.run.pid}) {held} on GPU {self.gpu_index} ({self.gpu_name})"


def gpu_holders(runs: list[RunInfo], report: HardwareReport) -> list[GpuHolder]:
    """The live runs among `runs` whose training process NVML lists on a GPU."""
    here = socket.gethostname()
    live = {r.pid: r for r in runs if r.status == "running" and r.pid is not None and r.host == here}
    return [GpuHolder(live[p.pid], gpu.index, gpu.name, p.used_gib)
            for gpu in report.gpus for p in gpu.processes if p.pid in live]


def _chat_first(path: Path) -> tuple[str, ...]:
    """The run's GGUF files, the one a chat opens (`chat_gguf`: the Modelfile's) first, so every
    screen that picks "the run's GGUF" picks the same one."""
    found = [str(p) for p in find_ggufs(path).values()]
    chat = chat_gguf(path)
    return tuple(dict.fromkeys([str(chat), *found])) if chat is not None else tuple(found)
