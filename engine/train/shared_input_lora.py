"""LoRA adapters that read the same input compute their A matrices as one matmul.

A decoder layer's q, k and v projections read the same normed hidden state, and so do gate and
up. peft multiplies that input by each adapter's rank-r A matrix apart, one thin matmul each
([tokens x hidden] @ [hidden x 16]) that runs at a few GFLOP/s on a CPU against ~190 for the base
shapes, after drawing a dropout mask each, and scales each adapter's full-width output. Here the
first adapter of a group computes x @ [A_q; A_k; A_v]^T once, behind one dropout mask, its
siblings take their slices, and the scaling is applied to the rank-r product. Every other plain
adapter runs the same forward alone, which also skips peft's cast of its input to the adapter's
fp32 under autocast (autocast casts it back to bf16 for the matmul anyway). The parameters,
checkpoints and saved adapters are peft's own; with dropout 0 the losses equal peft's to float
rounding, with dropout the siblings share one mask where peft draws one each (same rate).
"""

from __future__ import annotations

import types
import weakref
from typing import Any

from engine.models.hf_import import hf_imported

SHARED_INPUTS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))
"""Llama-style sibling projections fed the same tensor. Only speed depends on these names: a
sibling that is called with another input computes its own product."""
ADAPTER = "default"


class _Group:
    """The fused A product of one group's adapters for the input seen last."""

    def __init__(self, layers: list[Any]) -> None:
        self.layers = layers
        self.ranks = [layer.lora_A[ADAPTER].out_features for layer in layers]
        self._input: weakref.ref | None = None
        self._parts: tuple[Any, ...] = ()
        self._taken: set[int] = set()

    def part(self, index: int, x: Any) -> Any:
        """Layer `index`'s dropout(x) @ A^T, computed for the whole group the first time x is seen."""
        import torch
        import torch.nn.functional as F

        if self._input is None or self._input() is not x or index in self._taken:
            weights = [layer.lora_A[ADAPTER].weight for layer in self.layers]
            weight = torch.cat(weights) if len(weights) > 1 else weights[0]
            kind = x.device.type
            # Under autocast the matmul casts its input to 16 bits anyway: casting before the dropout
            # masks and scales half the bytes (the kept values are then rounded twice, within bf16's step).
            source = x.to(torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else weight.dtype)
            dropped = self.layers[0].lora_dropout[ADAPTER](source)
            self._parts = F.linear(dropped, weight).split(self.ranks, dim=-1)
            self._input, self._taken = weakref.ref(x), set()
        self._taken.add(index)
        part = self._parts[index]
        if len(self._taken) == len(self.layers):
            self._input, self._parts, self._taken = None, (), set()  # nothing kept past the layer
        return part


def fuse_shared_input_adapters(model: Any) -> int:
    """Route each group of sibling LoRA layers through one A matmul, and every other plain LoRA
    layer through the same forward as a group of one; the number of groups of siblings fused."""
    hf_imported()
    from peft.tuners.lora import LoraLayer

    fused = 0
    grouped: set[int] = set()
    for parent in model.modules():
        for names in SHARED_INPUTS:
            found = [getattr(parent, name, None) for name in names]
            layers: list[Any] = [layer for layer in found if isinstance(layer, LoraLayer) and _plain(layer)]
            if len(layers) != len(names):
                continue
            if len({layer.lora_A[ADAPTER].in_features for layer in layers}) != 1:
                continue
            _route(_Group(layers))
            grouped.update(id(layer) for layer in layers)
            fused += 1
    # A single adapter gains the scaling on the rank-r product, and skips peft's cast of its input
    # to the adapter's fp32 under autocast (two copies of e.g. down_proj's 1536-wide input per call).
    for layer in model.modules():
        if isinstance(layer, LoraLayer) and _plain(layer) and id(layer) not in grouped:
            _route(_Group([layer]))
    return fused


def _route(group: _Group) -> None:
    for index, layer in enumerate(group.layers):
        layer.forward = types.MethodType(_forward_with(group, index, type(layer).forward), layer)


def _plain(layer: Any) -> bool:
    """One vanilla adapter on a linear layer (not DoRA or another variant, not several adapters)."""
    import torch

    return (list(layer.lora_A) == [ADAPTER] and ADAPTER not in getattr(layer, "lora_variant", {})
            and isinstance(layer.lora_A[ADAPTER], torch.nn.Linear) and layer.lora_B[ADAPTER].bias is None)


def _forward_with(group: _Group, index: int, peft_forward: Any) -> Any:
    def forward(self: Any, x: Any, *args: Any, **kwargs: Any) -> Any:
        import torch.nn.functional as F

        if args or kwargs or self.disable_adapters or self.merged or list(self.active_adapters) != [ADAPTER]:
            return peft_forward(self, x, *args, **kwargs)
        result = self.base_layer(x)
        low_rank = group.part(index, x) * self.scaling[ADAPTER]
        return result + F.linear(low_rank, self.lora_B[ADAPTER].weight).to(result.dtype)

    return forward
