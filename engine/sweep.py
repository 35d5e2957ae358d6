"""Learning-rate (or any setting) sweeps: the same run at several values, one after another,
side by side in one folder, and the best chosen by what the fine-tune is for.

The guides' first advice for a new task is a learning-rate sweep (1e-5, 2e-5, 5e-5, ...): too
low learns nothing, too high forgets the rest. A variant is judged by its best validation loss
and, when measured, by retention: a variant that forgets (a retention finding) loses to one that
does not, whatever its loss.
"""

from __future__ import annotations

import itertools
import json
import threading
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from engine.atomic import write_text_atomic
from engine.config import ConfigError, Problem, RunConfig
from engine.events import EventSink, Progress, ignore
from engine.runs.layout import SWEEP_FILE


@dataclass(frozen=True)
class Variant:
    label: str
    """The swept settings, e.g. "learning_rate=5e-05"."""
    config: RunConfig


@dataclass(frozen=True)
class VariantResult:
    label: str
    run_dir: str | None
    status: str
    best_val_loss: float | None
    retention: float | None
    """Share of the base model's right general answers kept (None when not measured)."""
    findings: tuple[str, ...]


@dataclass(frozen=True)
class SweepResult:
    folder: str
    variants: tuple[VariantResult, ...]
    best: str | None
    """Label of the chosen variant; None when none finished."""
    reason: str


def expand(config: RunConfig, grid: dict[str, list[Any]]) -> list[Variant]:
    """Every combination of the grid's values laid over `config`; ConfigError names a bad value."""
    if not grid:
        raise ConfigError([Problem("--set", "a sweep needs at least one setting with several values, "
                                            "e.g. --set learning_rate=1e-5,5e-5,2e-4")])
    names = list(grid)
    variants = []
    for values in itertools.product(*(grid[n] for n in names)):
        changes = dict(zip(names, values, strict=True))
        label = ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in changes.items())
        variant = RunConfig.from_dict({**config.to_dict(), **changes}, source=label)
        variant.validate()  # a value out of range fails now, not after the variants before it trained
        variants.append(Variant(label, variant))
    return variants


def new_sweep_folder(output_dir: str | Path, name: str) -> Path:
    base = Path(output_dir) / f"{datetime.now():%Y-%m-%d-%H%M}-sweep-{name}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    path.mkdir(parents=True)
    return path


def run_sweep(variants: list[Variant], folder: Path, on_event: EventSink = ignore,
              stop: threading.Event | None = None, measure_retention: bool = False) -> SweepResult:
    """Train each variant into `folder` (export and evaluate it too with `measure_retention`),
    then choose; sweep.json is rewritten after each variant, so a stopped sweep keeps its table."""
    from engine.train import train

    stop = stop or threading.Event()
    results: list[VariantResult] = []
    for i, variant in enumerate(variants):
        if stop.is_set():
            break
        on_event(Progress("sweep", i, len(variants), "variants", f"training {variant.label}"))
        config = variant.config.replace(output_dir=str(folder), name=_slug(variant.config.name, variant.label))
        result = train(config, on_event, stop)
        retention: float | None = None
        findings: tuple[str, ...] = ()
        if measure_retention and result.ok and result.run_dir and not stop.is_set():
            retention, findings = _retention(result.run_dir, config, on_event)
        results.append(VariantResult(variant.label, result.run_dir, result.status, result.best_val_loss,
                                     retention, findings))
        _write(folder, results, *choose(results))
    best, reason = choose(results)
    on_event(Progress("sweep", len(results), len(variants), "variants", reason))
    return SweepResult(str(folder), tuple(results), best, reason)


def choose(results: list[VariantResult]) -> tuple[str | None, str]:
    """The variant without retention findings that reached the lowest validation loss."""
    done = [r for r in results if r.status != "failed" and r.best_val_loss is not None]
    if not done:
        return None, "no variant finished with a validation loss"
    keeps = [r for r in done if not r.findings]
    pool = keeps or done
    best = min(pool, key=lambda r: r.best_val_loss or float("inf"))
    why = f"{best.label}: lowest validation loss {best.best_val_loss:.4f}"
    if keeps and len(keeps) < len(done):
        why += f" among the {len(keeps)} variants that kept the base model's general answers"
    elif not keeps and any(r.retention is not None for r in done):
        why += "; every variant showed forgetting or collapse: lower the learning rate or raise retention_mix"
    return best.label, why


def read_sweep(folder: str | Path) -> SweepResult:
    data = json.loads((Path(folder) / SWEEP_FILE).read_text(encoding="utf-8"))
    variants = tuple(VariantResult(**{**v, "findings": tuple(v["findings"])}) for v in data["variants"])
    return SweepResult(str(folder), variants, data["best"], data["reason"])


def _retention(run_dir: str, config: RunConfig, on_event: EventSink) -> tuple[float | None, tuple[str, ...]]:
    from engine.evaluate import evaluate
    from engine.export import export

    exported = export(run_dir, quants=config.export_quants, on_event=on_event)
    if not exported.files:
        return None, ()
    report = evaluate(run_dir, on_event)
    if report.retention is None:
        return None, ()
    return report.retention.exact.share, tuple(f.message for f in report.retention.findings)


def _write(folder: Path, results: list[VariantResult], best: str | None, reason: str) -> None:
    record = {"variants": [asdict(r) for r in results], "best": best, "reason": reason}
    write_text_atomic(folder / SWEEP_FILE, json.dumps(record, indent=2) + "\n")


def _slug(name: str, label: str) -> str:
    value = label.split(",")[0].split("=")[-1]
    return f"{name}-{value}".replace("/", "-")[:120]
