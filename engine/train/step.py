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
from dataclasses import dataclass
from typing import Any

from engine.data.types import TokenizedExample
from engine.train.batching import collate, to_device
from engine.train.loss import token_loss_sum
from engine.train.methods import Precision
from engine.train.setup import TrainingSetup, has_plain_head, pad_id


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


def optimizer_step(parts: TrainingSetup, micro: list[list[TokenizedExample]], step: int,
                   max_grad_norm: float, n_trained: int | None = None, padding: int = 0) -> StepStats:
    """Forward and backward over each micro-batch, then clip, step, advance the scheduler and zero the grads.

    `n_trained` is the trained tokens of the whole step on every process (default: those of
    `micro`); StepStats then holds this process's share of the loss. The last `padding` micro-batches
    run with weight 0: passes the other processes need this one to join (engine.train.loop._shared_step).
    """
    import torch

    optimizer, scheduler, scaler = parts.optimizer, parts.scheduler, parts.scaler
    if n_trained is None:
        n_trained = sum(trained_tokens(e) for b in micro for e in b)
    loss_sum, tokens = 0.0, 0
    last, real = len(micro) - 1, len(micro) - padding
    for i, examples in enumerate(micro):
        # DDP averages gradients over the processes; times world, they add up to the one-process sum.
        weight = parts.ranks.world if i < real else 0
        batch = to_device(collate(examples, parts.pad_id, parts.schedule.packed), parts.precision.device)
        try:
            with parts.accumulate() if i < last else contextlib.nullcontext():
                with _autocast(parts.precision):
                    part = parts.loss(batch)
                scaled = (part if weight == 1 else part * weight) / max(n_trained, 1)
                (scaler.scale(scaled) if scaler else scaled).backward()
        except torch.OutOfMemoryError:
            del batch
            optimizer.zero_grad(set_to_none=True)
            raise OutOfMemory(step, len(examples), max(len(e.input_ids) for e in examples)) from None
        if weight:
            loss_sum += part.item()
            tokens += sum(len(e.input_ids) for e in examples)
    try:
        if scaler:
            scaler.unscale_(optimizer)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(parts.params, max_grad_norm))
        if scaler:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
    except torch.OutOfMemoryError:
        optimizer.zero_grad(set_to_none=True)
        longest = max(micro, key=len)
        raise OutOfMemory(step, len(longest), max(len(e.input_ids) for e in longest), "optimizer") from None
    lr = scheduler.get_last_lr()[0]
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return StepStats(loss_sum / max(n_trained, 1), grad_norm, lr, tokens)


def evaluate_loss(model: Any, examples: tuple[TokenizedExample, ...], batch_size: int, pad_id: int,
                  precision: Precision, fast: bool, loss: Callable[[dict[str, Any]], Any] | None = None) -> float:
    """Token-weighted mean loss over the held-out split, batched by length; through `loss` (the
    training setup's, which FSDP needs) when given."""
    loss = loss or (lambda batch: token_loss_sum(model, batch, fast))
    import torch

    order = sorted(range(len(examples)), key=lambda i: len(examples[i].input_ids))
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad(), _autocast(precision):
        for start in range(0, len(order), batch_size):
            chunk = [examples[i] for i in order[start:start + batch_size]]
            try:
                total += float(loss(to_device(collate(chunk, pad_id), precision.device)))
            except torch.OutOfMemoryError:
                raise OutOfMemory(0, len(chunk), max(len(e.input_ids) for e in chunk), "evaluation") from None
            count += sum(trained_tokens(e) for e in chunk)
    return total / max(count, 1)


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


def _autocast(precision: Precision) -> Any:
    import torch

    if precision.autocast_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(precision.device, dtype=precision.autocast_dtype)


def trained_tokens(example: TokenizedExample) -> int:
    return sum(1 for label in example.labels[1:] if label != -100)
