"""GRPO: one optimizer step of group relative policy optimisation with verifiable rewards.

As in DeepSeekMath and TRL's GRPOTrainer: sample grpo_group_size answers per prompt from the
policy, score each with the reward functions, and take as each answer's advantage its reward
against its group's, (r - mean) / (std + 1e-4), so no value model is needed. The loss per answer
token is the clipped policy term -min(ratio A, clip(ratio, 1-eps, 1+eps) A) plus beta times the k3
estimate of the KL to the reference, exp(ref - logp) - (ref - logp) - 1. The reference is the
same model with its adapters switched off (peft's `disable_adapter`), so no second copy is held.
With one update per batch of answers (grpo_iterations = 1) the ratio is exactly 1 and its
sampling-time log-probabilities are the current ones detached, which saves a forward pass.

The loss is summed over every answer token of the step and divided by their count (TRL's "dapo"
normalisation, and ftui's SFT loss per trained token), so gradient accumulation gives the same
update as one batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.data.rl_prompts import RlPrompt
from engine.data.types import TokenizedExample
from engine.events import RewardLogged
from engine.train.rewards import Answer, Reward, build_rewards, score
from engine.train.sampling import new_generator, sample, stop_ids
from engine.train.setup import TrainingSetup, autocast_for
from engine.train.step import OutOfMemory, StepStats, apply_gradients

STD_FLOOR = 1e-4
"""Added to a group's reward spread, as TRL does: a group whose answers all scored alike gets zero advantages."""


def group_advantages(rewards: Any, group: int) -> Any:
    """Each reward against its group's mean, in units of the group's standard deviation (unbiased)."""
    grouped = rewards.view(-1, group)
    mean = grouped.mean(dim=1, keepdim=True)
    std = grouped.std(dim=1, keepdim=True) if group > 1 else grouped.new_zeros(grouped.shape[0], 1)
    return ((grouped - mean) / (std + STD_FLOOR)).view(-1)


def policy_loss(logps: Any, old_logps: Any, ref_logps: Any | None, advantages: Any, mask: Any, beta: float,
                epsilon: float) -> tuple[Any, Any]:
    """(loss summed over answer tokens, k3 KL summed over them) for [answers, tokens] log-probabilities
    of the sampled tokens, `mask` 1 on answer tokens; `advantages` is one per answer."""
    import torch

    ratio = torch.exp(logps - old_logps)
    clipped = torch.clamp(ratio, 1 - epsilon, 1 + epsilon)
    a = advantages.unsqueeze(1)
    per_token = -torch.min(ratio * a, clipped * a)
    kl = torch.zeros_like(logps)
    if ref_logps is not None:
        gap = ref_logps - logps
        kl = torch.exp(gap) - gap - 1
        per_token = per_token + beta * kl
    return (per_token * mask).sum(), (kl.detach() * mask).sum()


@dataclass
class Batch:
    """One micro-batch of sampled answers, ready for forward passes."""

    ids: Any
    """[answers, prompt width + answer width]: prompts left-padded, answers right-padded."""
    attention: Any
    positions: Any
    mask: Any
    """[answers, answer width]: 1 on answer tokens."""
    advantages: Any
    old_logps: Any = None
    ref_logps: Any = None


@dataclass(frozen=True)
class Rollout:
    """A micro-batch's sampled answers, their weighted rewards and each function's mean, and the batch."""

    answers: list[Answer]
    totals: list[float]
    means: dict[str, float]
    batch: Batch


@dataclass
class GrpoRun:
    """What GRPO keeps across steps: the prompts' rows, the rewards and the sampling stream."""

    config: Any
    prompts: tuple[RlPrompt, ...]
    tokenizer: Any
    rewards: list[Reward]
    generator: Any
    stops: frozenset[int] = field(default_factory=frozenset)

    @classmethod
    def start(cls, config: Any, prompts: tuple[RlPrompt, ...], tokenizer: Any, model: Any) -> GrpoRun:
        return cls(config, prompts, tokenizer, build_rewards(config, config.grpo_max_completion_tokens),
                   new_generator(config.seed), stop_ids(tokenizer, model))

    def step(self, parts: TrainingSetup, micro: list[list[int]], train_set: tuple[TokenizedExample, ...],
             step: int, max_grad_norm: float) -> tuple[StepStats, RewardLogged]:
        """Sample and score every prompt of the step, then grpo_iterations updates on those answers."""
        import torch

        cfg, model, precision = self.config, parts.model, parts.precision
        rollouts = [self._rollout(parts, [train_set[i].input_ids for i in indices], indices, step)
                    for indices in micro]
        batches = [r.batch for r in rollouts]
        model.train()
        n_tokens = sum(int(b.mask.sum()) for b in batches)
        with torch.no_grad(), autocast_for(precision):
            for b in batches:
                if cfg.grpo_iterations > 1:
                    b.old_logps = answer_logps(model, b, cfg.grpo_temperature)
                if cfg.grpo_kl_beta > 0:
                    with model.disable_adapter():
                        b.ref_logps = answer_logps(model, b, cfg.grpo_temperature)
        loss_sum = kl_sum = grad_norm = 0.0
        for _ in range(cfg.grpo_iterations):
            loss_sum, kl_sum, grad_norm = self._update(parts, batches, n_tokens, step, max_grad_norm)
        lr = parts.scheduler.get_last_lr()[0]
        parts.scheduler.step()
        answers = [a for r in rollouts for a in r.answers]
        totals = [t for r in rollouts for t in r.totals]
        n = max(len(answers), 1)
        tokens = sum(len(train_set[i].input_ids) for b in micro for i in b) * cfg.grpo_group_size + n_tokens
        event = RewardLogged(
            step=step, reward=sum(totals) / n,
            rewards={r.name: sum(x.means[r.name] * len(x.answers) for x in rollouts) / n for r in self.rewards},
            kl=kl_sum / max(n_tokens, 1), completion_tokens=sum(a.tokens for a in answers) / n,
            sample_prompt=answers[0].prompt, sample=answers[0].completion, sample_reward=totals[0])
        return StepStats(loss_sum / max(n_tokens, 1), grad_norm, lr, tokens), event

    def _rollout(self, parts: TrainingSetup, prompts: list[tuple[int, ...]], indices: list[int], step: int) -> Rollout:
        """One micro-batch of prompts answered grpo_group_size times each, scored, ready to train on."""
        import torch

        cfg, group = self.config, self.config.grpo_group_size
        try:
            sampled = sample(parts.model, prompts, group, cfg.grpo_max_completion_tokens, cfg.grpo_temperature,
                             self.stops, parts.pad_id, self.generator, autocast_for(parts.precision))
        except torch.OutOfMemoryError:
            raise OutOfMemory(step, len(prompts) * group, max(map(len, prompts)) + cfg.grpo_max_completion_tokens,
                              "sampling") from None
        rows = [self.prompts[i] for i in indices for _ in range(group)]
        answers = []
        for row, tokens in zip(rows, sampled, strict=True):
            kept = [t for t in tokens if t not in self.stops]
            answers.append(Answer(row.text, self.tokenizer.decode(kept, skip_special_tokens=True), row.expected,
                                  len(kept), row.where))
        totals, means = score(self.rewards, answers)
        batch = _batch(prompts, group, sampled, group_advantages(torch.tensor(totals), group), parts.pad_id,
                       parts.precision.device)
        return Rollout(answers, totals, means, batch)

    def _update(self, parts: TrainingSetup, batches: list[Batch], n_tokens: int, step: int,
                max_grad_norm: float) -> tuple[float, float, float]:
        import torch

        cfg, scaler, optimizer = self.config, parts.scaler, parts.optimizer
        loss_sum = kl_sum = 0.0
        for b in batches:
            try:
                with autocast_for(parts.precision):
                    logps = answer_logps(parts.model, b, cfg.grpo_temperature)
                    old = b.old_logps if b.old_logps is not None else logps.detach()
                    loss, kl = policy_loss(logps, old, b.ref_logps, b.advantages, b.mask, cfg.grpo_kl_beta,
                                           cfg.grpo_clip_epsilon)
                scaled = loss / max(n_tokens, 1)
                (scaler.scale(scaled) if scaler else scaled).backward()
            except torch.OutOfMemoryError:
                optimizer.zero_grad(set_to_none=True)
                raise OutOfMemory(step, b.ids.shape[0], b.ids.shape[1]) from None
            loss_sum += float(loss.detach())
            kl_sum += float(kl)
        grad_norm = apply_gradients(parts, max_grad_norm)
        optimizer.zero_grad(set_to_none=True)
        return loss_sum, kl_sum, grad_norm


def answer_logps(model: Any, batch: Batch, temperature: float) -> Any:
    """Log-probabilities of the answer tokens, [answers, answer width], from logits scaled by the
    sampling temperature (the distribution they were drawn from). Only the answer positions'
    logits are computed."""
    import torch

    width = batch.mask.shape[1]
    out = model(input_ids=batch.ids, attention_mask=batch.attention, position_ids=batch.positions,
                use_cache=False, logits_to_keep=width + 1)
    logits = out.logits[:, :-1].float() / temperature
    chosen = batch.ids[:, -width:]
    return torch.gather(logits, 2, chosen.unsqueeze(2)).squeeze(2) - torch.logsumexp(logits, dim=2)


def _batch(prompts: list[tuple[int, ...]], group: int, answers: list[list[int]], advantages: Any, pad: int,
           device: str) -> Batch:
    import torch

    rows = [p for p in prompts for _ in range(group)]
    left, right = max(map(len, rows)), max(1, max(map(len, answers)))
    ids = [[pad] * (left - len(p)) + list(p) + a + [pad] * (right - len(a)) for p, a in zip(rows, answers, strict=True)]
    attention = [[0] * (left - len(p)) + [1] * (len(p) + len(a)) + [0] * (right - len(a))
                 for p, a in zip(rows, answers, strict=True)]
    mask = [[1.0] * len(a) + [0.0] * (right - len(a)) for a in answers]
    attention_t = torch.tensor(attention)
    positions = (attention_t.cumsum(-1) - 1).clamp(min=0)
    return Batch(torch.tensor(ids, device=device), attention_t.to(device), positions.to(device),
                 torch.tensor(mask, device=device), advantages.to(device))

