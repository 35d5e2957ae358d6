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
from collections.abc import Callable, Iterator, Sequence
from typing import Any

SLOTS = 16
"""Conversations decoded together."""
KV_TOKENS = 8192
"""The most cached tokens held over all slots (1 GiB of cache for an 8B model): long prompts get fewer slots."""
CELLS = 256
"""llama.cpp sizes each sequence's cache in steps of this many tokens."""


def greedy_replies(llm: Any, prompts: Sequence[list[int]], max_tokens: int,
                   on_reply: Callable[[int, str, bool], None] | None = None) -> list[tuple[str, bool]]:
    """The greedy reply to each prompt (token ids, chat template applied) as (text, ended on its
    own); a reply that ran into `max_tokens` did not end on its own. `on_reply(index, text,
    ended)` is called as each finishes, in the order they finish."""
    import llama_cpp
    import numpy as np

    if not prompts:
        return []
    per_slot = math.ceil((max(map(len, prompts)) + max_tokens) / CELLS) * CELLS
    slots = max(1, min(SLOTS, len(prompts), KV_TOKENS // per_slot))
    params = llama_cpp.llama_context_params.from_buffer_copy(llm.context_params)
    params.n_ctx = params.n_batch = slots * per_slot
    params.n_seq_max = slots
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
    ctx = llama_cpp.llama_init_from_model(llm.model, params)
    if not ctx:
        raise MemoryError(f"llama.cpp could not make a context of {slots} x {per_slot} tokens for batched replies")
    batch = llama_cpp.llama_batch_init(params.n_batch, 0, 1)
    replies: list[tuple[str, bool] | None] = [None] * len(prompts)
    try:
        waiting = iter(range(len(prompts)))
        # slot -> [prompt index, tokens cached, reply token ids]; feed: slot -> token ids to decode next
        held: dict[int, list[Any]] = {}
        feed: dict[int, list[int]] = {}
        for slot in range(slots):
            _take_next(slot, waiting, prompts, held, feed)
        memory = llama_cpp.llama_get_memory(ctx)
        while held:
            batch.n_tokens = 0
            last_row = {}
            for slot, tokens in feed.items():
                start = held[slot][1]
                for offset, token in enumerate(tokens):
                    row = batch.n_tokens
                    batch.token[row] = token
                    batch.pos[row] = start + offset
                    batch.n_seq_id[row] = 1
                    batch.seq_id[row][0] = slot
                    batch.logits[row] = offset == len(tokens) - 1
                    batch.n_tokens += 1
                last_row[slot] = batch.n_tokens - 1
                held[slot][1] = start + len(tokens)
            if (code := llama_cpp.llama_decode(ctx, batch)) != 0:
                raise RuntimeError(f"llama.cpp could not decode a batch of {batch.n_tokens} tokens (code {code})")
            feed = {}
            for slot, row in last_row.items():
                logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, row), shape=(n_vocab,))
                token = int(logits.argmax())
                index, _, reply = held[slot]
                ended = bool(llama_cpp.llama_vocab_is_eog(vocab, token))
                if not ended:
                    reply.append(token)
                if ended or len(reply) >= max_tokens:
                    text = llm.detokenize(reply).decode("utf-8", errors="ignore").strip()
                    replies[index] = (text, ended)
                    if on_reply is not None:
                        on_reply(index, text, ended)
                    llama_cpp.llama_memory_seq_rm(memory, slot, -1, -1)
                    del held[slot]
                    _take_next(slot, waiting, prompts, held, feed)
                else:
                    feed[slot] = [token]
    finally:
        llama_cpp.llama_batch_free(batch)
        llama_cpp.llama_free(ctx)
    return [r for r in replies if r is not None]


def _take_next(slot: int, waiting: Iterator[int], prompts: Sequence[list[int]], held: dict[int, list[Any]],
               feed: dict[int, list[int]]) -> None:
    """Start the next waiting prompt, if any, in `slot`."""
    index = next(waiting, None)
    if index is not None:
        held[slot] = [index, 0, []]
        feed[slot] = list(prompts[index])
