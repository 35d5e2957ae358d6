"""The runs a user has made, read from their run directories (see engine/train/run_dir.py).

Readers never need torch: `ftui runs`, the TUI's run list and export all start here.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class RunInfo:
    path: str
    name: str
    status: str
    """running, finished, stopped, failed, or interrupted (the process died without saying so)."""
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
    reason: str = ""


class RunReadError(ValueError):
    pass


def read_events(path: str | Path) -> list[Any]:
    """The events a run logged to metrics.jsonl, in order, to redraw its charts. A line cut
    short by a killed process, or of an event type this version does not know, is skipped."""
    from engine.events import from_record

    metrics = Path(path) / "metrics.jsonl"
    if not metrics.exists():
        return []
    out = []
    for line in metrics.read_text(encoding="utf-8").splitlines():
        try:
            event = from_record(json.loads(line))
        except (ValueError, TypeError):
            continue
        if event is not None:
            out.append(event)
    return out


def read_run(path: str | Path) -> RunInfo:
    from engine.train.run_dir import complete_checkpoints

    path = Path(path)
    try:
        data = json.loads((path / "run.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunReadError(f"{path} is not a run directory (no run.json)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunReadError(f"{path / 'run.json'} is not valid JSON: {exc}") from None
    status = data.get("status", "unknown")
    if status == "running" and not _alive(data.get("pid"), data.get("host")):
        status = "interrupted"
    artifacts = tuple(a for a in ("adapter", "model", "tokenizer", "export") if (path / a).is_dir())
    return RunInfo(
        path=str(path), name=data.get("name", path.name), status=status,
        step=int(data.get("step", 0)), total_steps=int(data.get("total_steps", 0)),
        best_val_loss=data.get("best_val_loss"), model=data.get("model", ""),
        model_ref=data.get("model_ref", ""), base_model_ref=data.get("base_model_ref", ""),
        method=data.get("method", ""), created=data.get("created", ""), updated=data.get("updated", ""),
        checkpoints=tuple(str(p) for p in complete_checkpoints(path)), artifacts=artifacts,
        reason=data.get("reason", ""),
    )


def list_runs(output_dir: str | Path = "runs") -> list[RunInfo]:
    """Runs under output_dir, newest first; folders without a readable run.json are skipped."""
    folder = Path(output_dir)
    runs = []
    for p in folder.iterdir() if folder.is_dir() else ():
        if p.is_dir() and (p / "run.json").exists():
            try:
                runs.append(read_run(p))
            except RunReadError:
                continue
    return sorted(runs, key=lambda r: (r.created, r.path), reverse=True)


def _alive(pid: object, host: object) -> bool:
    if not isinstance(pid, int) or host != socket.gethostname():
        return True  # another machine's run: trust what it wrote
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
