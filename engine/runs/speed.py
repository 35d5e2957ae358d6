"""How fast this machine trained before: the measured speed behind the wall time a run predicts
before its first step.

The figure is the newest finished run in the output folder with the same model, method and
device (its TrainStarted label: device, precision and processes), so the prediction is this
machine's, not a table's. Its median tokens/s over the steps after the first (which pays for
warm-up) times the tokens the new run plans to read is the time its optimizer steps take;
evaluations and checkpoints come on top.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

from engine.events import StepLogged, TrainStarted
from engine.runs.listing import list_runs, read_events
from engine.runs.memory import device_kind


@dataclass(frozen=True)
class Speed:
    tokens_per_s: float
    run_dir: str
    """The finished run it was measured on."""


@dataclass(frozen=True)
class Prediction:
    seconds: float | None
    """None without an earlier run to measure from."""
    text: str
    """The prediction and where its figure comes from, in one sentence."""


def measured_speed(output_dir: str | Path, model: str, method: str, device: str) -> Speed | None:
    """The median tokens/s of the newest finished run of `model` with `method` on `device`: a
    TrainStarted device label, or only its kind ("cpu", "cuda") where the label is not known yet
    (the config form, before precision and processes are settled)."""
    for run in list_runs(output_dir):
        if run.status != "finished" or run.model != model or run.method != method:
            continue
        events = read_events(run.path)
        started = [e for e in events if isinstance(e, TrainStarted)]
        if not started or device not in (started[-1].device, device_kind(started[-1].device)):
            continue
        speeds = [e.tokens_per_s for e in events if isinstance(e, StepLogged) and e.tokens_per_s > 0]
        if speeds:
            return Speed(statistics.median(speeds[1:] or speeds), run.path)
    return None


def predict(output_dir: str | Path, model: str, method: str, device: str, planned_tokens: int) -> Prediction:
    """The wall time of `planned_tokens` at the speed measured on this machine before."""
    speed = measured_speed(output_dir, model, method, device)
    if speed is None:
        return Prediction(None, f"predicted time: no earlier run to measure from (none finished in {output_dir} "
                                f"with {model}, {method} on {device}); this run's speed will be the measure")
    seconds = planned_tokens / speed.tokens_per_s
    return Prediction(seconds, f"predicted time: about {span(seconds)} for {planned_tokens:,} tokens at "
                               f"{speed.tokens_per_s:,.0f} tokens/s, measured by {speed.run_dir} (same model, "
                               "method and device; evaluations and checkpoints come on top)")


def span(seconds: float) -> str:
    if seconds < 90:
        return f"{max(seconds, 1):.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
