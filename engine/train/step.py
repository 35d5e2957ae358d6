"""One optimizer step and the held-out loss: the arithmetic of the loop, apart from its bookkeeping.

Loss is the sum over trained tokens divided by the trained tokens of the whole optimizer
step, so gradient accumulation gives the same update as one big batch. For decoder models
whose logits are a plain projection of the last hidden state, logits are computed only at
positions that carry a label, which skips most of the vocabulary projection (the largest
activation of a small model) when training on responses only, and the projection runs in chunks
together with the loss (`engine.train.loss`), so no [tokens x vocab] tensor outlives its chunk.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engine.data.types import TokenizedExample
from engine.train.batching import to_device
from engine.train.methods import Precision
from engine.train.objectives import SFT, Objective, step_units
from engine.train.objectives import trained_tokens as trained_tokens  # where the loop and retention read it
from engine.train.setup import TrainingSetup, autocast_for, has_plain_head, pad_id


class OutOfMemory(Exception):
    """CUDA ran out of memory in a step: `where` is "forward" (forward and backward of a micro-batch),
    "optimizer" (clipping and updating, after every micro-batch fit) or "evaluation" (a validation
    batch, `step` set by the loop)."""

    def __init__(self, step: int, batch_size: int, seq_len: int, where: str = "forward"):
        super().__init__(f"out of memory at step {step} ({where})")
        self.step, self.batch_size, self.seq_len, self.where = step, batch_size, seq_len, where


@dataclass(frozen=True)
class StepStats:
    loss: float
    """Mean loss per trained token over the whole optimizer step."""
    grad_norm: float
    """Before clipping."""
    lr: float
    """The learning rate this step used (the scheduler has already moved on)."""
    tokens: int
    """Tokens read, padding excluded, for tokens/s."""
    metrics: dict[str, float] = field(default_factory=dict)
    """The objective's own figures (engine.train.objectives), each a mean per unit over the step."""


def optimizer_step(parts: TrainingSetup, micro: list[list[TokenizedExample]], step: int,
                   max_grad_norm: float, n_trained: int | None = None, padding: int = 0) -> StepStats:
    """Forward and backward over each micro-batch, then clip, step, advance the scheduler and zero the grads.

    `n_trained` is the trained tokens of the whole step on every process (default: those of
    `micro`); StepStats then holds this process's share of the loss. The last `padding` micro-batches
    run with weight 0: passes the other processes need this one to join (engine.train.loop._shared_step).
    """
    import torch

    optimizer, scheduler, scaler, objective = parts.optimizer, parts.scheduler, parts.scaler, parts.objective
    if n_trained is None:
        n_trained = sum(step_units(objective, b) for b in micro)
    loss_sum, tokens = 0.0, 0
    metric_sums = [0.0] * len(objective.metrics)
    last, real = len(micro) - 1, len(micro) - padding
    for i, examples in enumerate(micro):
        # DDP averages gradients over the processes; times world, they add up to the one-process sum.
        weight = parts.ranks.world if i < real else 0
        batch = to_device(objective.collate(examples, parts.pad_id, parts.schedule.packed), parts.precision.device)
        try:
            with parts.accumulate() if i < last else contextlib.nullcontext():
                with autocast_for(parts.precision):
                    part, figures = _split(parts.loss(batch))
                scaled = (part if weight == 1 else part * weight) / max(n_trained, 1)
                (scaler.scale(scaled) if scaler else scaled).backward()
        except torch.OutOfMemoryError:
            del batch
            optimizer.zero_grad(set_to_none=True)
            raise OutOfMemory(step, len(examples), max(len(e.input_ids) for e in examples)) from None
        if weight:
            loss_sum += part.item()
            tokens += sum(objective.length(e) for e in examples)
            if figures is not None:
                metric_sums = [a + b for a, b in zip(metric_sums, figures.tolist(), strict=True)]
    try:
        grad_norm = apply_gradients(parts, max_grad_norm)
    except torch.OutOfMemoryError:
        optimizer.zero_grad(set_to_none=True)
        longest = max(micro, key=len)
        raise OutOfMemory(step, len(longest), max(len(e.input_ids) for e in longest), "optimizer") from None
    lr = scheduler.get_last_lr()[0]
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    per_unit = {name: value / max(n_trained, 1) for name, value in zip(objective.metrics, metric_sums, strict=True)}
    return StepStats(loss_sum / max(n_trained, 1), grad_norm, lr, tokens, per_unit)


def _split(out: Any) -> tuple[Any, Any]:
    """An objective's loss output as (summed loss, summed metrics or None)."""
    return out if isinstance(out, tuple) else (out, None)


def apply_gradients(parts: TrainingSetup, max_grad_norm: float) -> float:
    """Unscale (fp16), clip and take the optimizer step on the accumulated gradients; the norm before clipping."""
    import torch

    scaler, optimizer = parts.scaler, parts.optimizer
    if scaler:
        scaler.unscale_(optimizer)
    grad_norm = float(torch.nn.utils.clip_grad_norm_(parts.params, max_grad_norm))
    if scaler:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    return grad_norm


def evaluate_loss(model: Any, examples: tuple[TokenizedExample, ...], batch_size: int, pad_id: int,
                  precision: Precision, fast: bool, loss: Callable[[dict[str, Any]], Any] | None = None) -> float:
    """Token-weighted mean loss over the held-out split, batched by length; through `loss` (the
    training setup's, which FSDP needs) when given."""
    return evaluate_held_out(model, examples, batch_size, pad_id, precision, fast, loss)[0]


def evaluate_held_out(model: Any, examples: tuple[TokenizedExample, ...], batch_size: int, pad_id: int,
                      precision: Precision, fast: bool, loss: Callable[[dict[str, Any]], Any] | None = None,
                      objective: Objective = SFT) -> tuple[float, dict[str, float]]:
    """The objective's mean loss per unit over the held-out split, and its metrics' means."""
    loss = loss or (lambda batch: objective.loss(model, batch, fast))
    import torch

    order = sorted(range(len(examples)), key=lambda i: objective.length(examples[i]))
    total, count = 0.0, 0
    sums = [0.0] * len(objective.metrics)
    model.eval()
    with torch.no_grad(), autocast_for(precision):
        for start in range(0, len(order), batch_size):
            chunk = [examples[i] for i in order[start:start + batch_size]]
            try:
                part, figures = _split(loss(to_device(objective.collate(chunk, pad_id), precision.device)))
            except torch.OutOfMemoryError:
                raise OutOfMemory(0, len(chunk), max(objective.length(e) for e in chunk), "evaluation") from None
            total += float(part)
            if figures is not None:
                sums = [a + b for a, b in zip(sums, figures.tolist(), strict=True)]
            count += step_units(objective, chunk)
    return total / max(count, 1), {name: value / max(count, 1) for name, value in zip(objective.metrics, sums,
                                                                                          strict=True)}


def held_out_loss(model: Any, tokenizer: Any, examples: tuple[TokenizedExample, ...], batch_size: int,
                  autocast: Any = None) -> float:
    """`evaluate_loss` as a measurement outside training: in the model's own dtype on its device,
    or under `autocast` (a dtype) when given; the model's train/eval mode left as it was."""
    device = next(model.parameters()).device
    was_training = model.training
    try:
        return evaluate_loss(model, examples, batch_size, pad_id(tokenizer),
                             Precision(device.type, None, autocast, False), has_plain_head(model))
    finally:
        model.train(was_training)
