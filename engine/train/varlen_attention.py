"""Attention over a packed row without a mask: each example attends causally to itself alone.

A packed batch runs its examples end to end in one row (`collate(packed=True)`). transformers'
SDPA path keeps them apart with a [tokens x tokens] block-diagonal mask, so the attention work
grows with the square of the whole row and the mask is materialised; FlashAttention's varlen
kernel does it without either, but exists on CUDA only. On CUDA with flash-attn installed and 16-bit
inputs the row goes through that kernel in one call; otherwise each example's slice of the row runs
through SDPA on its own with `is_causal`, on every device (on a CPU, short examples through
`_short_causal`): attention costs the sum of the examples' squares, as in a padded batch without
its padding, and no mask is built.

A preference pair packs as one example that forks (`FORKS`): its prompt, its chosen reply, then
its rejected reply, whose tokens attend to the prompt and to themselves but not to the chosen
reply, so the prompt is run once for both.

Batches that carry an attention mask (validation, evaluation) go to transformers' own SDPA path
unchanged, so the model can keep this implementation for its whole life.
"""

from __future__ import annotations

import functools
from typing import Any

from engine.models.hf_import import hf_imported

ATTENTION = "ftui_varlen"
"""The name this implementation is registered under in transformers' attention interface."""
SEGMENTS = "cu_seq_lens_q"
"""The forward keyword holding the row's example boundaries (FlashAttention's name for them)."""
FORKS = "ftui_forks"
"""The forward keyword holding, per example of a packed row, None or (fork, second): the example's
tokens from `second` on continue its tokens before `fork`, as a second branch beside those between."""
SHORT_ON_CPU = 128
"""Examples up to this many tokens take `_short_causal` on a CPU. In bf16, forward and backward of
9 query / 3 kv heads of 64 (SmolLM2-135M): 0.53 against SDPA's 1.14 ms at 64 tokens, 1.21 against
3.03 at 128, 4.67 against 5.53 at 256, slower from 384 on; it keeps its [tokens x tokens]
probabilities for backward (6 bytes x heads x tokens per token), which the cap bounds."""


def use_varlen_attention(model: Any) -> None:
    """Switch `model` (a transformers model, or a peft model around one) to per-example attention."""
    hf_imported()
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(ATTENTION, varlen_attention)
    AttentionMaskInterface.register(ATTENTION, _padding_mask)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    base.set_attn_implementation(ATTENTION)


def varlen_attention(module: Any, query: Any, key: Any, value: Any, attention_mask: Any,
                     dropout: float = 0.0, scaling: float | None = None, **kwargs: Any) -> tuple[Any, None]:
    """transformers' attention signature: [batch, heads, tokens, dim] in, [batch, tokens, heads, dim] out."""
    import torch
    import torch.nn.functional as F
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    bounds = kwargs.get(SEGMENTS)
    if bounds is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    gqa = query.shape[1] != key.shape[1]
    scale = query.shape[-1] ** -0.5 if scaling is None else scaling
    forks = kwargs.get(FORKS)
    flash = _flash_varlen() if _flash_suits(query) and forks is None else None
    if flash is not None:
        return _flash_row(flash, query, key, value, bounds, scale, dropout), None
    short = SHORT_ON_CPU if query.device.type == "cpu" and not dropout else 0
    pieces = []
    for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        fork = forks[i] if forks is not None else None
        end = b if fork is None else fork[1]
        q, k, v = query[:, :, a:end], key[:, :, a:end], value[:, :, a:end]
        if b - a <= short:
            pieces.append(_short_causal(q, k, v, scale))
        else:
            pieces.append(F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout, scale=scale,
                                                         enable_gqa=gqa))
        if fork is not None:
            pieces.append(_branch(query, key, value, a, fork, b, scale, b - a <= short, dropout, gqa))
    out = pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=2)
    return out.transpose(1, 2).contiguous(), None


def _branch(query: Any, key: Any, value: Any, start: int, fork: tuple[int, int], end: int, scale: float,
            short: bool, dropout: float, gqa: bool) -> Any:
    """Attention of a forked example's second branch, tokens [second, end): to the shared tokens
    [start, shared end) and causally to itself."""
    import torch
    import torch.nn.functional as F

    shared, second = fork
    q = query[:, :, second:end]
    k = torch.cat([key[:, :, start:shared], key[:, :, second:end]], dim=2)
    v = torch.cat([value[:, :, start:shared], value[:, :, second:end]], dim=2)
    n, prefix = end - second, shared - start
    blocked = torch.ones(n, prefix + n, dtype=torch.bool, device=q.device).triu(prefix + 1)
    if short:
        return _short_attention(q, k, v, scale, blocked)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=~blocked, dropout_p=dropout, scale=scale, enable_gqa=gqa)


FLASH_DEVICES = ("cuda",)
"""Where flash-attn's kernel runs."""


def _flash_suits(query: Any) -> bool:
    """One packed row of 16-bit inputs on a device flash-attn runs on (it takes no fp32)."""
    import torch

    return (query.device.type in FLASH_DEVICES and query.shape[0] == 1
            and query.dtype in (torch.float16, torch.bfloat16))


@functools.cache
def _flash_varlen() -> Any:
    """flash-attn's `flash_attn_varlen_func`, or None when it is not installed or does not import."""
    try:
        from flash_attn import flash_attn_varlen_func
    except Exception:  # noqa: BLE001 - not installed, or built for another torch/CUDA
        return None
    return flash_attn_varlen_func


def _flash_row(flash: Any, query: Any, key: Any, value: Any, bounds: Any, scale: float, dropout: float) -> Any:
    """The packed row through FlashAttention's varlen kernel in one call: [1, heads, tokens, dim] in,
    [1, tokens, heads, dim] out. It takes grouped kv heads as they are."""
    import torch

    cu = torch.tensor(bounds, dtype=torch.int32, device=query.device)
    longest = max(b - a for a, b in zip(bounds[:-1], bounds[1:], strict=True))
    q, k, v = (t[0].transpose(0, 1) for t in (query, key, value))  # [tokens, heads, dim]
    out = flash(q, k, v, cu, cu, longest, longest, dropout_p=dropout, softmax_scale=scale, causal=True)
    return out[None]


def _short_causal(q: Any, k: Any, v: Any, scale: float) -> Any:
    """Causal attention as two matmuls around an fp32 softmax, each kv head's queries in one matmul:
    on a CPU faster than SDPA's flash kernel for short sequences in 16 bits, whose backward is slow."""
    import torch

    n = q.shape[2]
    return _short_attention(q, k, v, scale, torch.ones(n, n, dtype=torch.bool, device=q.device).triu(1))


def _short_attention(q: Any, k: Any, v: Any, scale: float, blocked: Any) -> Any:
    """`_short_causal` with any [queries x keys] mask, True where a query may not look."""
    import torch

    batch, heads, n, dim = q.shape
    kv_heads, keys = k.shape[1], k.shape[2]
    grouped = q.reshape(batch, kv_heads, heads // kv_heads * n, dim)
    scores = torch.matmul(grouped, k.transpose(-1, -2)).view(batch, heads, n, keys)
    probs = torch.softmax(scores.float().mul(scale).masked_fill(blocked, float("-inf")), dim=-1).to(q.dtype)
    return torch.matmul(probs.view(batch, kv_heads, heads // kv_heads * n, keys), v).view(batch, heads, n, dim)


def _padding_mask(*args: Any, attention_mask: Any = None, **kwargs: Any) -> Any:
    """SDPA's mask for padded batches; none for a packed row, whose bounds come with the forward."""
    from transformers.masking_utils import sdpa_mask

    if attention_mask is None:
        return None
    return sdpa_mask(*args, attention_mask=attention_mask, **kwargs)
