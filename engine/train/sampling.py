"""Sampled answers for GRPO: a group of answers per prompt, all decoded side by side with a KV cache.
Each prompt is read once, its cache then repeated for its group; an answer that has ended leaves
the batch.

The loop is plain torch over the model's own forward (transformers' cache, left-padded prompts
with explicit positions), so the policy that is trained is the one that samples, adapters and
all, on any device. Tokens are drawn on the CPU from one `torch.Generator` the run owns: its
state goes into every checkpoint (`engine.train.resume.Counters`), so a resumed run draws the
same answers the uninterrupted one would, whatever else used the global random state.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

from engine.train.loss import head_logits
from engine.train.setup import has_plain_head


def new_generator(seed: int) -> Any:
    import torch

    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def generator_state(generator: Any) -> str:
    """The generator's state as text, for state.json."""
    return base64.b64encode(bytes(generator.get_state().tolist())).decode("ascii")


def set_generator_state(generator: Any, text: str) -> None:
    import torch

    generator.set_state(torch.tensor(list(base64.b64decode(text)), dtype=torch.uint8))


def stop_ids(tokenizer: Any, model: Any) -> frozenset[int]:
    """Tokens that end an answer: the tokenizer's end of sequence and the model's generation ones."""
    ids = set()
    for source in (tokenizer.eos_token_id, getattr(getattr(model, "generation_config", None), "eos_token_id", None)):
        if isinstance(source, int):
            ids.add(source)
        elif isinstance(source, (list, tuple)):
            ids.update(int(i) for i in source)
    return frozenset(ids)


def sample(model: Any, prompts: Sequence[Sequence[int]], group: int, max_new: int, temperature: float,
           stops: frozenset[int], pad: int, generator: Any, autocast: Any) -> list[list[int]]:
    """`group` answers to each prompt, in prompt order: each answer's tokens, its stop token
    included when it ended on one. The model is left in eval mode; the caller restores it."""
    import torch

    device = next(model.parameters()).device
    width = max(map(len, prompts))
    ids = torch.tensor([[pad] * (width - len(p)) + list(p) for p in prompts], device=device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    answers: list[list[int]] = [[] for _ in range(len(prompts) * group)]
    running = list(range(len(answers)))
    past = None
    model.eval()
    with torch.no_grad(), autocast:
        for token in range(max_new):
            logits, past = last_logits(model, 1, input_ids=ids, attention_mask=mask, position_ids=positions,
                                       cache=past, use_cache=True)
            if token == 0:  # each prompt ran once: its cache and next-token logits serve its whole group
                past.batch_repeat_interleave(group)
                logits, mask, positions = (t.repeat_interleave(group, dim=0) for t in (logits, mask, positions))
            # Every row gets a distribution (finished rows a uniform one, whose draws are dropped) so that
            # each token takes the same draws from the generator however many rows still run.
            scores = torch.zeros(len(answers), logits.shape[-1])
            scores[running] = logits[:, -1].float().cpu()
            probs = torch.softmax(scores / temperature, dim=-1)
            drawn = torch.multinomial(probs, 1, generator=generator).squeeze(1).tolist()
            for i in running:
                answers[i].append(drawn[i])
            still = [k for k, i in enumerate(running) if drawn[i] not in stops]
            if not still:
                break
            if len(still) < len(running):  # finished rows leave the batch and the cache
                kept = torch.tensor(still, device=device)
                past.batch_select_indices(kept)
                mask, positions = mask[kept], positions[kept]
                running = [running[k] for k in still]
            ids = torch.tensor([drawn[i] for i in running], device=device).unsqueeze(1)
            mask = torch.cat([mask, mask.new_ones((len(running), 1))], dim=1)
            positions = positions[:, -1:] + 1
    return answers


def last_logits(model: Any, keep: int, **inputs: Any) -> tuple[Any, Any]:
    """(logits at the last `keep` positions, the cache) of one forward of `model` on `inputs`; where
    the logits are the head of the last hidden state, through the decoder and `head_logits`."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not has_plain_head(base):
        out = model(**inputs, logits_to_keep=keep)
        return out.logits, out.cache
    out = base.get_decoder()(**inputs)
    return head_logits(base.get_output_embeddings(), out.last_hidden_state[:, -keep:]), out.cache
