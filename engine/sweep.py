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
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.config.schema import NAME_PUNCTUATION, ConfigError, Problem, RunConfig, parse_set
from engine.events import EventSink, Progress, ignore
from engine.files.atomic import write_text_atomic
from engine.runs.layout import SWEEP_FILE

if TYPE_CHECKING:
    from engine.train import RunResult

Trainer = Callable[[RunConfig, EventSink, threading.Event], "RunResult | None"]
"""Trains one variant to its end: engine.train.train in this process, or a run in a process of
its own followed from here, which answers None when its follower left it training."""

RATE_RATIOS = (1 / 20, 1 / 4, 1.0)
"""The guides' 1e-5, 5e-5, 2e-4 as ratios to the top rate."""
MIN_RATE = 1e-6


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


def parse_grid(sets: list[str]) -> tuple[list[str], dict[str, list[Any]]]:
    """`KEY=V1,V2` items split into those with one value, which fix a setting for every variant,
    and the swept ones, each value read as TOML (`1e-5` a number) or kept as text for the schema
    to judge ("expected a number, got 'abc'")."""
    fixed = [s for s in sets if "," not in s.partition("=")[2]]
    swept = {k: _values(v) for k, v in parse_set([s for s in sets if s not in fixed]).items()}
    return fixed, swept


def suggested_rates(config: RunConfig) -> list[float]:
    """Learning rates to sweep first: the config's own and 4 and 20 times below it. A preset's rate
    is already the high end that learns in its few steps (the demo's 7e-4 sits near the schema's 1e-3
    ceiling), so the question a sweep answers is whether a gentler rate learns as well and forgets less."""
    rates = {max(MIN_RATE, float(f"{config.learning_rate * r:.2g}")) for r in RATE_RATIOS}
    return sorted(rates)


def new_sweep_folder(output_dir: str | Path, name: str) -> Path:
    base = Path(output_dir) / f"{datetime.now():%Y-%m-%d-%H%M}-sweep-{name}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    path.mkdir(parents=True)
    return path


def run_sweep(variants: list[Variant], folder: Path, on_event: EventSink = ignore,
              stop: threading.Event | None = None, measure_retention: bool = False,
              trainer: Trainer | None = None) -> SweepResult:
    """Train each variant into `folder` with `trainer` (export and evaluate it too with
    `measure_retention`), then choose; sweep.json is rewritten after each variant, so a stopped
    sweep keeps its table. A variant left training (`trainer` answered None) ends the sweep there."""
    if trainer is None:
        from engine.train import train

        trainer = train

    stop = stop or threading.Event()
    results: list[VariantResult] = []
    for i, variant in enumerate(variants):
        if stop.is_set():
            break
        on_event(Progress("sweep", i, len(variants), "variants", f"training {variant.label}"))
        config = variant_config(variant, folder)
        result = trainer(config, on_event, stop)
        if result is None:
            break
        retention: float | None = None
        findings: tuple[str, ...] = ()
        if measure_retention and result.ok and result.run_dir and not stop.is_set():
            retention, findings = _retention(result.run_dir, config, on_event)
        results.append(VariantResult(variant.label, result.run_dir, result.status, result.best_val_loss,
                                     retention, findings))
        write_sweep(folder, results)
    best, reason = choose(results)
    on_event(Progress("sweep", len(results), len(variants), "variants", reason))
    return SweepResult(str(folder), tuple(results), best, reason)


def variant_config(variant: Variant, folder: Path) -> RunConfig:
    """The variant's config as it trains: into the sweep folder, under a name that says its value."""
    return variant.config.replace(output_dir=str(folder), name=_slug(variant.config.name, variant.label))


def write_sweep(folder: Path, results: list[VariantResult]) -> None:
    """sweep.json for the variants that ended so far, with the choice among them; a sweep run
    through the queue (engine/runqueue) writes it after each variant, as run_sweep does."""
    _write(folder, results, *choose(results))


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


def _values(raw: object) -> list[Any]:
    """`1e-5,5e-5` arrives from parse_set as the text it could not read as one TOML value; an
    empty part (`1e-5, , 5e-5`, a trailing comma) is a slip of the keyboard, not a value."""
    if isinstance(raw, list):
        return raw
    out: list[Any] = []
    for part in filter(None, (p.strip() for p in str(raw).split(","))):
        try:
            out.append(tomllib.loads(f"v = {part}")["v"])
        except tomllib.TOMLDecodeError:
            out.append(part)
    return out


def _retention(run_dir: str, config: RunConfig, on_event: EventSink) -> tuple[float | None, tuple[str, ...]]:
    from engine.eval.evaluate import evaluate
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
    """The variant's run name: its first value, with anything outside a run name's alphabet as "-"."""
    value = label.split(",")[0].split("=")[-1]
    return "".join(c if c.isalnum() or c in NAME_PUNCTUATION else "-" for c in f"{name}-{value}")[:120]
