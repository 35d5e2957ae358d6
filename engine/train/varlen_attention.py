"""Attention over a packed row without a mask: each example attends causally to itself alone.

A packed batch runs its examples end to end in one row (`collate(packed=True)`). transformers'
SDPA path keeps them apart with a [tokens x tokens] block-diagonal mask, so the attention work
grows with the square of the whole row and the mask is materialised; FlashAttention's varlen
kernel does it without either, but exists on CUDA only. Here each example's slice of the row runs
through SDPA on its own with `is_causal`, on every device: attention costs the sum of the
examples' squares, as in a padded batch without its padding, and no mask is built.

Batches that carry an attention mask (validation, evaluation) go to transformers' own SDPA path
unchanged, so the model can keep this implementation for its whole life.
"""

from __future__ import annotations

from typing import Any

ATTENTION = "ftui_varlen"
"""The name this implementation is registered under in transformers' attention interface."""
SEGMENTS = "cu_seq_lens_q"
"""The forward keyword holding the row's example boundaries (FlashAttention's name for them)."""


def use_varlen_attention(model: Any) -> None:
    """Switch `model` (a transformers model, or a peft model around one) to per-example attention."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(ATTENTION, varlen_attention)
    AttentionMaskInterface.register(ATTENTION, _padding_mask)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    base.set_attn_implementation(ATTENTION)


def segment_bounds(lengths: list[int]) -> list[int]:
    """Cumulative starts of the examples in a row, and its end: [0, n1, n1 + n2, ...]."""
    bounds = [0]
    for n in lengths:
        bounds.append(bounds[-1] + n)
    return bounds


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
    pieces = [F.scaled_dot_product_attention(query[:, :, a:b], key[:, :, a:b], value[:, :, a:b], is_causal=True,
                                             dropout_p=dropout, scale=scaling, enable_gqa=gqa)
              for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]
    out = pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=2)
    return out.transpose(1, 2).contiguous(), None


def _padding_mask(*args: Any, attention_mask: Any = None, **kwargs: Any) -> Any:
    """SDPA's mask for padded batches; none for a packed row, whose bounds come with the forward."""
    from transformers.masking_utils import sdpa_mask

    if attention_mask is None:
        return None
    return sdpa_mask(*args, attention_mask=attention_mask, **kwargs)
