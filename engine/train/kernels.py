"""Fused CUDA kernels for the decoder's RMSNorm, SwiGLU MLP and rotary embedding, when installed.

Liger-Kernel's Triton versions of these elementwise-heavy parts save memory traffic and the
activations torch keeps between their separate ops (the `gpu` extra installs it). They replace
the modules' forwards in place, before the method adds adapters, and only on CUDA: Triton has no
CPU backend, so the CPU, and a GPU without the package, run transformers' own torch code. The run
says which kernels it uses in a Progress event ("kernels"), with the loss's (engine/train/loss.py),
and why it goes on without them when Liger fails. What Liger changes for the whole process is put
back when the run ends.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

DECODER_KERNELS = ("rms_norm", "swiglu", "rope")
"""What is asked of Liger; its cross-entropy stays off, since engine/train/loss.py owns the loss."""
INSTANCE_PATCHES = ("forward", "extra_repr", "_get_name")
"""The methods Liger binds onto a module instance when it is given `model=`."""


def _nothing() -> None:
    pass


@dataclass(frozen=True)
class DecoderKernels:
    """What `apply_decoder_kernels` did: the kernels the model runs, and how to undo the rest."""

    names: tuple[str, ...] = ()
    """Liger's kernels the model runs (rms_norm, swiglu, rope); () for transformers' torch code."""
    failure: str = ""
    """Why an installed liger-kernel is not used (its patch or a first forward through it failed)."""
    restore: Callable[[], None] = field(default=_nothing, compare=False)
    """Puts back the module globals Liger replaced for the whole process (its RoPE exists only as
    one, so they stay replaced while the run trains); its patches of this model's modules stay."""


def apply_decoder_kernels(model: Any, device: str) -> DecoderKernels:
    """Patch `model` with Liger's RMSNorm, SwiGLU and RoPE on CUDA, or say why not.

    Liger's apply functions also replace the classes and functions of transformers' modeling
    module for every model the process builds afterwards (`ftui demo` and `ftui sweep` go on to a
    CPU forward in the same process), so those globals are saved first and `restore` puts them back.
    A patch, or a first forward through the patched model, that fails leaves the model as it was.
    """
    if not device.startswith("cuda"):
        return DecoderKernels()
    try:
        from liger_kernel.transformers.monkey_patch import MODEL_TYPE_TO_APPLY_LIGER_FN
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] == "liger_kernel":
            return DecoderKernels()  # not installed
        return DecoderKernels(failure=f"{type(exc).__name__}: {exc}")
    except Exception as exc:  # noqa: BLE001 - installed, but built for another torch/triton
        return DecoderKernels(failure=f"{type(exc).__name__}: {exc}")
    apply = MODEL_TYPE_TO_APPLY_LIGER_FN.get(getattr(model.config, "model_type", ""))
    if apply is None:
        return DecoderKernels()
    accepted = inspect.signature(apply).parameters
    wanted = tuple(k for k in DECODER_KERNELS if k in accepted)
    options = {k: k in wanted for k in (*DECODER_KERNELS, "cross_entropy", "fused_linear_cross_entropy")
               if k in accepted}
    restore = _saved_modeling_globals()
    bound = {id(m): {k for k in INSTANCE_PATCHES if k in m.__dict__} for m in model.modules()}
    try:
        apply(model=model, **options)
        _first_forward(model)
    except Exception as exc:  # noqa: BLE001 - Triton, a liger/transformers mismatch: train without it
        restore()
        for module in model.modules():
            for key in set(INSTANCE_PATCHES) & set(module.__dict__) - bound.get(id(module), set()):
                del module.__dict__[key]
        return DecoderKernels(failure=f"{type(exc).__name__}: {exc}")
    return DecoderKernels(wanted, restore=restore)


def _saved_modeling_globals() -> Callable[[], None]:
    """A function that puts back the globals of transformers' modeling modules as they are now."""
    saved = {name: dict(vars(module)) for name, module in list(sys.modules.items())
             if name.startswith("transformers.models.") and ".modeling_" in name and module is not None}

    def restore() -> None:
        for name, before in saved.items():
            module = sys.modules.get(name)
            if module is None:
                continue
            now = vars(module)
            for key, value in before.items():
                if now.get(key) is not value:
                    setattr(module, key, value)

    return restore


def _first_forward(model: Any) -> None:
    """Eight tokens through the patched decoder, so a kernel that cannot compile or run on this GPU
    fails here, where the run can go on without it, and not at its first step."""
    import torch

    device = next(model.parameters()).device
    with torch.no_grad():
        model.get_decoder()(input_ids=torch.arange(8, device=device)[None] % model.config.vocab_size,
                            use_cache=False)


def describe_kernels(device: str, decoder: DecoderKernels, loss: str | None, adapter_groups: int = 0) -> str:
    """The Progress message: which fused kernels the run uses, or why it runs plain torch, and how
    many groups of LoRA adapters share one A matmul (engine/train/shared_input_lora.py)."""
    adapters = f"; LoRA A matrices fused per shared input ({adapter_groups} groups)" if adapter_groups else ""
    if not device.startswith("cuda"):
        return "decoder: plain torch, loss: chunked torch (fused kernels run on CUDA only)" + adapters
    failed = f" (liger-kernel failed, so the run goes on without it: {decoder.failure})" if decoder.failure else ""
    parts = [f"decoder: liger-kernel {', '.join(decoder.names)}" if decoder.names else "decoder: plain torch" + failed,
             f"loss: {loss or 'chunked torch'}"]
    hint = "" if decoder.names or loss or decoder.failure else " (pip install -e '.[gpu]' adds liger-kernel)"
    return ", ".join(parts) + hint + adapters
