"""Where each file of a run lives, and the config that every reader takes back from it."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from engine.config.schema import RunConfig, load_toml
from engine.files.atomic import write_text_atomic

CONFIG_FILE = "config.toml"
CHECKPOINT_PREFIX = "step-"
GGUF_PREFIX = "model-"
SWEEP_FILE = "sweep.json"
"""Marks a folder of runs made by one sweep (engine/sweep.py)."""


def new_run_path(output_dir: str | Path, name: str) -> Path:
    """A fresh folder name; a second run in the same minute gets a -2 suffix."""
    base = Path(output_dir) / f"{datetime.now():%Y-%m-%d-%H%M}-{name}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def config_path(folder: str | Path) -> Path:
    """config.toml of a run directory or of one of its checkpoints."""
    return Path(folder) / CONFIG_FILE


def read_config(folder: str | Path) -> RunConfig:
    """The RunConfig saved in a run directory or checkpoint; ConfigError names the file."""
    path = config_path(folder)
    return RunConfig.from_dict(load_toml(path), source=str(path))


def write_config(folder: str | Path, config: RunConfig) -> None:
    write_text_atomic(config_path(folder), config.to_toml())


def checkpoint_path(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"{CHECKPOINT_PREFIX}{step}"


def run_dir_of(path: str | Path) -> Path:
    """The run directory `path` names: itself, or the run a checkpoint folder belongs to."""
    path = Path(path)
    return path.parent.parent if path.parent.name == "checkpoints" else path


def complete_checkpoints(run_dir: str | Path) -> list[Path]:
    """Checkpoints by step; a half-written one still has its temporary name and is not listed."""
    folder = Path(run_dir) / "checkpoints"
    found = []
    for p in folder.glob(f"{CHECKPOINT_PREFIX}*") if folder.is_dir() else ():
        suffix = p.name[len(CHECKPOINT_PREFIX):]
        if p.is_dir() and suffix.isdigit() and (p / "state.json").exists():
            found.append((int(suffix), p))
    return [p for _, p in sorted(found)]


def weights_dir(run_dir: str | Path, method: str) -> Path:
    """adapter/ (PEFT) or model/ (full fine-tuning)."""
    return Path(run_dir) / ("model" if method == "full" else "adapter")


def tokenizer_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "tokenizer"


def export_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "export"


def gguf_path(out_dir: str | Path, quant: str) -> Path:
    return Path(out_dir) / f"{GGUF_PREFIX}{quant}.gguf"


def verify_path(out_dir: str | Path) -> Path:
    return Path(out_dir) / "verify.json"


def eval_report_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / "eval.json"


def find_ggufs(run_dir: str | Path) -> dict[str, Path]:
    """The run's exported GGUF files by quantisation type, in name order."""
    folder = export_dir(run_dir)
    found = sorted(folder.glob(f"{GGUF_PREFIX}*.gguf")) if folder.is_dir() else []
    return {p.stem[len(GGUF_PREFIX):]: p for p in found}


def chat_gguf(run_dir: str | Path) -> Path | None:
    """The GGUF a user chats with: the one the Modelfile names (the smallest quantisation
    exported), else the first found; None when the run has no export."""
    modelfile = export_dir(run_dir) / "Modelfile"
    if modelfile.is_file():
        lines = modelfile.read_text(encoding="utf-8").splitlines()
        if lines and lines[0].startswith("FROM ./"):
            named = export_dir(run_dir) / lines[0].removeprefix("FROM ./")
            if named.is_file():
                return named
    found = find_ggufs(run_dir)
    return next(iter(found.values()), None)
