"""What a config will cost on this machine before it runs, as the config form shows it while the
user edits: the wall time at the speed an earlier run measured here (engine.runs.speed) and the
memory an earlier run measured against its estimate (engine.runs.memory).

The tokens a run reads come from the dataset's example lengths (the data check's), cut at
max_seq_len, less the validation share, with the replayed examples retention_mix adds (counted
at the task's mean length), over the epochs or max_steps. The run itself counts them exactly
once its batches are planned and says its own prediction as it starts; this one follows the form.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.config.schema import RunConfig
from engine.runs.memory import MeasuredMemory, measured_memory
from engine.runs.speed import measured_speed, span


@dataclass(frozen=True)
class Forecast:
    seconds: float | None
    """None without an earlier run to measure the speed by, or without the dataset's lengths."""
    time: str
    """The time and where its figure comes from, short enough for one line of the form."""
    memory: MeasuredMemory | None
    """The newest finished run's measured peak against its estimate, when there is one."""


def planned_tokens(config: RunConfig, lengths: Sequence[int]) -> int:
    """Tokens the run's optimizer steps will read (padding excluded), from the examples' lengths."""
    from engine.train.replay import replay_count, replays

    if not lengths:
        return 0
    capped = [min(n, config.max_seq_len) for n in lengths]
    held = min(max(round(len(capped) * config.val_split), 1), len(capped) - 1) if config.val_split > 0 and len(capped) >= 2 else 0
    task = len(capped) - held
    examples = task + (replay_count(task, config.retention_mix) if replays(config) else 0)
    mean = sum(capped) / len(capped)
    per_step = config.batch_size * config.grad_accum * max(1, config.world_size)
    read = config.max_steps * per_step if config.max_steps > 0 else math.ceil(examples * config.epochs)
    return round(read * mean)


def example_lengths(config: RunConfig) -> list[int] | None:
    """The token length of each example of the config's dataset, as the data check counts them;
    None when the dataset cannot be used, or when the model's tokenizer is not on this machine
    (a form being edited never starts a download)."""
    from engine.data import check
    from engine.data.mapping import DataMapping
    from engine.errors import ActionableError
    from engine.hardware.catalog import find
    from engine.models import load_tokenizer, resolve_model

    spec = find(config.model)
    if not Path(config.model).expanduser().exists() and (spec is None or spec.source != "embedded"):
        return None
    try:
        tokenizer = load_tokenizer(resolve_model(config.model, trust_remote_code=config.trust_remote_code))
        report = check(config.dataset, config.dataset_format, tokenizer, config.max_seq_len,
                       max_bad_share=config.max_bad_share, train_on_responses_only=config.train_on_responses_only,
                       mapping=DataMapping.from_config(config), split=config.dataset_split)
    except (ActionableError, OSError, ValueError):
        return None
    return list(report.lengths) if report.refusal is None and report.lengths else None


def forecast(config: RunConfig, lengths: Sequence[int] | None, device: str) -> Forecast:
    """The form's line for `config` on `device` ("cpu" or "cuda"), from the runs in its output folder."""
    memory = measured_memory(config.output_dir, device)
    if lengths is None:
        return Forecast(None, "time: when the dataset reads and the model is on this machine", memory)
    speed = measured_speed(config.output_dir, config.model, config.method, device)
    if speed is None:
        return Forecast(None, f"time: no finished {config.model} {config.method} run on the {device} to measure from",
                        memory)
    tokens = planned_tokens(config, lengths)
    seconds = tokens / speed.tokens_per_s
    return Forecast(seconds, f"time: about {span(seconds)} ({tokens:,} tokens at {speed.tokens_per_s:,.0f}/s, "
                             f"measured by {Path(speed.run_dir).name})", memory)
