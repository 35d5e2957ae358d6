"""Sampled answers for GRPO: a group of answers per prompt, all decoded side by side with a KV cache.

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
    rows = [list(p) for p in prompts for _ in range(group)]
    width = max(map(len, rows))
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=device)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    answers: list[list[int]] = [[] for _ in rows]
    running = list(range(len(rows)))
    past = None
    model.eval()
    with torch.no_grad(), autocast:
        for _ in range(max_new):
            logits, past = last_logits(model, 1, input_ids=ids, attention_mask=mask, position_ids=positions,
                                       cache=past, use_cache=True)
            probs = torch.softmax(logits[:, -1].float().cpu() / temperature, dim=-1)
            drawn = torch.multinomial(probs, 1, generator=generator).squeeze(1).tolist()
            for i in running:
                answers[i].append(drawn[i])
            running = [i for i in running if drawn[i] not in stops]
            if not running:
                break
            # Finished rows keep decoding (one batch, one cache) but what they draw is not kept.
            ids = torch.tensor(drawn, device=device).unsqueeze(1)
            mask = torch.cat([mask, mask.new_ones((len(rows), 1))], dim=1)
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
