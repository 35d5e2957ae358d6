"""What a run's loss is, chosen once at setup from `RunConfig.objective`.

The loop, the step, evaluation, checkpoints and multi-GPU are the same for every objective; an
`Objective` holds what differs: how examples become a batch, the summed loss of a batch (and the
metrics it logs), and what that sum is divided by over a whole optimizer step (trained tokens for
SFT, pairs for DPO and ORPO), so gradient accumulation still equals one big batch.

An objective whose step is more than a loss over the dataset's examples (GRPO samples its own
completions first) is added to OBJECTIVES with its own `step`, which the loop then calls in
place of `engine.train.step.optimizer_step`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from engine.config.schema import PAIR_OBJECTIVES, RunConfig
from engine.data.types import TokenizedExample
from engine.train.batching import collate
from engine.train.loss import token_loss_sum
from engine.train.preference import PAIR_METRICS, collate_pairs, dpo_loss, orpo_loss, pair_length

__all__ = ["OBJECTIVES", "PAIR_OBJECTIVES", "SFT", "Objective", "choose_objective", "step_units", "trained_tokens"]


def trained_tokens(example: TokenizedExample) -> int:
    return sum(1 for label in example.labels[1:] if label != -100)


def _one_pair(_example: TokenizedExample) -> int:
    return 1


def _sft_loss(model: Any, batch: dict[str, Any], fast: bool) -> Any:
    return token_loss_sum(model, batch, fast)


@dataclass(frozen=True)
class Objective:
    name: str
    loss: Callable[[Any, dict[str, Any], bool], Any]
    """(model, batch, fast) -> the batch's summed loss, or (summed loss, summed `metrics`)."""
    units: Callable[[TokenizedExample], int] = trained_tokens
    """What an example adds to the divisor of the step's loss."""
    collate: Callable[..., dict[str, Any]] = collate
    """(examples, pad_id, packed) -> the batch's tensors."""
    length: Callable[[TokenizedExample], int] = lambda e: len(e.input_ids)
    """Tokens a forward reads for an example: what batching budgets and tokens/s count."""
    metrics: tuple[str, ...] = ()
    """Names of the metrics the loss returns beside it, each logged as its mean per unit."""
    reference: str = ""
    """"adapters": the reference is the base with adapters disabled; "precomputed": computed once
    before training (full fine-tuning); "" for none."""
    step: Callable[..., Any] | None = None
    """Its own optimizer step, called as `optimizer_step` is, (parts, micro, step, max_grad_norm) ->
    StepStats; None runs the shared one over `loss`."""

    def with_references(self, references: Mapping[TokenizedExample, tuple[float, float]]) -> Objective:
        """This objective reading each pair's reference log-probabilities from `references`."""
        return replace(self, collate=functools.partial(collate_pairs, references=references), reference="precomputed")


SFT = Objective("sft", _sft_loss)


def _dpo(config: RunConfig) -> Objective:
    loss = functools.partial(dpo_loss, beta=config.dpo_beta, variant=config.dpo_loss, sft_weight=config.dpo_sft_weight)
    return Objective("dpo", loss, _one_pair, collate_pairs, pair_length, PAIR_METRICS, reference="adapters")


def _orpo(config: RunConfig) -> Objective:
    loss = functools.partial(orpo_loss, lam=config.orpo_lambda)
    return Objective("orpo", loss, _one_pair, collate_pairs, pair_length, PAIR_METRICS)


OBJECTIVES: dict[str, Callable[[RunConfig], Objective]] = {
    "sft": lambda _config: SFT,
    "dpo": _dpo,
    "orpo": _orpo,
    # GRPO's step samples, scores and updates in engine/train/grpo.py, which the loop calls for it; its
    # batches are prompts, batched as SFT examples are.
    "grpo": lambda _config: replace(SFT, name="grpo"),
}
"""Each objective's builder."""


def choose_objective(config: RunConfig) -> Objective | None:
    """The run's objective, or None when this ftui has no trainer for it."""
    build = OBJECTIVES.get(config.objective)
    return build(config) if build is not None else None


def step_units(objective: Objective, examples: Sequence[TokenizedExample]) -> int:
    return sum(objective.units(e) for e in examples)
