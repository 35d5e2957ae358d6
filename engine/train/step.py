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
from dataclasses import dataclass
from typing import Any

from engine.data.types import TokenizedExample
from engine.train.batching import collate
from engine.train.loss import linear_cross_entropy
from engine.train.methods import Precision
from engine.train.setup import TrainingSetup


class OutOfMemory(Exception):
    def __init__(self, step: int, batch_size: int, seq_len: int):
        super().__init__(f"out of memory at step {step}")
        self.step, self.batch_size, self.seq_len = step, batch_size, seq_len


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
                   max_grad_norm: float) -> StepStats:
    """Forward and backward over each micro-batch, then clip, step, advance the scheduler and zero the grads."""
    import torch

    model, optimizer, scheduler, scaler = parts.model, parts.optimizer, parts.scheduler, parts.scaler
    n_trained = sum(_trained_tokens(e) for b in micro for e in b)
    loss_sum, tokens = 0.0, 0
    for examples in micro:
        batch = {k: v.to(parts.precision.device) for k, v in collate(examples, parts.pad_id).items()}
        try:
            with _autocast(parts.precision):
                part = token_loss_sum(model, batch, parts.fast)
            scaled = part / max(n_trained, 1)
            (scaler.scale(scaled) if scaler else scaled).backward()
        except torch.OutOfMemoryError:
            del batch
            optimizer.zero_grad(set_to_none=True)
            raise OutOfMemory(step, len(examples), max(len(e.input_ids) for e in examples)) from None
        loss_sum += part.item()
        tokens += int(batch["attention_mask"].sum())
    if scaler:
        scaler.unscale_(optimizer)
    grad_norm = float(torch.nn.utils.clip_grad_norm_(parts.params, max_grad_norm))
    if scaler:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    lr = scheduler.get_last_lr()[0]
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return StepStats(loss_sum / max(n_trained, 1), grad_norm, lr, tokens)


def token_loss_sum(model: Any, batch: dict[str, Any], fast: bool) -> Any:
    """Summed cross-entropy over the tokens that carry a label (next-token shifted).

    With `fast`, the decoder's hidden states at labelled positions go through the chunked (or, on
    CUDA, fused) projection + loss of `engine.train.loss`, which never holds the full logits.
    """
    import torch
    import torch.nn.functional as F

    labels = batch["labels"][:, 1:]
    keep = labels != -100
    if fast:
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        hidden = base.get_decoder()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        kept = hidden.last_hidden_state[:, :-1][keep]
        head = base.get_output_embeddings()
        if type(head) is torch.nn.Linear and head.bias is None:
            return linear_cross_entropy(kept, head.weight, labels[keep])
        logits = head(kept)  # an adapted or quantised head: its own forward, logits at labelled rows only
    else:
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        logits = out.logits[:, :-1][keep]
    return F.cross_entropy(logits.float(), labels[keep], reduction="sum")


def evaluate_loss(model: Any, examples: tuple[TokenizedExample, ...], batch_size: int, pad_id: int,
                  precision: Precision, fast: bool) -> float:
    """Token-weighted mean loss over the held-out split, batched by length."""
    import torch

    order = sorted(range(len(examples)), key=lambda i: len(examples[i].input_ids))
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad(), _autocast(precision):
        for start in range(0, len(order), batch_size):
            chunk = [examples[i] for i in order[start:start + batch_size]]
            batch = {k: v.to(precision.device) for k, v in collate(chunk, pad_id).items()}
            total += float(token_loss_sum(model, batch, fast))
            count += sum(_trained_tokens(e) for e in chunk)
    return total / max(count, 1)


def _autocast(precision: Precision) -> Any:
    import torch

    if precision.autocast_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(precision.device, dtype=precision.autocast_dtype)


def _trained_tokens(example: TokenizedExample) -> int:
    return sum(1 for label in example.labels[1:] if label != -100)
