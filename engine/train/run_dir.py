"""The run directory: everything a run leaves behind, in files a person and export can read.

runs/<YYYY-MM-DD-HHMM>-<name>/
  config.toml     the resolved RunConfig (resume and export read it back)
  run.json        status, step, best validation loss, model refs, timestamps, pid
  metrics.jsonl   one event per line, appended and flushed as it happens
  checkpoints/step-N/   written under a temporary name, then renamed
  adapter/ or model/    the final (or best) PEFT adapter, or the full model
  tokenizer/
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from engine.atomic import write_text_atomic
from engine.config import RunConfig
from engine.events import to_record

CHECKPOINT_PREFIX = "step-"


def new_run_path(output_dir: str | Path, name: str) -> Path:
    """A fresh folder name; a second run in the same minute gets a -2 suffix."""
    base = Path(output_dir) / f"{datetime.now():%Y-%m-%d-%H%M}-{name}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def complete_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoints by step; a half-written one still has its temporary name and is not listed."""
    folder = run_dir / "checkpoints"
    found = []
    for p in folder.glob(f"{CHECKPOINT_PREFIX}*") if folder.is_dir() else ():
        suffix = p.name[len(CHECKPOINT_PREFIX):]
        if p.is_dir() and suffix.isdigit() and (p / "state.json").exists():
            found.append((int(suffix), p))
    return [p for _, p in sorted(found)]


@dataclass
class RunDir:
    path: Path
    config: RunConfig
    model_ref: str = ""
    base_model_ref: str | None = None
    status: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def create(cls, config: RunConfig, model_ref: str, base_model_ref: str | None) -> RunDir:
        path = new_run_path(config.output_dir, config.name)
        path.mkdir(parents=True)
        run = cls(path, config, model_ref, base_model_ref)
        write_text_atomic(path / "config.toml", config.to_toml())
        now = _now()
        run.status = {
            "status": "running", "step": 0, "total_steps": 0, "best_val_loss": None,
            "name": config.name, "model": config.model, "model_ref": model_ref,
            "base_model_ref": base_model_ref or model_ref, "method": config.method,
            "created": now, "updated": now,
        }
        run.write_status()
        return run

    @classmethod
    def reopen(cls, path: Path, config: RunConfig) -> RunDir:
        status = json.loads((path / "run.json").read_text(encoding="utf-8"))
        return cls(path, config, status.get("model_ref", ""), status.get("base_model_ref"), status)

    def write_status(self, **changes: Any) -> None:
        self.status.update(changes, updated=_now(), pid=os.getpid(), host=socket.gethostname())
        write_text_atomic(self.path / "run.json", json.dumps(self.status, indent=2) + "\n")

    def append_event(self, event: Any) -> None:
        line = json.dumps({"time": round(time.time(), 3), **to_record(event)})
        with open(self.path / "metrics.jsonl", "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()

    def truncate_metrics(self, after_step: int) -> None:
        """Drop what a killed or retried attempt logged past `after_step`, so curves do not double back."""
        path = self.path / "metrics.jsonl"
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

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"


def _now() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")
