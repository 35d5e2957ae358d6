"""DPO and ORPO: the losses of a preference pair from the log-probabilities of its two replies.

A pair is one `TokenizedExample` (the chosen side) holding its rejected side; a micro-batch of N
pairs runs as one forward of 2N sequences, chosen ones first in the results: a packed row where
the model keeps examples apart (as SFT packs, `engine.train.varlen_attention`), else 2N padded
rows. Packed, no padding is computed, and each pair's prompt runs once: the pair is one example
that forks after the tokens its two sides share, its rejected reply attending to the prompt but
not to the chosen reply. On the Docker pairs a chosen side is about half the length of its
rejected one (padding to the longest took a third of each padded batch), and the prompt is 41 of
a pair's 148 tokens. Each reply's log-probability is summed over the tokens that carry a label,
the same responses-only masks SFT trains on, so the prompt never counts.

DPO (Rafailov et al. 2023) compares the policy with a reference: the base model itself, run with
the adapters disabled under no_grad (peft's `disable_adapter()`), so no second copy of the model
is held. Full fine-tuning has no adapter to disable: the reference log-probabilities are computed
once before the first step from the initial weights and kept per pair (TRL's
`precompute_ref_log_probs`); a resumed run computes them again from the base it loads, which is
the same model, before the checkpoint's weights go in.

ORPO (Hong et al. 2024) needs no reference: per pair, the chosen reply's mean token NLL plus
lambda x -log sigmoid(log odds(chosen) - log odds(rejected)), with odds taken on the mean token
log-probability, as the paper and TRL's ORPOTrainer do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from engine.data.types import TokenizedExample
from engine.train.batching import collate
from engine.train.loss import chunk_tokens, head_logits, model_inputs
from engine.train.varlen_attention import FORKS, SEGMENTS

REFERENCE = "reference_logps"
"""Batch key of precomputed reference log-probabilities, one per row (full fine-tuning)."""
SCORED = "scored_tokens"
"""Batch key of a packed batch of pairs, [3, scored tokens]: the position whose hidden state
predicts each scored token, the token, and the sequence it counts for."""
PAIR_METRICS = ("reward_chosen", "reward_rejected", "margin", "accuracy")
"""What a preference step logs, each the mean over the step's pairs: the implicit rewards of the chosen
and rejected replies (DPO: beta x the log-probability gained over the reference; ORPO: lambda x the
mean token log-probability), their difference, and the share of pairs whose chosen reply wins."""


def pair_length(example: TokenizedExample) -> int:
    """Tokens a forward reads for the example: both sides of a pair."""
    return len(example.input_ids) + (len(example.rejected.input_ids) if example.rejected is not None else 0)


def collate_pairs(pairs: Sequence[TokenizedExample], pad_id: int, packed: bool = False,
                  references: Mapping[TokenizedExample, tuple[float, float]] | None = None) -> dict[str, Any]:
    """2N sequences, the N chosen sides then the N rejected ones, as padded rows or, `packed`, end to
    end in one row; with `references`, their precomputed reference log-probabilities under REFERENCE."""
    import torch

    batch = _packed_pairs(pairs) if packed else collate([*pairs, *(_rejected(p) for p in pairs)], pad_id)
    if references is not None:
        kept = [references[p] for p in pairs]
        batch[REFERENCE] = torch.tensor([c for c, _ in kept] + [r for _, r in kept], dtype=torch.float32)
    return batch


def _packed_pairs(pairs: Sequence[TokenizedExample]) -> dict[str, Any]:
    """One row of the pairs end to end, each the tokens its sides share, the rest of its chosen side,
    then the rest of its rejected side (`engine.train.varlen_attention.FORKS`)."""
    import torch

    ids: list[int] = []
    positions: list[int] = []
    bounds, forks = [0], []
    scored: list[tuple[int, int, int]] = []
    for i, chosen in enumerate(pairs):
        rejected = _rejected(chosen)
        shared = _shared_length(chosen.input_ids, rejected.input_ids)
        start, second = len(ids), len(ids) + len(chosen.input_ids)
        ids += [*chosen.input_ids, *rejected.input_ids[shared:]]
        positions += [*range(len(chosen.input_ids)), *range(shared, len(rejected.input_ids))]
        bounds.append(len(ids))
        forks.append((start + shared, second))
        # Token t is predicted at t - 1: in the shared part for both sides, else in the side's own part.
        scored += [(start + t - 1, label, i) for t, label in enumerate(chosen.labels[1:], start=1) if label != -100]
        scored += [(start + t - 1 if t - 1 < shared else second + t - 1 - shared, label, len(pairs) + i)
                   for t, label in enumerate(rejected.labels[1:], start=1) if label != -100]
    return {"input_ids": torch.tensor([ids]), "position_ids": torch.tensor([positions]), SEGMENTS: tuple(bounds),
            FORKS: tuple(forks), SCORED: torch.tensor(scored, dtype=torch.long).view(-1, 3).t()}


def _shared_length(a: Sequence[int], b: Sequence[int]) -> int:
    """Leading tokens `a` and `b` share, leaving each at least one of its own."""
    limit = min(len(a), len(b)) - 1
    n = 0
    while n < limit and a[n] == b[n]:
        n += 1
    return n


def _rejected(pair: TokenizedExample) -> TokenizedExample:
    if pair.rejected is None:
        raise ValueError(f"line {pair.source_line}: a preference objective got an example with no rejected reply")
    return pair.rejected


def sequence_logps(model: Any, batch: dict[str, Any], fast: bool) -> tuple[Any, Any]:
    """(summed log-probability of each sequence's labelled tokens, their count), both [sequences]:
    a padded batch's rows, or a packed row's examples.

    With `fast` only the labelled positions go through the output projection, a chunk of rows at a
    time, each chunk recomputed in backward rather than kept, so at most one chunk of logits exists.
    """
    import torch
    import torch.nn.functional as F
    from torch.utils.checkpoint import checkpoint

    if SCORED in batch:
        sources, targets, rows = batch[SCORED]
        n = 2 * (len(batch[SEGMENTS]) - 1)

        def select(states: Any) -> Any:
            return states[0, sources]
    else:
        labels = batch["labels"][:, 1:]
        keep = labels != -100
        targets, n = labels[keep], labels.shape[0]
        rows = keep.nonzero()[:, 0]

        def select(states: Any) -> Any:
            return states[:, :-1][keep]
    if fast:
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        hidden = select(base.get_decoder()(**model_inputs(batch)).last_hidden_state)
        head = base.get_output_embeddings()

        def chunk_logps(h: Any, y: Any) -> Any:
            return F.log_softmax(head_logits(head, h).float(), dim=-1).gather(1, y[:, None]).squeeze(1)

        step = chunk_tokens(head.weight.shape[0])
        grad = torch.is_grad_enabled()
        parts = [checkpoint(chunk_logps, hidden[s:s + step], targets[s:s + step], use_reentrant=False) if grad
                 else chunk_logps(hidden[s:s + step], targets[s:s + step]) for s in range(0, hidden.shape[0], step)]
        token_logps = torch.cat(parts) if parts else hidden.sum(-1) * 0.0
    else:
        logits = select(model(**model_inputs(batch)).logits)
        token_logps = F.log_softmax(logits.float(), dim=-1).gather(1, targets[:, None]).squeeze(1)
    sums = torch.zeros(n, dtype=torch.float32, device=token_logps.device)
    sums = sums.index_add(0, rows, token_logps.float())
    return sums, torch.bincount(rows, minlength=n).clamp(min=1).float()


def reference_logps(model: Any, batch: dict[str, Any], fast: bool) -> Any:
    """The reference model's summed log-probabilities of each row: precomputed ones when the batch
    holds them, else the policy with its adapters disabled, without gradients."""
    import torch

    if REFERENCE in batch:
        return batch[REFERENCE]
    if not hasattr(model, "disable_adapter"):
        raise ValueError("DPO needs a reference: a model with adapters to disable, or precomputed log-probabilities")
    with torch.no_grad(), model.disable_adapter():
        logps, _ = sequence_logps(model, batch, fast)
    return logps


def dpo_loss(model: Any, batch: dict[str, Any], fast: bool, beta: float, variant: str,
             sft_weight: float = 0.0) -> tuple[Any, Any]:
    """(summed DPO loss over the batch's pairs, summed PAIR_METRICS) for `variant` "sigmoid" or "ipo"."""
    # The reference first: its pass frees each layer as it goes, before the policy's holds activations.
    reference = reference_logps(model, batch, fast)
    policy, counts = sequence_logps(model, batch, fast)
    return dpo_from_logps(policy, reference.to(policy.device), counts, beta, variant, sft_weight)


def dpo_from_logps(policy: Any, reference: Any, counts: Any, beta: float, variant: str,
                   sft_weight: float = 0.0) -> tuple[Any, Any]:
    """The DPO loss and metrics of 2N rows of log-probabilities (chosen rows first).

    sigmoid: -log sigmoid(beta x (chosen log-ratio - rejected log-ratio)). ipo (Azar et al. 2023):
    (h - 1/(2 beta))^2 with h the same difference of log-ratios taken per token, as TRL does.
    The rewards are beta x the summed log-ratios under either loss. With `sft_weight`, each pair
    adds that times its chosen reply's mean token NLL (RPO, as ORPO's SFT term)."""
    import torch
    import torch.nn.functional as F

    n = policy.shape[0] // 2
    ratio = policy - reference
    chosen, rejected = ratio[:n], ratio[n:]
    if variant == "ipo":
        per_token = ratio / counts
        h = per_token[:n] - per_token[n:]
        losses = (h - 1 / (2 * beta)) ** 2
    else:
        losses = -F.logsigmoid(beta * (chosen - rejected))
    if sft_weight:
        losses = losses - sft_weight * policy[:n] / counts[:n]
    with torch.no_grad():
        rewards_c, rewards_r = beta * chosen.detach(), beta * rejected.detach()
        metrics = _pair_metrics(rewards_c, rewards_r)
    return losses.sum(), metrics


def orpo_loss(model: Any, batch: dict[str, Any], fast: bool, lam: float) -> tuple[Any, Any]:
    """(summed ORPO loss over the batch's pairs, summed PAIR_METRICS)."""
    policy, counts = sequence_logps(model, batch, fast)
    return orpo_from_logps(policy, counts, lam)


def orpo_from_logps(policy: Any, counts: Any, lam: float) -> tuple[Any, Any]:
    """The ORPO loss and metrics of 2N rows of summed log-probabilities and token counts."""
    import torch
    import torch.nn.functional as F

    n = policy.shape[0] // 2
    mean = policy / counts
    # log(1 - p) as log(-expm1(log p)): exact near p = 1, where 1 - exp() would round to 0.
    log_odds = mean - torch.log(-torch.expm1(mean.clamp(max=-1e-7)))
    ratio = log_odds[:n] - log_odds[n:]
    losses = -mean[:n] - lam * F.logsigmoid(ratio)
    with torch.no_grad():
        metrics = _pair_metrics(lam * mean[:n].detach(), lam * mean[n:].detach())
    return losses.sum(), metrics


def _pair_metrics(chosen: Any, rejected: Any) -> Any:
    """PAIR_METRICS summed over the pairs (the step divides by its pairs)."""
    import torch

    return torch.stack([chosen.sum(), rejected.sum(), (chosen - rejected).sum(), (chosen > rejected).float().sum()])


def precompute_references(model: Any, pairs: Sequence[TokenizedExample], batch_size: int, pad_id: int,
                          device: str, autocast: Any, fast: bool) -> dict[TokenizedExample, tuple[float, float]]:
    """Each pair's (chosen, rejected) log-probability under `model` as it is now, without gradients."""
    import torch

    out: dict[TokenizedExample, tuple[float, float]] = {}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), autocast():
            for start in range(0, len(pairs), batch_size):
                chunk = list(pairs[start:start + batch_size])
                batch = {k: v.to(device) for k, v in collate_pairs(chunk, pad_id).items()}
                logps, _ = sequence_logps(model, batch, fast)
                values = logps.tolist()
                for i, pair in enumerate(chunk):
                    out[pair] = (values[i], values[len(chunk) + i])
    finally:
        model.train(was_training)
    return out
