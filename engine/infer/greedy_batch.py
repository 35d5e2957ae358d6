"""Greedy replies to many prompts at once: llama.cpp decodes them side by side in one batch.

Evaluation and replay ask a model hundreds of questions. One at a time, every decoded token reads
all of the model's weights (about 10 ms a token for SmolLM2-135M in Q8_0 on two cores); with
SLOTS conversations in one batch the weights are read once per step for all of them. The 160
built-in retention prompts took 27 s instead of 48 s on a tuned demo model, with the same 160
replies as the chat gives one at a time. A finished conversation frees its slot for the next
prompt at once, so a long reply never holds the others back.

The batch is decoded with the context settings of the `llama_cpp.Llama` it is given (threads,
GPU offload, flash attention), which is what keeps the replies equal to the chat's; wider batches
can still round differently (154 of 160 equal at 32 slots, against 160 at 16).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.errors import ActionableError

SLOTS = 16
"""Conversations decoded together."""
KV_TOKENS = 8192
"""The most cached tokens held over all slots (1 GiB of cache for an 8B model): long prompts get fewer slots."""
CELLS = 256
"""llama.cpp sizes each sequence's cache in steps of this many tokens."""
ADVICE = "free memory (another model may be loaded), or shorten the longest prompts (retention_prompts, the eval file)"


class BatchDecodeError(ActionableError):
    """llama.cpp could not hold or decode the conversations' batch."""


def greedy_replies(llm: Any, prompts: Sequence[list[int]], max_tokens: int,
                   on_reply: Callable[[int, str, bool], None] | None = None) -> list[tuple[str, bool]]:
    """The greedy reply to each prompt (token ids, chat template applied) as (text, ended on its
    own); a reply that ran into `max_tokens` did not end on its own. `on_reply(index, text,
    ended)` is called as each finishes, in the order they finish."""
    import llama_cpp
    import numpy as np

    if not prompts:
        return []
    ctx, slots, n_batch = _open_context(llm, prompts, max_tokens)
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
    batch = llama_cpp.llama_batch_init(n_batch, 0, 1)
    replies: list[tuple[str, bool] | None] = [None] * len(prompts)
    try:
        waiting = iter(range(len(prompts)))
        held = {slot: _Reply(next(waiting)) for slot in range(slots)}  # slots <= prompts
        memory = llama_cpp.llama_get_memory(ctx)
        while held:
            last_row = _fill_batch(batch, prompts, held)
            if (code := llama_cpp.llama_decode(ctx, batch)) != 0:
                raise BatchDecodeError(f"llama.cpp could not decode a batch of {batch.n_tokens} tokens of "
                                       f"{len(held)} greedy replies (llama_decode returned {code})", ADVICE)
            for slot, row in last_row.items():
                logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, row), shape=(n_vocab,))
                token = int(logits.argmax())
                reply = held[slot]
                ended = bool(llama_cpp.llama_vocab_is_eog(vocab, token))
                if not ended:
                    reply.tokens.append(token)
                if ended or len(reply.tokens) >= max_tokens:
                    text = llm.detokenize(reply.tokens).decode("utf-8", errors="ignore").strip()
                    replies[reply.index] = (text, ended)
                    if on_reply is not None:
                        on_reply(reply.index, text, ended)
                    llama_cpp.llama_memory_seq_rm(memory, slot, -1, -1)
                    following = next(waiting, None)
                    if following is None:
                        del held[slot]
                    else:
                        held[slot] = _Reply(following)
    finally:
        llama_cpp.llama_batch_free(batch)
        llama_cpp.llama_free(ctx)
    return [r for r in replies if r is not None]


def _open_context(llm: Any, prompts: Sequence[list[int]], max_tokens: int) -> tuple[Any, int, int]:
    """A llama.cpp context beside `llm`'s, with its settings, sized for the batch: (context, slots, batch tokens).
    Each slot holds the longest prompt and its reply; the slots share at most KV_TOKENS."""
    import llama_cpp

    per_slot = math.ceil((max(map(len, prompts)) + max_tokens) / CELLS) * CELLS
    slots = max(1, min(SLOTS, len(prompts), KV_TOKENS // per_slot))
    params = llama_cpp.llama_context_params.from_buffer_copy(llm.context_params)
    params.n_ctx = params.n_batch = slots * per_slot
    params.n_seq_max = slots
    ctx = llama_cpp.llama_init_from_model(llm.model, params)
    if not ctx:
        raise BatchDecodeError(f"llama.cpp could not make a context of {slots} x {per_slot} tokens for "
                               f"{len(prompts)} greedy replies", ADVICE)
    return ctx, slots, params.n_batch


def _fill_batch(batch: Any, prompts: Sequence[list[int]], held: dict[int, _Reply]) -> dict[int, int]:
    """Write each held conversation's next tokens into `batch`; returns the row of each slot's last token,
    whose logits choose its next one."""
    batch.n_tokens = 0
    last_row = {}
    for slot, reply in held.items():
        # A new conversation feeds its whole prompt; one under way, the token it chose last.
        tokens = prompts[reply.index] if reply.cached == 0 else reply.tokens[-1:]
        for offset, token in enumerate(tokens):
            row = batch.n_tokens
            batch.token[row] = token
            batch.pos[row] = reply.cached + offset
            batch.n_seq_id[row] = 1
            batch.seq_id[row][0] = slot
            batch.logits[row] = offset == len(tokens) - 1
            batch.n_tokens += 1
        last_row[slot] = batch.n_tokens - 1
        reply.cached += len(tokens)
    return last_row


@dataclass
class _Reply:
    """One conversation in a slot: its prompt's index, the tokens of it in the slot's cache, its reply so far."""

    index: int
    cached: int = 0
    tokens: list[int] = field(default_factory=list)
