"""The one protocol between long engine work and whoever shows it (the TUI, the CLI, tests).

Long work is a plain function that takes `on_event: Callable[[Event], None]` and a
`threading.Event` to stop. Events are frozen dataclasses so they can cross threads safely and
be written to `metrics.jsonl` as they are.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Progress:
    """A stage of preparation: download, conversion, tokenisation, merge, quantisation."""

    stage: str
    done: float
    total: float | None
    unit: str = ""
    message: str = ""


@dataclass(frozen=True)
class TrainStarted:
    run_dir: str
    total_steps: int
    epochs: float
    train_examples: int
    val_examples: int
    trainable_params: int
    total_params: int
    device: str
    pad_share: float
    """Share of tokens in the planned batches that are padding, 0..1."""
    start_step: int = 0
    """Non-zero when resuming: the step the run continues from."""
    planned_tokens: int = 0
    """Tokens the steps still to run will read (padding excluded, as StepLogged.tokens_per_s counts)."""
    predicted_s: float | None = None
    """Their wall time at the speed an earlier finished run measured on this machine (engine.runs.speed)."""
    prediction: str = ""
    """The prediction and where its figure comes from, or that there was no earlier run to measure from."""


@dataclass(frozen=True)
class StepLogged:
    step: int
    total_steps: int
    epoch: float
    loss: float
    lr: float
    grad_norm: float
    tokens_per_s: float
    """Non-pad tokens processed per second, averaged since the last log."""
    elapsed_s: float
    eta_s: float
    peak_mem_gib: float
    """Peak GPU memory on CUDA, peak process RSS on CPU."""
    gpu_used_gib: float | None = None
    """Memory in use on the whole GPU, as NVML samples it at the step (engine.hardware.sampler); None on
    the CPU or where NVML cannot say."""
    gpu_util: int | None = None
    """How busy the GPU was, 0..100 (NVML's share of its last sample period with a kernel running)."""
    metrics: dict[str, float] = field(default_factory=dict)
    """The objective's own figures beside the loss, by name (engine.train.objectives): for dpo and orpo
    reward_chosen, reward_rejected, margin and accuracy, each the mean over the step's pairs."""


@dataclass(frozen=True)
class RewardLogged:
    """A GRPO step's answers: how the rewards scored them, how far the policy moved, and one of them."""

    step: int
    reward: float
    """Mean weighted total reward over the step's sampled answers."""
    rewards: dict[str, float]
    """Each reward function's mean (unweighted) over the same answers."""
    kl: float
    """Mean k3 estimate of the KL to the reference per answer token (0 when grpo_kl_beta = 0)."""
    completion_tokens: float
    """Mean answer length in tokens."""
    sample_prompt: str
    sample: str
    """The first answer of the step's first prompt, as sampled (not the best one)."""
    sample_reward: float


@dataclass(frozen=True)
class EvalLogged:
    step: int
    val_loss: float
    best_val_loss: float
    metrics: dict[str, float] = field(default_factory=dict)
    """The objective's figures over the held-out split, named as StepLogged.metrics."""


@dataclass(frozen=True)
class CheckpointSaved:
    step: int
    path: str
    reason: str
    """"interval", "stop", "best" or "final"."""


@dataclass(frozen=True)
class Diagnosis:
    step: int
    kind: str
    """"overfitting", "underfitting" or "divergence"; "checkpoint" when resume skipped a damaged one."""
    message: str
    advice: str


@dataclass(frozen=True)
class TrainFinished:
    run_dir: str
    steps: int
    final_loss: float
    best_val_loss: float | None
    adapter_dir: str
    stopped: bool
    """True when the run ended on a stop request or early stopping rather than its last step."""
    reason: str


@dataclass(frozen=True)
class TrainFailed:
    reason: str
    advice: str
    step: int | None = None


@dataclass(frozen=True)
class ExportStageStarted:
    """One stage of an export: merge, write, quantize, modelfile, verify, then done."""

    stage: str
    index: int
    """Stages finished before this one."""
    total: int
    detail: str
    """What the stage works on: a file name, or what merge does."""


@dataclass(frozen=True)
class ExportFileWritten:
    path: str
    kind: str
    """"merged", "gguf" or "modelfile"."""
    size_bytes: int
    quant: str | None = None


@dataclass(frozen=True)
class ExportVerified:
    path: str
    quant: str
    token_ids_match: bool
    argmax_agreement: float
    max_abs_logit_diff: float | None
    stops_at_end_of_turn: bool | None
    passed: bool


@dataclass(frozen=True)
class ExportFinished:
    out_dir: str
    files: tuple[str, ...]


@dataclass(frozen=True)
class ExportFailed:
    reason: str
    advice: str


@dataclass(frozen=True)
class EvalFailed:
    reason: str
    advice: str


Event = (
    Progress
    | TrainStarted
    | StepLogged
    | RewardLogged
    | EvalLogged
    | CheckpointSaved
    | Diagnosis
    | TrainFinished
    | TrainFailed
    | ExportStageStarted
    | ExportFileWritten
    | ExportVerified
    | ExportFinished
    | ExportFailed
    | EvalFailed
)
EventSink = Callable[[Event], None]
"""Where long work reports: a face's printer or message poster, a test's recorder, or `ignore`."""
_EVENT_TYPES: dict[str, type[Event]] = {t.__name__: t for t in Event.__args__}


def to_record(event: Event) -> dict[str, Any]:
    """A JSON-ready dict with the event's type name under "event"."""
    return {"event": type(event).__name__, **dataclasses.asdict(event)}


def from_record(record: dict[str, Any]) -> Event | None:
    """The event a `to_record` dict describes, or None for an unknown event type. Keys that are
    not the event's fields (the run directory adds a timestamp) are left out."""
    kind = _EVENT_TYPES.get(record.get("event", ""))
    if kind is None:
        return None
    names = {f.name for f in dataclasses.fields(kind)}
    return kind(**{k: v for k, v in record.items() if k in names})


def ignore(_event: Event) -> None:
    """An `on_event` for callers that do not watch progress."""
