"""Peak GPU memory of a fine-tuning run, from the catalog's architecture numbers alone.

Planning happens before anything is downloaded, and for cards the user does not have, so the
estimate is arithmetic over `ModelSpec` (layers, hidden, intermediate, heads, kv heads, vocab),
written from first principles: what each tensor is, its dtype and how long it lives. Parts that
never coexist are not added up: with gradient checkpointing the loss's logits are freed before
the first layer is recomputed, so only the larger of the two counts. ftui's loss never holds the
full logits (engine/train/loss.py): one chunk of them at a time, whatever the length.

How tensors are held depends on the training code, so that is a parameter (`Runtime`):
`HF_PEFT` is ftui's own stack (engine/train: transformers + peft, bf16 autocast); `TORCHTUNE`
describes the recipes behind the published figures the estimator is checked against
(tests/engine/hardware/test_estimate.py), so the shared arithmetic is tested on real measurements.
No fudge factor is applied: the only tuned numbers are the named overheads below.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from engine.config.schema import DEFAULT_TARGET_MODULES, PAIR_OBJECTIVES, RunConfig
from engine.hardware.architectures import FUSED, translate_targets
from engine.hardware.catalog import ModelSpec

GIB = 1024**3
BYTES_16BIT = 2
BYTES_FP32 = 4
NF4_BYTES_PER_WEIGHT = 0.5
"""4-bit NormalFloat: two weights per byte."""
NF4_BLOCK_SIZE = 64
NF4_DOUBLE_QUANT_BYTES_PER_WEIGHT = (1 + BYTES_FP32 / 256) / NF4_BLOCK_SIZE
"""bitsandbytes double quantisation: one 8-bit absmax per 64-weight block plus one fp32 scale per
256 absmax values, ~0.127 bits per weight on top of the 4."""
ADAMW_8BIT_BYTES = 2
"""bitsandbytes AdamW8bit: two 8-bit moments per trainable weight (block scales are negligible)."""
ADAMW_32BIT_MOMENTS = 2
"""torch AdamW keeps two moments per weight, in the weight's own dtype."""
ACTIVATION_BYTES = BYTES_16BIT
"""Activations under bf16/fp16 autocast."""
DROPOUT_MASK_BYTES = 1
CUDA_CONTEXT_GIB = 0.5
"""CUDA runtime, cuBLAS workspaces and torch's kernels: outside torch's allocator, but counted by
nvidia-smi and so by what fits (0.3-0.6 GiB on recent drivers)."""
ALLOCATOR_SLACK = 0.05
"""torch's caching allocator reserves more than it hands out (fragmentation); share of the tensors."""
OPTIMIZERS = ("adamw", "adamw_8bit", "paged_adamw_8bit")
METHODS = ("lora", "qlora", "dora", "full")
STRATEGIES = ("ddp", "fsdp")
FSDP_LAYERS_IN_FLIGHT = 2
"""fully_shard all-gathers the next layer while the current one computes (its default prefetch of
one), in forward and again in backward, so two layers' whole weights are on each GPU at once."""
COMM_BUFFERS_GIB = 0.25
"""Per GPU in a process group: NCCL's channel buffers, allocated outside torch like the CUDA context.
Not yet measured; bench/gpu_check.py prints what a two-GPU run really holds."""


@dataclass(frozen=True)
class Runtime:
    """How the training code holds its tensors, which is not a property of the model."""

    name: str
    adapter_bytes: int
    """dtype width of LoRA/DoRA weights, hence of their gradients and AdamW moments."""
    full_weight_bytes: int
    """dtype width full fine-tuning keeps trained weights in (fp32 master weights: 4)."""
    autocast_weight_copy: bool
    """Full fine-tuning under autocast: the 16-bit cast of every weight is saved for backward."""
    kbit_plain_bytes: int
    """QLoRA: dtype width of the weights left unquantised (embeddings, norms, lm_head)."""
    loss_bytes_per_logit: float
    """Peak bytes per (token x vocab) element while the loss and its backward run, for a loss over
    all logits at once; with `loss_chunk_elements`, per element of one chunk."""
    loss_chunk_elements: int = 0
    """The loss projects and differentiates this many logits at a time (0: all at once)."""
    loss_bytes_per_hidden: float = 0
    """Chunked loss: bytes per (token x hidden) it keeps from its forward into backward."""
    offload_checkpoints: bool = False
    """Checkpointed layer inputs live in CPU memory between forward and backward."""


HF_PEFT = Runtime(
    name="ftui: transformers + peft, bf16 autocast",
    # peft upcasts adapter weights to fp32 (autocast_adapter_dtype) for stable updates.
    adapter_bytes=BYTES_FP32,
    # engine/train/methods.py loads full fine-tuning in fp32: AdamW updates vanish in 16-bit weights.
    full_weight_bytes=BYTES_FP32,
    autocast_weight_copy=True,
    # engine/train/methods.py leaves embeddings, norms and lm_head in the 16-bit load dtype.
    kbit_plain_bytes=BYTES_16BIT,
    # engine/train/loss.py: one chunk of logits in fp32 beside their bf16 matmul output or the bf16
    # softmax gradient (4 + 2), gradients computed in the forward pass, nothing recomputed.
    loss_bytes_per_logit=BYTES_FP32 + BYTES_16BIT,
    loss_chunk_elements=2**25,
    # Kept into backward: the labelled rows of the last hidden state (2), their gradient (2) and
    # the final norm's fp32 input (4); at the start of backward the gradient is scattered back
    # into the [batch x length x hidden] shape (2 + 2, its slice and its padding).
    loss_bytes_per_hidden=3 * BYTES_16BIT + BYTES_FP32 + BYTES_16BIT,
)

HF_PEFT_FULL_LOGITS = replace(
    HF_PEFT, name="transformers + peft with the full-logits loss and fp32 QLoRA embeddings (ftui before issue 15)",
    # prepare_model_for_kbit_training cast every non-4-bit parameter to fp32; the loss upcast all
    # logits to fp32 and backward held the log-softmax, the incoming gradient and its own (3 x 4).
    kbit_plain_bytes=BYTES_FP32, loss_bytes_per_logit=3 * BYTES_FP32, loss_chunk_elements=0, loss_bytes_per_hidden=0,
)

TORCHTUNE = Runtime(
    name="torchtune single-device recipe: bf16, compiled, chunked cross-entropy",
    adapter_bytes=BYTES_16BIT,
    full_weight_bytes=BYTES_16BIT,
    autocast_weight_copy=False,
    kbit_plain_bytes=BYTES_16BIT,
    # The bf16 logits of all 8 chunks are kept for backward; the compiled loss upcasts one
    # chunk at a time and writes a bf16 gradient per chunk.
    loss_bytes_per_logit=BYTES_16BIT + BYTES_16BIT / 8,
)

TORCHTUNE_OFFLOAD = replace(TORCHTUNE, name=TORCHTUNE.name + ", activation offloading", offload_checkpoints=True)


@dataclass(frozen=True)
class MemoryEstimate:
    peak_gib: float
    breakdown: dict[str, float]
    """GiB per part; the parts add up to peak_gib. With gradient checkpointing, "logits" is what
    the loss needs beyond the recomputed layer it alternates with."""
    strategy: str = ""
    """"ddp" or "fsdp" for a figure per GPU of several; "" for one device."""

    @property
    def tensors_gib(self) -> float:
        """What torch's allocator itself reports as peak (no CUDA context, no fragmentation)."""
        return self.peak_gib - self.breakdown["cuda_context"] - self.breakdown["allocator"]


def estimate(
    spec: ModelSpec,
    method: str,
    batch_size: int,
    seq_len: int,
    *,
    grad_checkpointing: bool = False,
    optimizer: str = "adamw",
    lora_r: int = 16,
    target_modules: Sequence[str] | None = None,
    lora_dropout: float = 0.0,
    runtime: Runtime = HF_PEFT,
    world_size: int = 1,
    strategy: str = "ddp",
    objective: str = "sft",
) -> MemoryEstimate:
    """Peak memory of one training step (the first optimizer step included) on one GPU.

    Under dpo and orpo a batch of `batch_size` pairs is 2 x batch_size sequences (each pair's chosen
    and rejected reply). DPO's reference pass (the base with adapters disabled, without gradients)
    runs before the policy's forward and frees each layer's activations as it goes, so it adds no
    peak; under full fine-tuning the reference is two numbers per pair computed before training.

    With `world_size` processes, `batch_size` is each one's micro-batch and the figure is per GPU:
    under ddp every GPU holds what one GPU alone would, plus the process group's buffers; under fsdp
    (`fully_shard` on each decoder layer and the root) weights, adapters, gradients and optimizer
    states are split across the GPUs, while the root's embeddings, lm_head and norms stay whole
    through the step and two layers at a time are gathered whole.
    """
    _refuse_impossible(spec, method, optimizer, batch_size, seq_len, world_size, strategy)
    targets, shapes = _adapted_targets(spec, method, target_modules)
    tokens = batch_size * seq_len * (2 if objective in PAIR_OBJECTIVES else 1)
    quantized = method == "qlora" or spec.bits == 4
    held = _held_weights(spec, method, shapes, targets, lora_r, quantized, runtime)
    parts = dict(held.parts)
    parts["gradients"] = held.trainable * held.bytes_per_trainable
    sharded = world_size > 1 and strategy == "fsdp"
    # bitsandbytes cannot update FSDP's sharded parameters: there the run falls back to 32-bit AdamW.
    eight_bit = optimizer != "adamw" and not sharded
    moment_bytes = ADAMW_8BIT_BYTES if eight_bit else ADAMW_32BIT_MOMENTS * held.bytes_per_trainable
    parts["optimizer"] = held.trainable * moment_bytes
    if sharded:
        parts = _fsdp_shards(parts, held, spec.layers, world_size, full=method == "full")

    layer = tokens * layer_activation_bytes(spec, method, targets, lora_dropout, runtime)
    loss_peak, loss_kept = loss_bytes(spec, tokens, runtime, trains_head=method == "full")
    if grad_checkpointing:
        saved_inputs = 0 if runtime.offload_checkpoints else spec.layers * tokens * spec.hidden * ACTIVATION_BYTES
        parts["activations"] = saved_inputs + layer
        parts["logits"] = loss_kept + max(0.0, loss_peak - layer)
    else:
        parts["activations"] = spec.layers * layer
        parts["logits"] = loss_kept + loss_peak
    parts["workspace"] = _workspace(spec, shapes, quantized, method, runtime)
    return _with_runtime_overheads(parts, world_size, strategy)


def _refuse_impossible(spec: ModelSpec, method: str, optimizer: str, batch_size: int, seq_len: int, world_size: int,
                       strategy: str) -> None:
    """Raise ValueError for a request no run could make: unknown names, empty batches, 4-bit full fine-tuning."""
    if method not in METHODS:
        raise ValueError(f"method {method!r} is not one of {', '.join(METHODS)}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer {optimizer!r} is not one of {', '.join(OPTIMIZERS)}")
    if batch_size < 1 or seq_len < 1:
        raise ValueError("batch_size and seq_len must be at least 1")
    if world_size < 1 or strategy not in STRATEGIES:
        raise ValueError(f"world_size must be at least 1 and strategy one of {', '.join(STRATEGIES)}")
    if method == "full" and spec.bits == 4:
        raise ValueError(f"{spec.id} holds 4-bit weights, which full fine-tuning cannot train; "
                         f"use {spec.base_16bit or 'its 16-bit model'} or a LoRA method")


def _adapted_targets(spec: ModelSpec, method: str,
                     target_modules: Sequence[str] | None) -> tuple[tuple[str, ...], dict[str, tuple[int, int]]]:
    """The layers LoRA adapts, in this architecture's names, and the (in, out) shape of every linear layer."""
    targets = translate_targets(tuple(target_modules) if target_modules else DEFAULT_TARGET_MODULES,
                                spec.architecture)
    shapes = linear_shapes(spec)
    unknown = [t for t in targets if t not in shapes]
    if unknown and method != "full":
        raise ValueError(f"target module(s) {', '.join(unknown)} are not in {spec.name}; "
                         f"choose from {', '.join(shapes)}")
    return targets, shapes


@dataclass(frozen=True)
class _HeldWeights:
    """What a method keeps of the model and what it trains."""

    parts: dict[str, float]
    """Bytes of "weights", and of "adapters" under the LoRA methods."""
    plain_bytes: float
    """Bytes of the embeddings, lm_head and norms: the part fsdp keeps whole on every GPU."""
    trainable: int
    """Trained weights: every weight under full fine-tuning, else the adapters'."""
    bytes_per_trainable: int
    """dtype width of each trained weight, hence of its gradient."""


def _held_weights(spec: ModelSpec, method: str, shapes: dict[str, tuple[int, int]], targets: Sequence[str],
                  lora_r: int, quantized: bool, runtime: Runtime) -> _HeldWeights:
    """The bytes `method` holds of the model's weights and adapters, and the weights it trains."""
    linear = spec.layers * sum(i * o for i, o in shapes.values())
    plain = spec.params - linear  # embeddings, lm_head, norms
    if method == "full":
        weight_bytes = runtime.full_weight_bytes
        per_weight = weight_bytes + (BYTES_16BIT if runtime.autocast_weight_copy and weight_bytes != BYTES_16BIT else 0)
        return _HeldWeights({"weights": spec.params * per_weight}, plain * per_weight, spec.params, weight_bytes)
    adapted = [shapes[t] for t in targets]
    trainable = spec.layers * sum(lora_r * (i + o) for i, o in adapted)
    if method == "dora":
        trainable += spec.layers * sum(o for _, o in adapted)  # one magnitude per output row
    if quantized:
        plain_bytes = plain * runtime.kbit_plain_bytes
        weights = linear * (NF4_BYTES_PER_WEIGHT + NF4_DOUBLE_QUANT_BYTES_PER_WEIGHT) + plain_bytes
    else:
        plain_bytes = plain * BYTES_16BIT
        weights = spec.params * BYTES_16BIT
    return _HeldWeights({"weights": weights, "adapters": trainable * runtime.adapter_bytes}, plain_bytes, trainable,
                        runtime.adapter_bytes)


def _fsdp_shards(parts: dict[str, float], held: _HeldWeights, layers: int, world_size: int,
                 full: bool) -> dict[str, float]:
    """`parts` as one GPU of `world_size` holds them under fsdp, plus the whole layers gathered beyond its shard."""
    layer_bytes = (parts["weights"] - held.plain_bytes) / layers
    shards = dict(parts)
    shards["weights"] = (parts["weights"] - held.plain_bytes) / world_size + held.plain_bytes
    # Adapters' gradients stay whole while a step's micro-batches add them up, reduce-scattered once
    # (engine.train.parallel.wrap); full fine-tuning reduce-scatters them layer by layer.
    for name in ("adapters", "optimizer", *(("gradients",) if full else ())):
        if name in shards:
            shards[name] /= world_size
    # Beyond its own shard: the gathered layers, and one layer's whole gradient before its reduce-scatter.
    shards["gathered"] = (FSDP_LAYERS_IN_FLIGHT * layer_bytes * (1 - 1 / world_size)
                          + (held.trainable / layers * held.bytes_per_trainable if full else 0))
    return shards


def _with_runtime_overheads(parts: dict[str, float], world_size: int, strategy: str) -> MemoryEstimate:
    """The tensors plus what the allocator, the CUDA context and a process group's buffers add, in GiB."""
    tensors = sum(parts.values())
    parts = {**parts, "allocator": tensors * ALLOCATOR_SLACK, "cuda_context": CUDA_CONTEXT_GIB * GIB}
    if world_size > 1:
        parts["comm_buffers"] = COMM_BUFFERS_GIB * GIB
    breakdown = {name: value / GIB for name, value in parts.items()}
    return MemoryEstimate(peak_gib=sum(breakdown.values()), breakdown=breakdown,
                          strategy=strategy if world_size > 1 else "")


def loss_bytes(spec: ModelSpec, tokens: int, runtime: Runtime = HF_PEFT, trains_head: bool = False) -> tuple[float, float]:
    """(short-lived peak, kept into backward) of the loss over `tokens` trained tokens.

    Every token is counted as trained, as for text data; a responses-only dataset projects fewer.
    When lm_head trains (full fine-tuning), the chunked loss also keeps its fp32 gradient from the
    forward pass into backward and adds each chunk's 16-bit part into it.
    """
    if not runtime.loss_chunk_elements:
        return tokens * spec.vocab * runtime.loss_bytes_per_logit, 0.0
    rows = min(tokens, max(1, runtime.loss_chunk_elements // spec.vocab))
    peak = rows * spec.vocab * runtime.loss_bytes_per_logit
    kept = tokens * spec.hidden * runtime.loss_bytes_per_hidden
    if trains_head:
        peak += spec.vocab * spec.hidden * BYTES_16BIT
        kept += spec.vocab * spec.hidden * BYTES_FP32
    return peak, kept


def linear_shapes(spec: ModelSpec) -> dict[str, tuple[int, int]]:
    """(in, out) features of each projection in one decoder layer (grouped-query), under the
    architecture's own names: Phi-3 fuses q/k/v and gate/up (engine/hardware/architectures.py)."""
    h, q, kv, i = spec.hidden, spec.heads * spec.head_size, spec.kv_heads * spec.head_size, spec.intermediate
    if spec.architecture in FUSED:
        return {"qkv_proj": (h, q + 2 * kv), "o_proj": (q, h), "gate_up_proj": (h, 2 * i), "down_proj": (i, h)}
    return {
        "q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
        "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h),
    }


def layer_activation_bytes(spec: ModelSpec, method: str, targets: Sequence[str], lora_dropout: float = 0.0,
                           runtime: Runtime = HF_PEFT) -> float:
    """Bytes one decoder layer saves for backward, per token, in eager mode.

    Every layer: each RMSNorm saves its input upcast to fp32 (2 x 4h); SDPA/flash saves q, k, v
    and its output (2h + 2kv + 2kv + 2h); the MLP saves the gate output for SiLU and both
    factors of the product (3 x 2I). Frozen weights need no saved input; trained ones do: the
    normed inputs (2 x 2h, each shared by its projections) and the product that feeds down_proj
    (2I); trained norm weights also need the normalised input. peft's fp32 adapters are the
    exception: it casts each adapted layer's input to fp32 and autocast casts it back, so every
    adapted layer saves its own 16-bit copy. LoRA's rank-r intermediates are ignored. tests/engine/hardware/test_activations_hf.py checks this against the
    tensors transformers and peft really save.
    """
    h, i = spec.hidden, spec.intermediate
    kv = spec.head_size * spec.kv_heads
    a = ACTIVATION_BYTES
    shapes = linear_shapes(spec)
    total = 2 * BYTES_FP32 * h + a * (2 * h + 4 * kv) + 3 * a * i
    if method == "full" or runtime.adapter_bytes == ACTIVATION_BYTES:
        total += a * (2 * h + i)
    if method == "full":
        # Trained norm weights need the normalised input, kept in the residual stream's dtype
        # (fp32 when the master weights are fp32).
        total += 2 * runtime.full_weight_bytes * h
    else:
        total += a * sum(shapes[t][0] for t in targets)
    if lora_dropout > 0 and method != "full":
        # Each adapted layer has its own dropout, which saves its mask (one byte per input on CUDA).
        total += sum(shapes[t][0] for t in targets) * DROPOUT_MASK_BYTES
    if method == "dora":
        # DoRA rescales the base output by the magnitude: base and adapter outputs are saved.
        total += sum(shapes[t][1] for t in targets) * 2 * a
    return total


def _workspace(spec: ModelSpec, shapes: dict[str, tuple[int, int]], quantized: bool, method: str,
               runtime: Runtime) -> float:
    """Short-lived buffers: a 4-bit matrix dequantised for its matmul, an fp32 lm_head cast to 16 bits
    (under the old fp32 upcast), DoRA's merged weight for its norm."""
    largest = max(i * o for i, o in shapes.values())
    out = 0.0
    if quantized:
        out += largest * BYTES_16BIT
        if runtime.kbit_plain_bytes != BYTES_16BIT:
            out += spec.vocab * spec.hidden * BYTES_16BIT
    if method == "dora":
        out += largest * BYTES_FP32
    return out


def estimate_for(config: RunConfig, spec: ModelSpec | None = None) -> MemoryEstimate | None:
    """The peak of exactly this config, or None for a model outside the catalog. The form's
    memory bar, `ftui estimate`, preflight and the recommender all ask here, so they agree."""
    from engine.hardware.catalog import find

    spec = spec or find(config.model)
    if spec is None:
        return None
    return estimate(spec, config.method, config.batch_size, config.max_seq_len, **estimate_options(config))


def estimate_options(config: RunConfig) -> dict[str, Any]:
    """The settings besides model, method, batch and length that change the peak."""
    return {"grad_checkpointing": config.gradient_checkpointing, "optimizer": config.optimizer,
            "lora_r": config.lora_r, "target_modules": list(config.target_modules),
            "lora_dropout": config.lora_dropout, "world_size": config.world_size,
            # auto is settled against free memory (engine.hardware.recommend.choose_strategy); unsettled, ddp.
            "strategy": "fsdp" if config.strategy == "fsdp" else "ddp", "objective": config.objective}
