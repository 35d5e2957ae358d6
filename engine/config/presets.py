"""Presets: TOML files of plain RunConfig values in presets/, each applied over the defaults."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.config.schema import ConfigError, Problem, RunConfig, load_toml
from engine.files.paths import presets_dir, resolve_project_path, shipped_presets_dir

NOT_PRESETS = {"models.toml"}


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    values: dict[str, Any]
    path: Path

    def apply(self, base: RunConfig | None = None) -> RunConfig:
        values = {**(base or RunConfig()).to_dict(), **self.values}
        values["dataset"] = resolve_project_path(values["dataset"])
        return RunConfig.from_dict(values, source=str(self.path))


def list_presets(folder: Path | None = None) -> list[Preset]:
    """The presets of `folder`; by default the user's (FTUI_PRESETS) and then ftui's own that
    none of theirs overrides by name."""
    if folder is not None:
        return [load_preset_file(p) for p in _preset_files(folder)]
    files = {p.stem: p for p in _preset_files(shipped_presets_dir())}
    files.update({p.stem: p for p in _preset_files(presets_dir())})
    return [load_preset_file(files[name]) for name in sorted(files)]


def load_preset(name: str) -> Preset:
    """The user's preset of that name, else ftui's own."""
    for folder in (presets_dir(), shipped_presets_dir()):
        path = folder / f"{name}.toml"
        if path.exists():
            return load_preset_file(path)
    names = [p.name for p in list_presets()]
    raise ConfigError([Problem("preset", f"no preset {name!r}; available: {', '.join(names)}")])


def _preset_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.toml") if p.name not in NOT_PRESETS)


def load_preset_file(path: Path) -> Preset:
    try:
        description = tomllib.loads(path.read_text(encoding="utf-8")).get("description", "")
    except (tomllib.TOMLDecodeError, FileNotFoundError, UnicodeDecodeError):
        description = ""
    values = load_toml(path)
    # Unknown keys and wrong types surface here, naming the file.
    RunConfig.from_dict(values, source=str(path))
    return Preset(path.stem, description, values, path)


def save_preset(config: RunConfig, name: str, description: str, folder: Path | None = None) -> Path:
    """Write a config as a new preset file (atomically: a crash leaves no half file)."""
    from engine.files.atomic import write_text_atomic

    folder = folder or presets_dir()
    path = folder / f"{name}.toml"
    header = f'description = "{description.replace(chr(34), chr(39))}"\n'
    write_text_atomic(path, header + config.to_toml())
    return path
