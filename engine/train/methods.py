"""Turning a loaded base model into what the chosen method trains, on the libraries' own calls.

LoRA, DoRA and QLoRA are peft adapters (QLoRA on a bitsandbytes 4-bit base whose embeddings,
norms and lm_head stay in the load dtype); full fine-tuning trains every weight. Precision
follows the hardware: bf16 autocast where the GPU or CPU computes it natively, fp16 with loss
scaling on GPUs without bf16, fp32 on other CPUs (`precision` forces one).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from engine.config.schema import RunConfig
from engine.hardware.architectures import translate_targets
from engine.hardware.probe import cuda_computes_bf16
from engine.models.hf_import import hf_imported
from engine.train.preflight import PreflightError


class TargetModulesError(PreflightError):
    """`target_modules` names layers the model does not have, or that LoRA cannot adapt."""


@dataclass(frozen=True)
class Precision:
    device: str
    load_dtype: Any
    """dtype of the base weights (None: fp32)."""
    autocast_dtype: Any
    """dtype of autocast regions, None for none (CPU)."""
    loss_scaling: bool

    @property
    def label(self) -> str:
        if self.autocast_dtype is None:
            return f"{self.device} fp32"
        name = str(self.autocast_dtype).removeprefix("torch.")
        return f"{self.device} {name} autocast" + (" + loss scaling" if self.loss_scaling else "")


class PrecisionError(PreflightError):
    """`precision` asks for what this device cannot train in."""


def choose_precision(method: str, device: str | None = None, precision: str = "auto") -> Precision:
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device != "cuda":
        # Weights stay fp32 (the matmuls cast them per call): bf16 weights measured no faster here.
        bf16 = precision == "bf16" or (precision == "auto" and cpu_has_native_bf16())
        return Precision(device, torch.float32, torch.bfloat16 if bf16 else None, False)
    if precision == "fp32":
        raise PrecisionError("precision = fp32 is for the CPU: on a GPU ftui trains in 16 bits, as its memory "
                             "estimate assumes.", "Set precision = auto (bf16, or fp16 on GPUs without bf16).")
    native = cuda_computes_bf16()
    if precision == "bf16" and not native:
        raise PrecisionError(f"precision = bf16, but {torch.cuda.get_device_name()} has no native bf16 (compute "
                             "capability 8.0+; older GPUs only emulate it, slower than fp16).",
                             "Set precision = auto: it trains in fp16 with loss scaling there.")
    half = torch.bfloat16 if native else torch.float16
    # Full fine-tuning keeps fp32 master weights: AdamW updates vanish in 16-bit weights.
    load = torch.float32 if method == "full" else half
    return Precision(device, load, half, half == torch.float16)


X86_BF16_FEATURES = ("avx512_bf16", "amx_bf16", "amx_tile")
ARM_BF16_FEATURES = ("bf16", "sve_bf16")
"""Arm's BF16 extension (Armv8.6: Neoverse V1/V2 and Grace, DGX Spark's Cortex-X925): torch's
oneDNN matmuls use its BFMMLA there. Not measured on Arm here; the x86 figure is in docs/benchmarks.md."""


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX on x86: there bf16 autocast trained the demo 1.22x faster than fp32 with
    the same held-out and retention scores (docs/benchmarks.md); the BF16 extension on Arm. Elsewhere
    bf16 is emulated and slower. torch's feature map names each architecture's own features."""
    import torch

    capabilities = getattr(torch.cpu, "get_capabilities", None)
    if capabilities is None:  # torch before the feature map: the x86 probes answer False on Arm
        probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(getattr(torch.cpu, name, lambda: False)() for name in probes)
    features = capabilities()
    return any(bool(features.get(name)) for name in (*X86_BF16_FEATURES, *ARM_BF16_FEATURES))


def store_frozen_weights_for_autocast(model: Any, precision: Precision) -> int:
    """On a CPU under autocast, keep frozen linear weights in the autocast type; the number stored.

    Autocast caches its casts only of weights that train, so every call cast each frozen fp32
    weight to bf16 again. Stored in bf16 the matmuls see the same values (the same rounding), and
    the copies are gone. Weights tied to an embedding stay fp32, since the embedding's output feeds
    the fp32 residual stream.

    The fp32 weights a checkpoint loads live in its file's mapping, and one weight left there keeps
    every page read so far resident: the frozen ones left in fp32 get their own copy, so the
    mapping closes (SmolLM2-135M's 0.5 GiB file stayed resident through training)."""
    import torch

    if precision.device != "cpu" or precision.autocast_dtype is None or precision.load_dtype != torch.float32:
        return 0
    tied = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    stored = 0
    for module in model.modules():
        if type(module) is not torch.nn.Linear or id(module.weight) in tied:
            continue
        params = [p for p in (module.weight, module.bias) if p is not None]
        if module.weight.dtype == torch.float32 and not any(p.requires_grad for p in params):
            for p in params:
                p.data = p.data.to(precision.autocast_dtype)
            stored += 1
    if stored:
        for p in model.parameters():
            if not p.requires_grad and p.dtype == torch.float32:
                p.data = p.data.clone()
    return stored


def apply_method(model: Any, config: RunConfig) -> Any:
    """Adapters (or full training) on `model`, with gradient checkpointing when asked."""
    # The config names Llama's projections; Phi-3 fuses them (engine/hardware/architectures.py).
    targets = translate_targets(config.target_modules, getattr(model.config, "model_type", None))
    if config.method != "full":
        check_target_modules(model, targets, config.model)
    model.config.use_cache = False
    # QLoRA needs no more than LoRA here. peft's prepare_model_for_kbit_training would also cast
    # every parameter that is not 4-bit (embeddings, lm_head, norms) to fp32: +2.0 GiB of weights
    # and a 1 GiB 16-bit lm_head copy per step on Llama 3.1 8B, for no measured gain in the loss
    # (tests/engine/train/test_methods.py). Its other part, input require-grads, only serves reentrant
    # checkpointing; ours is non-reentrant. get_peft_model freezes the base weights.
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if config.method == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    import warnings

    hf_imported()
    from peft import LoraConfig, get_peft_model

    # peft probes `is_gradient_checkpointing`, which transformers 5 marks deprecated: noise for users.
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    lora = LoraConfig(
        r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
        target_modules=list(targets), use_dora=config.method == "dora",
        bias="none", task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


def check_target_modules(model: Any, targets: tuple[str, ...], model_name: str) -> None:
    """Raise TargetModulesError naming each target that matches no layer LoRA can adapt.

    peft matches a name against the end of each module's dotted path. It fails with its own
    error only when no name matches; a misspelt name beside good ones is silently skipped, and
    that layer is never trained. Both end here, naming the model's real linear layers.
    """
    import torch
    hf_imported()
    from transformers.pytorch_utils import Conv1D

    # The layer types peft's LoRA wraps (bitsandbytes' 4-bit and 8-bit layers are nn.Linear).
    adaptable = (torch.nn.Linear, torch.nn.Embedding, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d, Conv1D)
    paths = [name for name, module in model.named_modules() if isinstance(module, adaptable)]
    unknown = [t for t in targets if not any(p == t or p.endswith(f".{t}") for p in paths)]
    if not unknown:
        return
    linear = list(dict.fromkeys(name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                                if isinstance(module, (torch.nn.Linear, Conv1D))))
    named = []
    for target in unknown:
        close = difflib.get_close_matches(target, linear, n=1)
        named.append(f"{target!r} (did you mean {close[0]!r}?)" if close else repr(target))
    raise TargetModulesError(
        f"target_modules {', '.join(named)} {'matches' if len(named) == 1 else 'match'} no layer of "
        f"{model_name} that LoRA can adapt.",
        f"Its linear layers are {', '.join(linear)}; set target_modules to some of these.")


def count_params(model: Any) -> tuple[int, int]:
    """(trainable, total); 4-bit weights count as their unpacked size."""
    trainable = total = 0
    for p in model.parameters():
        n = p.numel()
        if type(p).__name__ == "Params4bit":
            n *= 2
        total += n
        if p.requires_grad:
            trainable += n
    return trainable, total


def trainable_named(model: Any) -> dict[str, Any]:
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def build_optimizer(model: Any, config: RunConfig, device: str, sharded: bool = False) -> tuple[Any, str]:
    """The optimizer and a note when the requested one cannot run here: bitsandbytes' 8-bit AdamW needs
    CUDA, and cannot update FSDP's `sharded` parameters (DTensors, which it does not support)."""
    import torch

    decay: list[Any] = []
    no_decay: list[Any] = []
    for p in trainable_named(model).values():
        (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    note = ""
    if config.optimizer != "adamw" and device == "cuda" and not sharded:
        import bitsandbytes as bnb

        cls = bnb.optim.PagedAdamW8bit if config.optimizer == "paged_adamw_8bit" else bnb.optim.AdamW8bit
        return cls(groups, lr=config.learning_rate), note
    if config.optimizer != "adamw" and sharded:
        note = (f"{config.optimizer} cannot update FSDP's sharded parameters (bitsandbytes has no DTensor support); "
                "using 32-bit AdamW, 4x the optimizer memory (strategy = ddp keeps the 8-bit optimizer)")
    elif config.optimizer != "adamw":
        note = f"{config.optimizer} needs a CUDA GPU; using 32-bit AdamW on {device}"
    return torch.optim.AdamW(groups, lr=config.learning_rate, fused=device == "cuda"), note


def build_scheduler(optimizer: Any, config: RunConfig, total_steps: int) -> Any:
    hf_imported()
    from transformers import get_scheduler

    name = "constant_with_warmup" if config.scheduler == "constant" else config.scheduler
    return get_scheduler(name, optimizer, num_warmup_steps=warmup_steps(config, total_steps), num_training_steps=total_steps)


def warmup_steps(config: RunConfig, total_steps: int) -> int:
    return config.warmup_steps or round(config.warmup_ratio * total_steps)
