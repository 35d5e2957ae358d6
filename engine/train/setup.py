"""Everything a run builds before its first step, as torchtune's recipes do in `setup()`.

The seed is set first and the parts are built in a fixed order (model, method, optimizer,
schedule, scheduler, loss scaler), so the same config gives the same adapter initialisation
and a resumed run can load its checkpoint into parts of the same shapes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.config.schema import RunConfig
from engine.data.types import TokenizedExample
from engine.events import Progress
from engine.models.hf_import import hf_imported
from engine.train.batching import Schedule
from engine.train.diagnose import Diagnoser
from engine.train.dropout import use_packed_bits_dropout
from engine.train.kernels import DecoderKernels, apply_decoder_kernels, describe_kernels
from engine.train.loss import fused_kernel_name
from engine.train.methods import (
    Precision,
    apply_method,
    build_optimizer,
    build_scheduler,
    count_params,
    store_frozen_weights_for_autocast,
    trainable_named,
    warmup_steps,
)
from engine.train.objectives import SFT, Objective, choose_objective
from engine.train.parallel import SINGLE, Ranks, wrap
from engine.train.preference import precompute_references
from engine.train.preflight import PreflightError, check_free_space, checkpoints_on_disk
from engine.train.shared_input_lora import fuse_shared_input_adapters
from engine.train.varlen_attention import use_varlen_attention

PLAIN_HEAD_MODELS = {"llama", "mistral", "qwen2", "qwen3", "phi3", "smollm3", "olmo2"}
"""model_type values whose logits are exactly lm_head(last hidden state): no scaling or softcap; their
attention masks come from transformers.masking_utils, which keeps packed examples apart."""


@dataclass(frozen=True)
class TrainingSetup:
    """The model and what updates it, built once per attempt (an OOM retry builds them again)."""

    model: Any
    """The base model with the method (LoRA, QLoRA or full) applied, on the device."""
    optimizer: Any
    scheduler: Any
    scaler: Any
    """A `GradScaler` when the precision needs loss scaling (fp16), else None."""
    schedule: Schedule
    """Which examples each micro-batch of each optimizer step holds."""
    diagnoser: Diagnoser
    precision: Precision
    params: list[Any]
    """The trainable parameters, whose gradient norm is clipped."""
    trainable: int
    total: int
    pad_id: int
    fast: bool
    """Logits only at labelled positions (see `engine.train.loss.token_loss_sum`)."""
    loss: Callable[[dict[str, Any]], Any]
    """Summed token loss of a batch, through DDP or FSDP when there are several processes."""
    accumulate: Callable[[], Any]
    """A context for micro-batches whose gradients are not yet synchronised (DDP's no_sync)."""
    ranks: Ranks = SINGLE
    objective: Objective = SFT
    """The run's loss: how its batches are built, summed and divided (engine.train.objectives)."""
    release: Callable[[], None] = lambda: None
    """Undoes what the setup changed in the process beyond this run's objects (Liger's module globals):
    called when the attempt ends, however it ends."""


def set_up(config: RunConfig, build_model: Callable[[RunConfig, Precision], Any], train_set: tuple[TokenizedExample, ...],
           tokenizer: Any, run_path: Path, precision: Precision, emit: Callable[[Any], None],
           ranks: Ranks = SINGLE, val_set: tuple[TokenizedExample, ...] = ()) -> TrainingSetup:
    """Seed, model, method, optimizer and schedule; fails before any step if the disk cannot hold the run.

    `build_model` is `Loaded.build_model`: a fresh base model on the device, before the method.
    `val_set` is only read where an objective keeps figures per example (DPO's precomputed reference).
    """
    hf_imported()
    from transformers import set_seed

    set_seed(config.seed)
    base = build_model(config, precision)
    decoder_kernels = apply_decoder_kernels(base, precision.device)
    try:
        parts = _set_up_model(config, base, decoder_kernels, train_set, tokenizer, run_path, precision, emit, ranks,
                              val_set)
    except BaseException:
        decoder_kernels.restore()
        raise
    return dataclasses.replace(parts, release=decoder_kernels.restore)


def _set_up_model(config: RunConfig, base: Any, decoder_kernels: DecoderKernels, train_set: tuple[TokenizedExample, ...],
                  tokenizer: Any, run_path: Path, precision: Precision, emit: Callable[[Any], None],
                  ranks: Ranks, val_set: tuple[TokenizedExample, ...]) -> TrainingSetup:
    import torch

    objective = choose_objective(config)
    if objective is None:
        raise PreflightError(f"objective = {config.objective} has no trainer in this ftui",
                             "train with objective = sft, dpo, orpo or grpo")
    model = apply_method(base, config)
    adapter_groups = fuse_shared_input_adapters(model) if config.method != "full" else 0
    use_packed_bits_dropout(model, precision.device)
    store_frozen_weights_for_autocast(model, precision)
    trainable, total = count_params(model)
    fast = has_plain_head(model)
    if objective.reference and config.method == "full":
        # Before any sharding and before a checkpoint's weights go in: this is the base model.
        emit(Progress("reference", 0, None, message="DPO reference: the base model's log-probabilities of each pair"))
        objective = objective.with_references(precompute_references(
            model, train_set + val_set, config.batch_size, pad_id(tokenizer), precision.device,
            lambda: autocast_for(precision), fast))
    loss, accumulate = wrap(model, fast, ranks, adapters=config.method != "full", loss_of=objective.loss)
    optimizer, note = build_optimizer(model, config, precision.device, sharded=ranks.strategy == "fsdp")
    if note:
        emit(Progress("optimizer", 1, 1, message=note))
    emit(Progress("kernels", 1, 1, message=describe_kernels(precision.device, decoder_kernels,
                                                            fused_kernel_name(precision.device), adapter_groups)))
    packed = config.packing and fast
    if packed:
        use_varlen_attention(model)
    elif config.packing:
        emit(Progress("packing", 1, 1, message=(
            f"packing is off for model type {getattr(model.config, 'model_type', '?')!r}: batches are padded, "
            "since only the Llama-style types ftui knows are checked to keep packed examples apart")))
    schedule = Schedule(tuple(objective.length(e) for e in train_set), config.batch_size, config.grad_accum,
                        config.seed, config.epochs, config.max_steps, ranks.world, packed)
    check_free_space(run_path, trainable, config.method, total,
                     checkpoints_on_disk(config.keep_checkpoints, schedule.total_steps, config.save_interval))
    total_steps = schedule.total_steps
    scheduler = build_scheduler(optimizer, config, total_steps)
    scaler = torch.amp.GradScaler("cuda") if precision.loss_scaling else None
    diagnoser = Diagnoser(warmup_steps(config, total_steps), config.learning_rate, config.method)
    return TrainingSetup(
        model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler, schedule=schedule,
        diagnoser=diagnoser, precision=precision, params=list(trainable_named(model).values()),
        trainable=trainable, total=total, pad_id=pad_id(tokenizer), fast=fast, loss=loss, accumulate=accumulate,
        ranks=ranks, objective=objective,
    )


def autocast_for(precision: Precision) -> Any:
    """The autocast context of `precision`, or a context that does nothing."""
    import contextlib

    import torch

    if precision.autocast_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(precision.device, dtype=precision.autocast_dtype)


def has_plain_head(model: Any) -> bool:
    """A model type whose decoder and bias-free lm_head the chunked loss may call apart."""
    return getattr(model.config, "model_type", "") in PLAIN_HEAD_MODELS


def pad_id(tokenizer: Any) -> int:
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if candidate is not None:
            return int(candidate)
    return 0
