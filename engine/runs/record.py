"""run.json as a typed record: what a run is doing now, written by its trainer, read by everyone.

A record from another version or a damaged file is refused with the file and the field named,
so one bad run.json never breaks the listing of the others.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from engine.files.atomic import write_text_atomic

RECORD_FILE = "run.json"
Status = Literal["running", "finished", "stopped", "failed"]


class RunReadError(ValueError):
    pass


@dataclass(frozen=True)
class RunRecord:
    name: str
    model: str
    """The model as the config names it (catalog id, hub id or folder)."""
    model_ref: str
    """The folder or hub id training loaded."""
    base_model_ref: str
    """The 16-bit model an adapter merges into (differs from model_ref for 4-bit repositories)."""
    method: str
    created: str
    updated: str
    status: Status = "running"
    step: int = 0
    total_steps: int = 0
    best_val_loss: float | None = None
    reason: str = ""
    pid: int | None = None
    host: str = ""


_TYPES: dict[str, tuple[type, ...]] = {
    "name": (str,), "model": (str,), "model_ref": (str,), "base_model_ref": (str,), "method": (str,),
    "created": (str,), "updated": (str,), "status": (str,), "step": (int,), "total_steps": (int,),
    "best_val_loss": (int, float, type(None)), "reason": (str,), "pid": (int, type(None)), "host": (str,),
}


def record_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / RECORD_FILE


def read_record(run_dir: str | Path) -> RunRecord:
    path = record_path(run_dir)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunReadError(f"{run_dir} is not a run directory (no {RECORD_FILE})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunReadError(f"{path} is not valid JSON ({exc}); the file was cut short or edited") from None
    except OSError as exc:
        raise RunReadError(f"{path} cannot be read: {exc.strerror or exc}") from None
    if not isinstance(data, dict):
        raise RunReadError(f"{path} holds a JSON {type(data).__name__}, not the run's record (an object)")
    values: dict[str, Any] = {}
    for f in dataclasses.fields(RunRecord):
        if f.name not in data:
            continue
        value = data[f.name]
        if not isinstance(value, _TYPES[f.name]) or isinstance(value, bool):
            raise RunReadError(f"{path}: {f.name} is {value!r}, which is not a {_TYPES[f.name][0].__name__}")
        if isinstance(value, float) and not math.isfinite(value):
            raise RunReadError(f"{path}: {f.name} is {value}")
        values[f.name] = value
    # Records written by hand or by older versions may lack these; the folder says enough.
    values.setdefault("name", Path(run_dir).name)
    values.setdefault("method", "")
    values.setdefault("created", "")
    values.setdefault("model", "")
    values.setdefault("model_ref", values["model"])
    values.setdefault("base_model_ref", values["model_ref"])
    values.setdefault("updated", values["created"])
    return RunRecord(**values)


def write_record(run_dir: str | Path, record: RunRecord) -> None:
    write_text_atomic(record_path(run_dir), json.dumps(dataclasses.asdict(record), indent=2) + "\n")
