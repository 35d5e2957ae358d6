"""LoRA dropout on the CPU from 16 random bits per element instead of one generator call each.

torch's CPU dropout draws one Mersenne-Twister number per element (about 4 ns), so the masks of
a LoRA run's dropout layers took 13% of a demo step, as much as the attention. Here each 64-bit
draw gives four 16-bit numbers, each kept when it clears a threshold: one generator call per four
elements, the rate exact to 1/65536, from the same seeded generator (so resume and gradient
checkpointing's recomputation see the same masks). On CUDA torch's own dropout stays: its masks
come from a counter-based generator inside the kernel and cost little.
"""

from __future__ import annotations

import types
from typing import Any

LEVELS = 2**16


def use_packed_bits_dropout(model: Any, device: str) -> int:
    """Give the LoRA dropout layers of a CPU run the packed-bits forward; the number changed."""
    import torch

    if device.startswith("cuda"):
        return 0
    changed = 0
    for module in model.modules():
        layers = getattr(module, "lora_dropout", None)
        if not isinstance(layers, torch.nn.ModuleDict):
            continue
        for layer in layers.values():
            if isinstance(layer, torch.nn.Dropout) and layer.p > 0:
                layer.forward = types.MethodType(packed_bits_dropout, layer)
                changed += 1
    return changed


def packed_bits_dropout(self: Any, x: Any) -> Any:
    """`torch.nn.Dropout.forward` with masks made from four 16-bit numbers per 64-bit draw."""
    import torch

    cut = round(self.p * LEVELS)  # numbers under this, counted from the bottom of int16, are dropped
    if not self.training or cut == 0:
        return x
    n = x.numel()
    draws = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_(-(2**63), 2**63 - 1)
    keep = draws.view(torch.int16)[:n].view(x.shape) >= cut - LEVELS // 2
    return x * keep * (LEVELS / (LEVELS - cut))
