"""Everything a run has reported so far, kept by the app so the training screen can be left and
reopened (or rebuilt from a past run's metrics.jsonl) without losing a point."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import assert_never

from engine.events import (
    CheckpointSaved,
    Diagnosis,
    EvalFailed,
    EvalLogged,
    Event,
    ExportFailed,
    ExportFileWritten,
    ExportFinished,
    ExportStageStarted,
    ExportVerified,
    Progress,
    RewardLogged,
    StepLogged,
    TrainFailed,
    TrainFinished,
    TrainStarted,
)


@dataclass
class TrainingLog:
    status: str = "idle"
    """idle, preparing, running, stopping, finished, stopped or failed."""
    run_dir: str | None = None
    started: TrainStarted | None = None
    last_step: StepLogged | None = None
    train_points: list[tuple[int, float]] = field(default_factory=list)
    val_points: list[tuple[int, float]] = field(default_factory=list)
    metric_points: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    """(step, value) of each of the objective's figures (StepLogged.metrics: DPO's margin, rewards, accuracy)."""
    gpu_points: list[tuple[int, float | None, int | None]] = field(default_factory=list)
    """(step, GiB on the card, utilisation %) of the steps NVML sampled; empty on the CPU."""
    rewards: list[RewardLogged] = field(default_factory=list)
    """GRPO's steps: mean rewards, KL and the latest sample (tui/widgets/reward_panel.py)."""
    best_val_loss: float | None = None
    diagnoses: list[Diagnosis] = field(default_factory=list)
    checkpoints: list[CheckpointSaved] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    finished: TrainFinished | None = None
    failed: TrainFailed | None = None

    @property
    def active(self) -> bool:
        return self.status in ("preparing", "running", "stopping")

    @property
    def total_steps(self) -> int:
        if self.last_step:
            return self.last_step.total_steps
        return self.started.total_steps if self.started else 0

    def apply(self, event: Event) -> str | None:
        """Record one event; return the log line it adds, if any."""
        line = self._line(event)
        if line:
            self.lines.append(line)
        return line

    def _line(self, event: Event) -> str | None:
        # One case per event type: a new one fails mypy here until the training screen handles it.
        match event:
            case Progress():
                if self.status == "idle":
                    self.status = "preparing"
                total = f"/{event.total:g}" if event.total else ""
                return f"{event.stage}: {event.done:g}{total} {event.unit} {event.message}".rstrip()
            case TrainStarted():
                self.status = "running" if self.status != "stopping" else "stopping"
                self.started = event
                self.run_dir = event.run_dir
                self.finished = self.failed = None
                # A resumed session goes on from its checkpoint: what the last one logged after it is gone.
                self.train_points = [p for p in self.train_points if p[0] <= event.start_step]
                self.val_points = [p for p in self.val_points if p[0] <= event.start_step]
                self.metric_points = {k: [p for p in v if p[0] <= event.start_step]
                                      for k, v in self.metric_points.items()}
                self.gpu_points = [p for p in self.gpu_points if p[0] <= event.start_step]
                self.rewards = [r for r in self.rewards if r.step <= event.start_step]
                self.best_val_loss = min((v for _, v in self.val_points), default=None)
                # The last session's rate, ETA and memory are not this one's: figures come with its first step.
                self.last_step = None
                resumed = f", resumed at step {event.start_step}" if event.start_step else ""
                return (f"started {event.run_dir} on {event.device}: {event.total_steps} steps, "
                        f"{event.train_examples} train / {event.val_examples} val examples, "
                        f"{event.trainable_params:,} of {event.total_params:,} parameters trained, "
                        f"{event.pad_share:.0%} padding{resumed}"
                        + (f"; {event.prediction}" if event.prediction else ""))
            case StepLogged():
                self.last_step = event
                self.train_points.append((event.step, event.loss))
                for name, value in event.metrics.items():
                    self.metric_points.setdefault(name, []).append((event.step, value))
                if event.gpu_used_gib is not None or event.gpu_util is not None:
                    self.gpu_points.append((event.step, event.gpu_used_gib, event.gpu_util))
                return None
            case RewardLogged():
                self.rewards.append(event)
                return None
            case EvalLogged():
                self.val_points.append((event.step, event.val_loss))
                self.best_val_loss = event.best_val_loss
                held = "".join(f", {_metric_text(k, v)}" for k, v in event.metrics.items())
                return (f"step {event.step}: validation loss {event.val_loss:.4f} "
                        f"(best {event.best_val_loss:.4f}){held}")
            case CheckpointSaved():
                self.checkpoints.append(event)
                return f"step {event.step}: checkpoint ({event.reason}) {event.path}"
            case Diagnosis():
                self.diagnoses.append(event)
                return f"step {event.step}: {event.kind}: {event.message} {event.advice}"
            case TrainFinished():
                self.finished = event
                self.run_dir = event.run_dir
                self.status = "stopped" if event.stopped else "finished"
                best = f", best validation loss {event.best_val_loss:.4f}" if event.best_val_loss is not None else ""
                # A finished run's reason only repeats the step count; a stopped run's says why.
                why = f" {event.reason}" if event.stopped else ""
                return f"{self.status} after {event.steps} steps: loss {event.final_loss:.4f}{best}.{why}"
            case TrainFailed():
                self.failed = event
                self.status = "failed"
                at = f" at step {event.step}" if event.step is not None else ""
                return f"failed{at}: {event.reason} {event.advice}"
            case ExportStageStarted() | ExportFileWritten() | ExportVerified() | ExportFinished() | ExportFailed():
                return None  # an export's events: the export screen shows them, a run logs none
            case EvalFailed():
                return None  # the evaluation's failure: the export screen shows it
            case _:
                assert_never(event)

    @classmethod
    def replay(cls, events: list[Event], status: str, run_dir: str) -> TrainingLog:
        log = cls(status="running", run_dir=run_dir)
        for event in events:
            log.apply(event)
        if log.status in ("running", "preparing"):
            log.status = status
        return log


METRIC_LABELS = {"reward_chosen": "chosen reward", "reward_rejected": "rejected reward", "margin": "margin",
                 "accuracy": "accuracy"}
"""How the objectives' figures (engine.train.preference.PAIR_METRICS) are named on screen."""


def _metric_text(name: str, value: float) -> str:
    label = METRIC_LABELS.get(name, name.replace("_", " "))
    return f"{label} {value:.0%}" if name == "accuracy" else f"{label} {value:.4f}"


def metrics_text(metrics: dict[str, float]) -> str:
    """A step's objective figures as the status line shows them: "margin 0.1200  accuracy 75%"."""
    return "  ".join(_metric_text(k, v) for k, v in metrics.items() if k in ("margin", "accuracy"))
