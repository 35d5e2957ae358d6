"""What this machine's runs really held in memory, against what was estimated for them: the gap
the next recommendation and memory estimate on this machine plan with.

The figure is the newest finished run in the output folder on the same kind of device (CPU, CUDA)
whose steps logged their peak: torch's max_memory_allocated on CUDA, which the estimate's
`tensors_gib` predicts, and the process's peak RSS on the CPU. Its own config is estimated again
now, so the ratio compares like with like whatever this version's estimator says.

Only a measurement above the estimate changes a plan. One below it says little: a run's batches
are as long as its examples, often far shorter than max_seq_len, which the estimate assumes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine.events import StepLogged, TrainStarted
from engine.runs.listing import list_runs, read_events


@dataclass(frozen=True)
class MeasuredMemory:
    run_dir: str
    model: str
    method: str
    device: str
    """"cpu" or "cuda"."""
    measured_gib: float
    """The highest peak its steps logged."""
    estimated_gib: float
    """What the estimate predicts for its config (tensors only, as the measurement counts)."""

    @property
    def run_name(self) -> str:
        return Path(self.run_dir).name

    @property
    def ratio(self) -> float:
        """How far above the estimate this machine's runs go; 1.0 when at or below it."""
        return max(1.0, self.measured_gib / self.estimated_gib) if self.estimated_gib > 0 else 1.0

    def describe(self) -> str:
        """One sentence: what was measured, by which run, and what that changes."""
        said = (f"measured {self.measured_gib:.2f} GiB by {self.run_name} ({self.model}, {self.method}) "
                f"where {self.estimated_gib:.2f} GiB was estimated")
        if self.ratio > 1.0:
            return f"{said}: estimates here are raised {self.ratio:.2f}x"
        return f"{said}: the estimate holds on this machine"


def device_kind(device: str) -> str:
    """"cpu" or "cuda" from a TrainStarted device label ("cpu bfloat16 autocast", "cuda:0 bf16 x2")."""
    return device.split()[0].split(":")[0] if device else ""


def measured_memory(output_dir: str | Path, device: str) -> MeasuredMemory | None:
    """The newest finished run on `device` ("cpu" or "cuda") that logged its peak, or None."""
    from engine.config.schema import ConfigError
    from engine.hardware.estimate import estimate_for
    from engine.runs.layout import read_config

    for run in list_runs(output_dir):
        if run.status != "finished":
            continue
        events = read_events(run.path)
        started = [e for e in events if isinstance(e, TrainStarted)]
        peaks = [e.peak_mem_gib for e in events if isinstance(e, StepLogged) and e.peak_mem_gib > 0]
        if not started or not peaks or device_kind(started[-1].device) != device:
            continue
        try:
            estimated = estimate_for(read_config(run.path))
        except (ConfigError, OSError):
            continue
        if estimated is None:
            continue
        return MeasuredMemory(run.path, run.model, run.method, device, round(max(peaks), 3),
                              round(estimated.tensors_gib, 3))
    return None
