"""Everything a sweep has reported so far, kept by the app so its screen can be left and reopened:
one TrainingLog per variant started, and at the end the engine's choice with its reason."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from engine.events import Event, Progress, TrainStarted
from tui.training_log import TrainingLog

if TYPE_CHECKING:
    from engine.sweep import SweepResult


@dataclass
class SweepLog:
    labels: list[str] = field(default_factory=list)
    """The variants in the order they train, e.g. "learning_rate=5e-05"."""
    status: str = "idle"
    """idle, running, stopping, finished, stopped or failed."""
    folder: str | None = None
    runs: list[TrainingLog] = field(default_factory=list)
    """One per variant started, in the order of `labels`."""
    lines: list[str] = field(default_factory=list)
    result: SweepResult | None = None
    error: str | None = None
    version: int = 0
    """Counts changes, so a screen redraws only when there is something new."""

    @property
    def active(self) -> bool:
        return self.status in ("running", "stopping")

    def apply(self, event: Event) -> None:
        """Record one event of the variant in training."""
        self.version += 1
        if isinstance(event, Progress) and event.stage == "sweep":
            index = int(event.done)
            # The engine announces each variant before training it, and ends with its choice.
            if index == len(self.runs) and index < len(self.labels) and event.message == f"training {self.labels[index]}":
                self.runs.append(TrainingLog(status="preparing"))
            self.lines.append(f"[{index}/{len(self.labels)}] {event.message}")
            return
        if not self.runs:
            return
        if isinstance(event, TrainStarted) and self.folder is None:
            self.folder = str(Path(event.run_dir).parent)
        line = self.runs[-1].apply(event)
        if line:
            self.lines.append(f"{self.labels[len(self.runs) - 1]}: {line}")

    def stopping(self) -> None:
        self.version += 1
        self.status = "stopping"
        self.lines.append("stop requested: the variant in training stops at a checkpoint, the rest do not start")

    def finish(self, result: SweepResult) -> None:
        self.version += 1
        self.result = result
        self.folder = result.folder
        self.status = "stopped" if self.status == "stopping" or len(result.variants) < len(self.labels) else "finished"
        self.lines.append(f"{'Chosen' if result.best else 'No variant chosen'}: {result.reason}")

    def fail(self, error: str) -> None:
        self.version += 1
        self.status = "failed"
        self.error = error
        self.lines.append(f"failed: {error}")
