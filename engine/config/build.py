"""Where a RunConfig comes from: a preset or a config file, `--set` overrides, a recommendation.

The CLI and the TUI describe what the user chose; the config itself is built here, once, so a
preset means the same thing on both faces.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from engine.config.presets import Preset, load_preset
from engine.config.schema import Problem, RunConfig, load_toml, parse_set
from engine.hardware.probe import HardwareReport
from engine.hardware.recommend import CPU_PRESET, PRESET_FOR_METHOD, Recommendation


def build_config(preset: str | None = None, config_file: str | Path | None = None,
                 sets: Sequence[str] = (), notes: list[Problem] | None = None) -> RunConfig:
    """Defaults, then a preset or a TOML file, then `key=value` overrides; ConfigError names the source.
    Other tools' keys in the file or `--set` are read as ftui's, with a warning each in `notes`."""
    if preset and config_file:
        raise ValueError("a config starts from a preset or a config file, not both")
    if preset:
        config = load_preset(preset).apply()
    elif config_file:
        config = RunConfig.from_dict({**RunConfig().to_dict(), **load_toml(Path(config_file))}, source=str(config_file),
                                     notes=notes)
    else:
        config = RunConfig()
    if sets:
        config = RunConfig.from_dict({**config.to_dict(), **parse_set(list(sets))}, source="--set", notes=notes)
    return config


def config_from_recommendation(rec: Recommendation, report: HardwareReport, presets: Sequence[Preset],
                               current: RunConfig) -> tuple[RunConfig, str]:
    """On a CPU the demo preset as it is; on a GPU the preset for the method with the
    recommended model, batch, accumulation and length laid over it. Returns the config and
    where it came from, in words."""
    by_name = {p.name: p for p in presets}
    name = CPU_PRESET if not report.gpus else PRESET_FOR_METHOD.get(rec.method, "balanced")
    preset = by_name.get(name)
    base = preset.apply(RunConfig(dataset=current.dataset)) if preset else current
    if not report.gpus:
        return base.replace(model=rec.model), f"preset {name}"
    return base.replace(model=rec.model, method=rec.method, batch_size=rec.batch_size, grad_accum=rec.grad_accum,
                        max_seq_len=rec.seq_len, gpus=rec.gpus, strategy=rec.strategy or "auto"), \
        f"preset {name} + recommendation"
