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

Guided GRPO (grpo_guide, off by default): a group in which no answer contains the row's expected
answer has nothing to compare, every advantage being zero. With a guide, the last answer of such a
group is replaced by the reference reply written from the row's `expected` (LUFFY's off-policy
guidance, Yan et al. 2025, given only where the policy found nothing), scored by the same rewards
and trained on as if sampled: its ratio is taken as 1, without LUFFY's policy shaping.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.data.rl_prompts import RlPrompt
from engine.data.types import TokenizedExample
from engine.events import RewardLogged
from engine.train.rewards import Answer, Reward, build_rewards, score
from engine.train.sampling import last_logits, new_generator, sample, stop_ids
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
    """One micro-batch of sampled answers, ready for forward passes: each prompt once, its answers
    grouped after it."""

    prompts: Any
    """[prompts, prompt width]: left-padded."""
    prompt_attention: Any
    answers: Any
    """[answers, answer width]: right-padded, grpo_group_size answers per prompt in prompt order."""
    mask: Any
    """[answers, answer width]: 1 on answer tokens."""
    advantages: Any
    old_logps: Any = None
    ref_logps: Any = None

    @property
    def group(self) -> int:
        return self.answers.shape[0] // self.prompts.shape[0]


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
        if cfg.grpo_guide:
            sampled = self._guided(sampled, indices)
        rows = [self.prompts[i] for i in indices for _ in range(group)]
        answers = [Answer(row.text, self._text(tokens), row.expected, sum(t not in self.stops for t in tokens),
                          row.where) for row, tokens in zip(rows, sampled, strict=True)]
        totals, means = score(self.rewards, answers)
        batch = _batch(prompts, group, sampled, group_advantages(torch.tensor(totals), group), parts.pad_id,
                       parts.precision.device)
        return Rollout(answers, totals, means, batch)

    def _guided(self, sampled: list[list[int]], indices: list[int]) -> list[list[int]]:
        """The sampled answers, the last of each group that holds no answer with its row's expected one
        replaced by the guide's reference reply, ended by the end-of-turn token a sampled answer ends on."""
        from engine.data.answers import answer_matches

        group, out = self.config.grpo_group_size, list(sampled)
        for k, i in enumerate(indices):
            expected = self.prompts[i].expected
            answers = sampled[k * group:(k + 1) * group]
            if expected is None or any(answer_matches(self._text(a), expected) for a in answers):
                continue
            out[(k + 1) * group - 1] = self._reference(expected)
        return out

    def _reference(self, expected: str) -> list[int]:
        reply = self.config.grpo_guide.replace("{expected}", expected)
        ids = list(self.tokenizer(reply, add_special_tokens=False)["input_ids"])
        end = self.tokenizer.eos_token_id if self.tokenizer.eos_token_id in self.stops else min(self.stops, default=None)
        return (ids + ([end] if end is not None else []))[:self.config.grpo_max_completion_tokens]

    def _text(self, tokens: list[int]) -> str:
        return self.tokenizer.decode([t for t in tokens if t not in self.stops], skip_special_tokens=True)

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
                raise OutOfMemory(step, b.answers.shape[0], b.prompts.shape[1] + b.answers.shape[1]) from None
            loss_sum += float(loss.detach())
            kl_sum += float(kl)
        grad_norm = apply_gradients(parts, max_grad_norm)
        optimizer.zero_grad(set_to_none=True)
        return loss_sum, kl_sum, grad_norm


def answer_logps(model: Any, batch: Batch, temperature: float) -> Any:
    """Log-probabilities of the answer tokens, [answers, answer width], from logits scaled by the
    sampling temperature (the distribution they were drawn from). Only the answer positions'
    logits are computed.

    Each prompt runs once: its keys and values (with their gradients) are repeated for its group of
    answers, which then read them as a cache, as sampling did. At the preset's 42-token prompts, 8
    answers of up to 24 tokens each, that is 226 tokens a prompt instead of 528 with each answer after
    its own copy of the prompt. Under gradient checkpointing, which drops caches, each answer runs
    after its prompt.
    """
    import torch

    if torch.is_grad_enabled() and model.training and _checkpointing(model):
        return _answer_logps_unshared(model, batch, temperature)
    group, width = batch.group, batch.answers.shape[1]
    positions = (batch.prompt_attention.cumsum(-1) - 1).clamp(min=0)
    last, cache = last_logits(model, 1, input_ids=batch.prompts, attention_mask=batch.prompt_attention,
                              position_ids=positions, use_cache=True)
    first = last.repeat_interleave(group, dim=0)
    if width == 1:
        logits = first
    else:
        cache.batch_repeat_interleave(group)
        attention = torch.cat([batch.prompt_attention.repeat_interleave(group, dim=0), batch.mask.long()], dim=1)
        after = positions[:, -1:].repeat_interleave(group, dim=0) + 1 + torch.arange(width - 1, device=positions.device)
        rest, _ = last_logits(model, width - 1, input_ids=batch.answers[:, :-1], attention_mask=attention[:, :-1],
                              position_ids=after, cache=cache, use_cache=True)
        logits = torch.cat([first, rest], dim=1)
    return _token_logps(logits, batch.answers, temperature)


def _answer_logps_unshared(model: Any, batch: Batch, temperature: float) -> Any:
    """`answer_logps` with each answer after its own copy of the prompt, one row each."""
    import torch

    group, width = batch.group, batch.answers.shape[1]
    ids = torch.cat([batch.prompts.repeat_interleave(group, dim=0), batch.answers], dim=1)
    attention = torch.cat([batch.prompt_attention.repeat_interleave(group, dim=0), batch.mask.long()], dim=1)
    positions = (attention.cumsum(-1) - 1).clamp(min=0)
    logits, _ = last_logits(model, width + 1, input_ids=ids, attention_mask=attention, position_ids=positions,
                            use_cache=False)
    return _token_logps(logits[:, :-1], batch.answers, temperature)


def _token_logps(logits: Any, tokens: Any, temperature: float) -> Any:
    """log softmax(logits / temperature) at `tokens`, [rows, width]."""
    import torch

    scaled = logits.float() / temperature
    return torch.gather(scaled, 2, tokens.unsqueeze(2)).squeeze(2) - torch.logsumexp(scaled, dim=2)


def _checkpointing(model: Any) -> bool:
    """Whether a layer recomputes itself in backward (transformers' gradient checkpointing), which drops the cache."""
    return any(getattr(m, "gradient_checkpointing", False) for m in model.modules())


def _batch(prompts: list[tuple[int, ...]], group: int, answers: list[list[int]], advantages: Any, pad: int,
           device: str) -> Batch:
    import torch

    left, right = max(map(len, prompts)), max(1, max(map(len, answers)))
    ids = [[pad] * (left - len(p)) + list(p) for p in prompts]
    attention = [[0] * (left - len(p)) + [1] * len(p) for p in prompts]
    mask = [[1.0] * len(a) + [0.0] * (right - len(a)) for a in answers]
    padded = [a + [pad] * (right - len(a)) for a in answers]
    return Batch(torch.tensor(ids, device=device), torch.tensor(attention, device=device),
                 torch.tensor(padded, device=device), torch.tensor(mask, device=device), advantages.to(device))
