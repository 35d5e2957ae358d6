"""Which examples go into which batch, in which order, and how they are padded.

A batch whose padded size exceeds batch_size x the mean example length is run as several
forward passes of the same optimizer step, so peak memory follows the typical batch, not the
longest one.

Length-grouped batches keep padding small: examples are shuffled, cut into large windows,
and each window is sorted by length before it is split into batches, so a batch holds
examples of similar length while the order across batches stays random. The order is a pure
function of (seed, epoch), which is what lets a resumed run see the same batches as an
uninterrupted one without storing the order anywhere.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from engine.data.types import TokenizedExample

WINDOW_BATCHES = 64
"""Batches per sorting window: larger packs lengths tighter, smaller keeps more randomness."""


def epoch_batches(lengths: Sequence[int], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Example indices per batch for one epoch.

    The batch holding the longest example goes first, so a setting that runs out of memory
    fails on the first step instead of hours in.
    """
    rng = random.Random(f"{seed}:{epoch}")
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * WINDOW_BATCHES
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start:start + window], key=lambda i: lengths[i], reverse=True)
        batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    if batches:
        longest = max(range(len(batches)), key=lambda b: max(lengths[i] for i in batches[b]))
        batches.insert(0, batches.pop(longest))
    return batches


def split_by_tokens(batch: Sequence[int], lengths: Sequence[int], budget: int) -> list[list[int]]:
    """Cut a batch into micro-batches whose padded size stays within `budget` tokens.

    The loop normalises the loss by the trained tokens of the whole optimizer step, so the
    pieces give the same update as the whole; only the peak memory of the longest batches drops.
    """
    ordered = sorted(batch, key=lambda i: lengths[i], reverse=True)
    out: list[list[int]] = []
    for i in ordered:
        if out and (len(out[-1]) + 1) * lengths[out[-1][0]] <= budget:
            out[-1].append(i)
        else:
            out.append([i])
    return out


def pad_share(batches: Sequence[Sequence[int]], lengths: Sequence[int]) -> float:
    """Share of the padded batch tensors that is padding."""
    real = sum(lengths[i] for b in batches for i in b)
    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches if b)
    return 1 - real / padded if padded else 0.0


@dataclass(frozen=True)
class Schedule:
    """Micro-batches for the whole run, numbered 0.., grouped grad_accum at a time into steps."""

    lengths: tuple[int, ...]
    batch_size: int
    grad_accum: int
    seed: int
    epochs: float
    max_steps: int

    @property
    def token_budget(self) -> int:
        """Padded tokens per forward: batch_size examples of mean length (never less than the longest)."""
        if not self.lengths:
            return 0
        mean = math.ceil(sum(self.lengths) / len(self.lengths))
        return max(self.batch_size * mean, max(self.lengths))

    @property
    def batches_per_epoch(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)

    @property
    def total_steps(self) -> int:
        if self.max_steps > 0:
            return self.max_steps
        micro = math.ceil(self.epochs * self.batches_per_epoch)
        return max(1, math.ceil(micro / self.grad_accum))

    def step_batches(self, step: int) -> list[list[int]]:
        """Example indices of each forward pass of optimizer step `step` (1-based)."""
        per_epoch = self.batches_per_epoch
        first = (step - 1) * self.grad_accum
        out = []
        for k in range(first, first + self.grad_accum):
            epoch, index = divmod(k, per_epoch)
            if self.max_steps <= 0 and k >= math.ceil(self.epochs * per_epoch):
                break
            out.extend(split_by_tokens(self._epoch(epoch)[index], self.lengths, self.token_budget))
        return out

    def epoch_at(self, step: int) -> float:
        return step * self.grad_accum / self.batches_per_epoch

    def planned_pad_share(self) -> float:
        pieces = [p for b in self._epoch(0) for p in split_by_tokens(b, self.lengths, self.token_budget)]
        return pad_share(pieces, self.lengths)

    def _epoch(self, epoch: int) -> list[list[int]]:
        cache = self.__dict__.setdefault("_cache", {})
        if epoch not in cache:
            cache.clear()
            cache[epoch] = epoch_batches(self.lengths, self.batch_size, self.seed, epoch)
        return cache[epoch]


def collate(examples: Sequence[TokenizedExample], pad_id: int) -> dict:
    """Right-padded tensors: input_ids, attention_mask, and labels with -100 on padding."""
    import torch

    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, e in enumerate(examples):
        n = len(e.input_ids)
        ids[row, :n] = torch.tensor(e.input_ids)
        labels[row, :n] = torch.tensor(e.labels)
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}
