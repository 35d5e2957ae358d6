"""Loading the weights of a resolved model for training or merging, in 16/32-bit or 4-bit NF4.

Picks the dtype for the device, quantises on load for QLoRA, reports progress as events
(transformers' own bar would draw over the TUI), and turns out-of-memory, missing libraries and
broken folders into a `ModelLoadError` with advice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.events import EventSink, Progress, ignore
from engine.models.errors import ModelLoadError
from engine.models.hf_import import hf_imported
from engine.models.resolve import ResolvedModel
from engine.models.safety import allow_pickle

LOAD_STAGE = "load model"


def default_dtype(device: str) -> Any:
    """fp32 on CPU (bf16 matmuls there are slow and lossy), bf16 on GPUs that compute it natively, else fp16."""
    import torch

    from engine.hardware.probe import cuda_computes_bf16

    if not device.startswith("cuda"):
        return torch.float32
    return torch.bfloat16 if cuda_computes_bf16() else torch.float16


def load_causal_lm(
    resolved: ResolvedModel,
    *,
    load_in_4bit: bool = False,
    dtype: Any = None,
    device: str = "cpu",
    on_event: EventSink = ignore,
) -> Any:
    """Load the model for training or merging; 4-bit (QLoRA) quantises on load with bitsandbytes NF4.

    A repository that is already bitsandbytes 4-bit carries its own quantisation config and is
    loaded as it is.
    """
    import torch
    from safetensors import SafetensorError
    hf_imported()
    from transformers import AutoModelForCausalLM

    dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype or default_dtype(device)
    kwargs: dict[str, Any] = {
        "dtype": dtype,
        "trust_remote_code": resolved.trust_remote_code,
        "use_safetensors": not (allow_pickle() and not any(Path(resolved.ref).glob("*.safetensors"))),
    }
    four_bit = load_in_4bit or resolved.prequantized_4bit
    if four_bit:
        kwargs["device_map"] = {"": device}
    if load_in_4bit and not resolved.prequantized_4bit:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype if dtype in (torch.bfloat16, torch.float16) else torch.float32,
        )
    how = "4-bit NF4" if four_bit else str(dtype).removeprefix("torch.")
    on_event(Progress(LOAD_STAGE, 0, 1, "models", f"loading {resolved.name} ({how}) on {device}"))
    # Progress is reported through on_event; transformers' own bar would write over the TUI/CLI.
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        model = AutoModelForCausalLM.from_pretrained(resolved.ref, **kwargs)
        if not four_bit:
            model.to(device)  # (4-bit weights were placed and quantised by the load itself)
    except torch.OutOfMemoryError:
        raise ModelLoadError(
            f"{resolved.name} does not fit in {device} memory ({how}).",
            "Pick a smaller model or method=qlora, or close what else uses the GPU (see the hardware screen).",
        ) from None
    except ImportError as exc:
        raise ModelLoadError(f"Loading {resolved.name} ({how}) needs a missing library: {exc}", "Reinstall ftui.") from None
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
        # RuntimeError: shape mismatches between config.json and the weights.
        raise ModelLoadError(f"{resolved.name} does not load: {exc}", "Check the model folder or hub id.") from None
    on_event(Progress(LOAD_STAGE, 1, 1, "models", f"loaded {resolved.name}"))
    return model
