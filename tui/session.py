"""What ftui's screens share, in one typed object the app owns: the config the next run trains with,
the run in focus, the machine's hardware and plan, the doctor's findings, and what the run and the
sweep have reported so far.

Screens read and change it as `self.session` (tui/screens/base.py). Everything else they ask of
the app is `Host`, a Protocol of the app's few members; screens, and the two widgets that ask the
app (the config form's forecast line, the training screen's GPU line), see the app only through
it, so mypy fails one that reaches further:

- `session`: this object;
- `backend`: the engine (tui/backend.py, `EngineBackend`);
- `goto(name)`: show a screen;
- `start_training`, `stop_training`, `attach_run`: start, stop or follow a run (the app's worker);
- `start_sweep`, `stop_sweep`: the same for a sweep.

The app tells the training screen what changed in the training log with messages
(tui/messages.py); it never calls into a screen.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from engine.config.schema import RunConfig
from tui.sweep_log import SweepLog
from tui.training_log import TrainingLog

if TYPE_CHECKING:
    from engine.hardware.doctor import DoctorReport
    from engine.hardware.estimate import MemoryEstimate
    from engine.hardware.probe import HardwareReport
    from engine.hardware.recommend import Recommendation
    from engine.sweep import Variant
    from tui.backend import EngineBackend


@dataclass(frozen=True)
class Draft:
    """The config the next run trains with, and where it came from in words ("preset demo",
    "edited in the form"): changed together, so the source shown beside a config is its own."""

    config: RunConfig
    source: str


@dataclass(frozen=True)
class RunFocus:
    """The run the export and chat screens act on, and the GGUF of that run chat opens: changed
    together, so chat never shows one run's GGUF while evaluating another run."""

    run_dir: str | None = None
    gguf: str | None = None


@dataclass
class Session:
    draft: Draft
    run_focus: RunFocus = field(default_factory=RunFocus)
    """The last trained run, or the one chosen on the runs screen."""
    hardware: HardwareReport | None = None
    """The probe's report, once the home screen's probe has answered."""
    recommendation: Recommendation | None = None
    """The plan for this machine within the family chosen on the home screen."""
    doctor: DoctorReport | None = None
    """The doctor's last DoctorReport (engine/hardware/doctor.py), shown on the home screen."""
    doctor_error: str | None = None
    """Why the doctor's last pass could not run (its process crashed), or None."""
    training: TrainingLog = field(default_factory=TrainingLog)
    """What the run shown on the training screen has reported (replaced per run)."""
    sweep: SweepLog = field(default_factory=SweepLog)
    """What the sweep shown on the sweep screen has reported (replaced per sweep)."""

    @property
    def config(self) -> RunConfig:
        return self.draft.config

    @property
    def config_source(self) -> str:
        return self.draft.source

    def choose_config(self, config: RunConfig, source: str) -> None:
        self.draft = Draft(config, source)

    def focus_run(self, run_dir: str | None, gguf: str | None = None) -> None:
        """Export and chat act on `run_dir` now; a GGUF of another run is forgotten."""
        self.run_focus = RunFocus(run_dir, gguf)

    def focus_gguf(self, gguf: str) -> None:
        """An export of the focused run made `gguf`: chat opens it."""
        self.run_focus = dataclasses.replace(self.run_focus, gguf=gguf)

    def memory_need(self, estimate: MemoryEstimate | None) -> float | None:
        """What a run would take from the budget, raised as the home screen's plan is by what this
        machine's newest run measured, so that plan, the presets list and the form agree."""
        from engine.hardware.recommend import memory_need

        if estimate is None:
            return None
        report = self.hardware
        ratio = self.recommendation.measured_ratio if self.recommendation is not None else 1.0
        return memory_need(estimate, report is None or bool(report.gpus), ratio)

    def memory_budget(self) -> tuple[float | None, str]:
        """The memory a run gets: the freest GPU's free VRAM, or RAM in CPU mode."""
        report = self.hardware
        if report is None:
            return None, "free VRAM"
        if report.gpus:
            best = max(report.gpus, key=lambda g: g.free_gib)
            return best.free_gib, "free unified memory" if getattr(best, "unified_memory", False) else "free VRAM"
        return report.ram_gib, "RAM (CPU mode)"


class Host(Protocol):
    """The app as the screens see it: the session and the actions that need the app's workers."""

    @property
    def session(self) -> Session: ...
    @property
    def backend(self) -> EngineBackend: ...
    def goto(self, name: str) -> None: ...
    def start_training(self, config: RunConfig, resume: str | None = None) -> None: ...
    def stop_training(self) -> None: ...
    def attach_run(self, run_dir: str) -> None: ...
    def start_sweep(self, variants: list[Variant], measure_retention: bool) -> None: ...
    def stop_sweep(self) -> None: ...
