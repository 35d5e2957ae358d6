"""Which examples go into which batch, in which order, and how they are padded.

A batch whose padded size exceeds batch_size x the mean example length is run as several
forward passes of the same optimizer step, so peak memory follows the typical batch, not the
longest one.

Batches are a seeded shuffle of the examples cut into batch_size pieces, so each batch mixes
lengths. Grouping by length (windows sorted before cutting) kept padding near 1% but put
similar examples together, and learned less from the same tokens: on the Docker demo the
held-out loss after one epoch was 0.45 grouped against 0.36 shuffled (means of three seeds,
`bench/batch_order.py`), at the same tokens/s on the CPU although padding rose from 1% to 11%.
The order is a pure function of (seed, epoch), which is what lets a resumed run see the same
batches as an uninterrupted one without storing the order anywhere.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate

from engine.data.types import TokenizedExample


def epoch_batches(lengths: Sequence[int], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Example indices per batch for one epoch, each batch listed longest example first.

    The batch holding the longest example goes first, so a setting that runs out of memory
    fails on the first step instead of hours in; which examples share a batch stays random.
    """
    rng = random.Random(f"{seed}:{epoch}")
    order = list(range(len(lengths)))
    rng.shuffle(order)
    batches = [sorted(order[i:i + batch_size], key=lambda i: lengths[i], reverse=True)
               for i in range(0, len(order), batch_size)]
    if batches:
        longest = max(range(len(batches)), key=lambda b: lengths[batches[b][0]])
        batches.insert(0, batches.pop(longest))
    return batches


def split_by_tokens(batch: Sequence[int], lengths: Sequence[int], budget: int,
                    packed: bool = False) -> list[list[int]]:
    """Cut a batch into micro-batches whose padded size (with `packed`, their tokens end to end)
    stays within `budget` tokens.

    The loop normalises the loss by the trained tokens of the whole optimizer step, so the
    pieces give the same update as the whole; only the peak memory of the longest batches drops.
    """
    def size(piece: list[int]) -> int:  # pieces are longest first
        return sum(lengths[j] for j in piece) if packed else len(piece) * lengths[piece[0]]

    out: list[list[int]] = []
    for i in sorted(batch, key=lambda i: lengths[i], reverse=True):
        piece = next((p for p in out if size([*p, i]) <= budget), None)  # first fit
        if piece is None:
            out.append([i])
        else:
            piece.append(i)
    return out


def pad_share(batches: Sequence[Sequence[int]], lengths: Sequence[int], packed: bool = False) -> float:
    """Share of the batch tensors that is padding (none when packed: one row holds the examples end to end)."""
    if packed:
        return 0.0
    real = sum(lengths[i] for b in batches for i in b)
    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches if b)
    return 1 - real / padded if padded else 0.0


@dataclass(frozen=True)
class Schedule:
    """Micro-batches for the whole run, numbered 0.., grouped grad_accum at a time into steps.

    With `world` processes a batch holds batch_size x world examples and process r takes every
    world-th of them from the r-th (batches are sorted by length, so the shares are alike).
    """

    lengths: tuple[int, ...]
    batch_size: int
    grad_accum: int
    seed: int
    epochs: float
    max_steps: int
    world: int = 1
    packed: bool = False
    """Each micro-batch runs as one packed row (`collate(packed=True)`)."""

    @property
    def token_budget(self) -> int:
        """Padded tokens per forward: batch_size examples of mean length (never less than the longest)."""
        if not self.lengths:
            return 0
        mean = math.ceil(sum(self.lengths) / len(self.lengths))
        return max(self.batch_size * mean, max(self.lengths))

    @property
    def batches_per_epoch(self) -> int:
        return math.ceil(len(self.lengths) / (self.batch_size * self.world))

    @property
    def total_steps(self) -> int:
        if self.max_steps > 0:
            return self.max_steps
        micro = math.ceil(self.epochs * self.batches_per_epoch)
        return max(1, math.ceil(micro / self.grad_accum))

    def step_batches(self, step: int, rank: int = 0) -> list[list[int]]:
        """Example indices of each forward pass of optimizer step `step` (1-based) on process `rank`;
        empty when a batch of the last step has fewer examples than processes."""
        out = []
        for batch in self._step(step):
            share = batch[rank::self.world] if self.world > 1 else batch
            out.extend(split_by_tokens(share, self.lengths, self.token_budget, self.packed))
        return out

    def step_examples(self, step: int) -> list[int]:
        """Every example of optimizer step `step` on all processes together."""
        return [i for batch in self._step(step) for i in batch]

    def _step(self, step: int) -> list[list[int]]:
        per_epoch = self.batches_per_epoch
        first = (step - 1) * self.grad_accum
        out = []
        for k in range(first, first + self.grad_accum):
            epoch, index = divmod(k, per_epoch)
            if self.max_steps <= 0 and k >= math.ceil(self.epochs * per_epoch):
                break
            out.append(self._epoch(epoch)[index])
        return out

    def epoch_at(self, step: int) -> float:
        return step * self.grad_accum / self.batches_per_epoch

    def planned_pad_share(self) -> float:
        pieces = [p for b in self._epoch(0) for r in range(self.world)
                  for p in split_by_tokens(b[r::self.world], self.lengths, self.token_budget, self.packed)]
        return pad_share(pieces, self.lengths, self.packed)

    def _epoch(self, epoch: int) -> list[list[int]]:
        cache = self.__dict__.setdefault("_cache", {})
        if epoch not in cache:
            cache.clear()
            cache[epoch] = epoch_batches(self.lengths, self.batch_size * self.world, self.seed, epoch)
        return cache[epoch]


def collate(examples: Sequence[TokenizedExample], pad_id: int, packed: bool = False) -> dict:
    """Right-padded tensors: input_ids, attention_mask, and labels with -100 on padding.

    With `packed`, one row of the examples end to end and no attention mask: position_ids restart
    at 0 for each example and `cu_seq_lens_q` holds the example boundaries (plain ints, which
    stay on the host so a GPU never waits to hand them back), which is how the attention keeps
    them apart (`engine.train.varlen_attention`). The first token of each example carries no
    label, so nothing is predicted across a boundary.
    """
    import torch

    from engine.train.varlen_attention import SEGMENTS

    if packed:
        ids = torch.tensor([[t for e in examples for t in e.input_ids]], dtype=torch.long)
        labels = torch.tensor([[t for e in examples for t in (-100, *e.labels[1:])]], dtype=torch.long)
        positions = torch.tensor([[p for e in examples for p in range(len(e.input_ids))]], dtype=torch.long)
        bounds = tuple(accumulate((len(e.input_ids) for e in examples), initial=0))  # starts and the end
        return {"input_ids": ids, "position_ids": positions, "labels": labels, SEGMENTS: bounds}
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


def to_device(batch: dict, device: str) -> dict:
    """The batch's tensors on `device`; a packed row's bounds stay plain ints."""
    return {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}
