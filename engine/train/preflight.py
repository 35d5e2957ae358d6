"""Checks that turn hour-later failures into a clear message before the expensive work starts.

Disk: a run needs room for its checkpoints (trainable weights + AdamW's two moments) and its
final weights. GPU memory: the estimator (engine.estimate) predicts the peak of a setting and,
after a real out-of-memory error, the next smaller setting predicted to fit.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from engine.catalog import ModelSpec
from engine.config import RunConfig

MARGIN_BYTES = 64 * 2**20
GPU_HEADROOM = 0.95
"""Share of free GPU memory a setting may plan to use: allocator fragmentation takes the rest."""


class PreflightError(Exception):
    def __init__(self, reason: str, advice: str):
        super().__init__(reason)
        self.reason, self.advice = reason, advice


def bytes_needed(trainable: int, total: int, method: str) -> int:
    checkpoint = trainable * (4 + 8)
    final = total * 4 if method == "full" else trainable * 4
    return checkpoint + final + MARGIN_BYTES


def check_free_space(folder: Path, trainable: int, method: str, total: int) -> None:
    folder = Path(folder)
    probe = folder
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    need = bytes_needed(trainable, total, method)
    if free < need:
        raise PreflightError(
            f"not enough disk space in {folder}: {free / 2**30:.2f} GiB free, a checkpoint and the final "
            f"weights need about {need / 2**30:.2f} GiB",
            "free disk space there or set output_dir to a larger disk"
            + ("; LoRA (method = lora) needs far less than full fine-tuning" if method == "full" else ""),
        )


def planned_trainable(spec: ModelSpec, config: RunConfig) -> int:
    """Trainable parameters of a setting, from the catalog's architecture numbers alone."""
    if config.method == "full":
        return spec.params
    head = spec.hidden // spec.heads
    shapes = {
        "q_proj": (spec.hidden, spec.heads * head), "k_proj": (spec.hidden, spec.kv_heads * head),
        "v_proj": (spec.hidden, spec.kv_heads * head), "o_proj": (spec.heads * head, spec.hidden),
        "gate_proj": (spec.hidden, spec.intermediate), "up_proj": (spec.hidden, spec.intermediate),
        "down_proj": (spec.intermediate, spec.hidden),
    }
    per_layer = sum(config.lora_r * (a + b) + (b if config.method == "dora" else 0)
                    for name, (a, b) in shapes.items() if name in config.target_modules)
    return per_layer * spec.layers


def free_gpu_gib() -> float | None:
    import torch

    if not torch.cuda.is_available():
        return None
    free, _total = torch.cuda.mem_get_info()
    return free / 2**30


def predicted_peak(spec: ModelSpec, config: RunConfig, batch_size: int, seq_len: int,
                   grad_checkpointing: bool) -> float | None:
    """The estimator's peak in GiB, or None when it is not available for this setting."""
    try:
        from engine.estimate import estimate
    except ImportError:
        return None
    try:
        result = estimate(spec, config.method, batch_size, seq_len, grad_checkpointing=grad_checkpointing,
                          optimizer=config.optimizer, lora_r=config.lora_r,
                          target_modules=list(config.target_modules))
    except (ValueError, KeyError, TypeError):
        return None
    return float(result.peak_gib)


def check_fits(config: RunConfig, spec: ModelSpec | None, free_gib: float | None) -> None:
    """Refuse a setting the estimator says cannot fit in the free GPU memory."""
    if spec is None or free_gib is None:
        return
    peak = predicted_peak(spec, config, config.batch_size, config.max_seq_len, config.gradient_checkpointing)
    if peak is None or peak <= free_gib * GPU_HEADROOM:
        return
    raise PreflightError(
        f"{spec.id} with {config.method}, batch_size {config.batch_size} and max_seq_len {config.max_seq_len} "
        f"needs about {peak:.1f} GiB of GPU memory, but {free_gib:.1f} GiB is free",
        suggest_smaller(config, spec, config.max_seq_len, free_gib),
    )


def suggest_smaller(config: RunConfig, spec: ModelSpec | None, seq_len: int, free_gib: Any = "probe") -> str:
    """The first smaller setting predicted to fit, keeping the effective batch where possible."""
    if free_gib == "probe":
        free_gib = free_gpu_gib()
    batch, accum = config.batch_size, config.grad_accum
    candidates = []
    b, a = batch, accum
    while b > 1:
        b, a = b // 2, a * 2
        candidates.append((b, a, seq_len, config.gradient_checkpointing))
    if not config.gradient_checkpointing:
        candidates += [(c[0], c[1], c[2], True) for c in [(batch, accum, seq_len)] + candidates]
    length = seq_len
    while length > 256:
        length //= 2
        candidates.append((1, batch * accum, length, True))
    if spec is not None and free_gib is not None:
        for b, a, length, gc in candidates:
            peak = predicted_peak(spec, config, b, length, gc)
            if peak is not None and peak <= free_gib * GPU_HEADROOM:
                return (f"try batch_size = {b}, grad_accum = {a}"
                        + (f", max_seq_len = {length}" if length != config.max_seq_len else "")
                        + (", gradient_checkpointing = true" if gc and not config.gradient_checkpointing else "")
                        + f" (predicted peak {peak:.1f} GiB of {free_gib:.1f} GiB free)")
    half = max(1, batch // 2)
    return (f"try batch_size = {half}, grad_accum = {accum * batch // half} (same effective batch), "
            "gradient_checkpointing = true, or a shorter max_seq_len")
