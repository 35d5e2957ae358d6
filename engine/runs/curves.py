"""Loss curves of finished or running runs, read back from their metrics.jsonl, to lay several
runs over one another (`ftui runs --compare A B`)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.events import EvalLogged, RewardLogged, StepLogged
from engine.runs import read_events


@dataclass(frozen=True)
class Curves:
    run: str
    """The run folder's name."""
    train: tuple[tuple[int, float], ...]
    """(step, training loss), one point a step."""
    val: tuple[tuple[int, float], ...]
    """(step, validation loss) at each evaluation."""
    metrics: dict[str, tuple[tuple[int, float], ...]] = field(default_factory=dict)
    """(step, value) of each of the objective's figures by name (StepLogged.metrics: DPO's margin...)."""
    reward: tuple[tuple[int, float], ...] = ()
    """(step, mean reward) of a GRPO run, one point a step."""

    @property
    def best_val(self) -> tuple[int, float] | None:
        return min(self.val, key=lambda p: p[1]) if self.val else None


def run_curves(run_dir: str | Path) -> Curves:
    """A run's curves, read from its metrics.jsonl."""
    return curves_of(Path(run_dir).name, read_events(run_dir))


def curves_of(run: str, events: Iterable[Any]) -> Curves:
    """The curves in a run's events; a step logged twice (a retried attempt) keeps its last value."""
    train: dict[int, float] = {}
    val: dict[int, float] = {}
    metrics: dict[str, dict[int, float]] = {}
    reward: dict[int, float] = {}
    for event in events:
        if isinstance(event, StepLogged):
            train[event.step] = event.loss
            for name, value in event.metrics.items():
                metrics.setdefault(name, {})[event.step] = value
        elif isinstance(event, EvalLogged):
            val[event.step] = event.val_loss
        elif isinstance(event, RewardLogged):
            reward[event.step] = event.reward
    return Curves(run, tuple(sorted(train.items())), tuple(sorted(val.items())),
                  {name: tuple(sorted(points.items())) for name, points in metrics.items()}, tuple(sorted(reward.items())))


def find_run(name: str, output_dir: str | Path = "runs") -> Path:
    """A run folder from a path, a folder name under `output_dir`, or the run's name (the newest
    folder ending in `-NAME`). Raises ValueError naming what there is."""
    path = Path(name)
    if (path / "metrics.jsonl").is_file() or (path / "run.json").is_file():
        return path
    folder = Path(output_dir)
    runs = sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    for candidate in (folder / name, *reversed([p for p in runs if p.name.endswith(f"-{name}")])):
        if candidate.is_dir():
            return candidate
    close = difflib.get_close_matches(name, [p.name for p in runs], n=1, cutoff=0.5)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(f"no run {name!r} in {folder}/{hint}")
