"""Fused CUDA kernels for the decoder's RMSNorm, SwiGLU MLP and rotary embedding, when installed.

Liger-Kernel's Triton versions of these elementwise-heavy parts save memory traffic and the
activations torch keeps between their separate ops (the `gpu` extra installs it). They replace
the modules' forwards in place, before the method adds adapters, and only on CUDA: Triton has no
CPU backend, so the CPU, and a GPU without the package, run transformers' own torch code. The run
says which kernels it uses in a Progress event ("kernels"), with the loss's (engine/train/loss.py).
"""

from __future__ import annotations

import inspect
from typing import Any

DECODER_KERNELS = ("rms_norm", "swiglu", "rope")
"""What is asked of Liger; its cross-entropy stays off, since engine/train/loss.py owns the loss."""


def apply_decoder_kernels(model: Any, device: str) -> tuple[str, ...]:
    """Patch `model` with Liger's RMSNorm, SwiGLU and RoPE on CUDA; the names applied, () for plain torch."""
    if not device.startswith("cuda"):
        return ()
    try:
        from liger_kernel.transformers.monkey_patch import MODEL_TYPE_TO_APPLY_LIGER_FN
    except Exception:  # noqa: BLE001 - not installed, or built for another torch/triton
        return ()
    apply = MODEL_TYPE_TO_APPLY_LIGER_FN.get(getattr(model.config, "model_type", ""))
    if apply is None:
        return ()
    accepted = inspect.signature(apply).parameters
    wanted = tuple(k for k in DECODER_KERNELS if k in accepted)
    options = {k: k in wanted for k in (*DECODER_KERNELS, "cross_entropy", "fused_linear_cross_entropy")
               if k in accepted}
    apply(model=model, **options)
    return wanted


def describe_kernels(device: str, decoder: tuple[str, ...], loss: str | None, adapter_groups: int = 0) -> str:
    """The Progress message: which fused kernels the run uses, or why it runs plain torch, and how
    many groups of LoRA adapters share one A matmul (engine/train/shared_input_lora.py)."""
    adapters = f"; LoRA A matrices fused per shared input ({adapter_groups} groups)" if adapter_groups else ""
    if not device.startswith("cuda"):
        return "decoder: plain torch, loss: chunked torch (fused kernels run on CUDA only)" + adapters
    parts = [f"decoder: liger-kernel {', '.join(decoder)}" if decoder else "decoder: plain torch",
             f"loss: {loss or 'chunked torch'}"]
    hint = "" if decoder or loss else " (pip install -e '.[gpu]' adds liger-kernel)"
    return ", ".join(parts) + hint + adapters
