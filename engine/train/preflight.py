"""Checks that turn hour-later failures into a clear message before the expensive work starts.

Disk: a run needs room for its checkpoints (trainable weights + AdamW's two moments) and its
final weights. GPU memory: the estimator (engine.hardware.estimate) predicts the peak of a setting and,
after a real out-of-memory error, the next smaller setting predicted to fit.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from engine.config.schema import RunConfig
from engine.errors import ActionableError
from engine.hardware.architectures import translate_targets
from engine.hardware.catalog import ModelSpec
from engine.hardware.estimate import MemoryEstimate, estimate_for, estimate_options, linear_shapes

MARGIN_BYTES = 64 * 2**20


class PreflightError(ActionableError):
    """A run refused before any expensive work: config, disk, model or memory."""


def bytes_needed(trainable: int, total: int, method: str, checkpoints: int = 1) -> int:
    checkpoint = trainable * (4 + 8)
    final = total * 4 if method == "full" else trainable * 4
    return checkpoints * checkpoint + final + MARGIN_BYTES


def checkpoints_on_disk(keep: int, total_steps: int, save_interval: int) -> int:
    """The most checkpoints a run holds at once: the newest `keep`, the best one, and the next one,
    written before the oldest is pruned; never more than the run writes (`keep` 0 keeps all)."""
    written = total_steps // max(save_interval, 1) + 1  # the interval ones and the final one
    return written if keep == 0 else min(keep + 2, written)


def check_output_dir(folder: Path) -> None:
    """Refuse an output_dir no run can be written in: a file, a path under a file, a folder
    without write permission, or one on a read-only filesystem. Nothing is created here."""
    folder = Path(folder)
    advice = "set output_dir to a folder you can write in (the default is runs/ beside where you start ftui)"
    if folder.exists() and not folder.is_dir():
        raise PreflightError(f"output_dir {folder} is a file, not a folder", advice)
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise PreflightError(f"output_dir {folder} is under {probe}, which is a file", advice)
    if os.statvfs(probe).f_flag & os.ST_RDONLY:
        raise PreflightError(f"output_dir {folder}: {probe} is on a read-only filesystem", advice)
    if not os.access(probe, os.W_OK | os.X_OK):
        raise PreflightError(f"output_dir {folder}: cannot write in {probe} (permission denied)", advice)


def check_free_space(folder: Path, trainable: int, method: str, total: int, checkpoints: int = 1) -> None:
    """Refuse a run the disk cannot hold (`checkpoints` of them at once, and the final weights); a
    folder that cannot be written at all is refused first."""
    folder = Path(folder)
    check_output_dir(folder)
    probe = folder
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    need = bytes_needed(trainable, total, method, checkpoints)
    if free < need:
        held = "a checkpoint" if checkpoints == 1 else f"{checkpoints} checkpoints at once"
        raise PreflightError(
            f"not enough disk space in {folder}: {free / 2**30:.2f} GiB free, {held} and the final "
            f"weights need about {need / 2**30:.2f} GiB",
            "free disk space there or set output_dir to a larger disk"
            + (", or lower keep_checkpoints" if checkpoints > 1 else "")
            + ("; LoRA (method = lora) needs far less than full fine-tuning" if method == "full" else ""),
        )


def planned_trainable(spec: ModelSpec, config: RunConfig) -> int:
    """Trainable parameters of a setting, from the catalog's architecture numbers alone."""
    if config.method == "full":
        return spec.params
    targets = translate_targets(config.target_modules, spec.architecture)
    per_layer = sum(config.lora_r * (a + b) + (b if config.method == "dora" else 0)
                    for name, (a, b) in linear_shapes(spec).items() if name in targets)
    return per_layer * spec.layers


def free_gpu_gib() -> float | None:
    """Free memory of this process's GPU; on unified memory (DGX Spark) what the system has available,
    the figure the recommendation planned on."""
    import torch

    if not torch.cuda.is_available():
        return None
    free, _total = torch.cuda.mem_get_info()
    if getattr(torch.cuda.get_device_properties(torch.cuda.current_device()), "is_integrated", 0):
        # CUDA's free figure there leaves out the page cache the kernel hands back on demand, so a
        # run the recommendation fits could be refused after a large download filled the cache.
        from engine.hardware.probe import system_memory_gib

        system = system_memory_gib()
        if system is not None:
            return max(free / 2**30, system[1])
    return free / 2**30


def check_fits(config: RunConfig, spec: ModelSpec | None, free_gib: float | None) -> MemoryEstimate | None:
    """Refuse a setting the estimator says cannot fit in the free GPU memory; the estimate it
    judged by (None without a catalog model or a GPU)."""
    if spec is None:
        return None
    planned = estimate_for(config, spec)
    if free_gib is None or planned is None:
        return planned
    from engine.hardware.recommend import budget_gib

    if planned.peak_gib <= budget_gib(free_gib):
        return planned
    raise PreflightError(
        f"{spec.id} with {config.method}, batch_size {config.batch_size} and max_seq_len {config.max_seq_len} "
        f"needs about {planned.peak_gib:.1f} GiB of GPU memory, but {free_gib:.1f} GiB is free",
        suggest_smaller(config, spec, config.batch_size, config.max_seq_len, free_gib),
    )


def suggest_smaller(config: RunConfig, spec: ModelSpec | None, batch_size: int, seq_len: int,
                    free_gib: float | None) -> str:
    """The smallest change the estimator predicts to fit, as settings to type; a rule of thumb without it."""
    if spec is not None and free_gib is not None:
        from engine.hardware.recommend import suggest_smaller as plan_smaller

        plan = plan_smaller(spec, config.method, batch_size, seq_len, free_gib, grad_accum=config.grad_accum,
                            **estimate_options(config))
        if plan is None:
            return (f"even batch_size 1 with gradient checkpointing is predicted not to fit in {free_gib:.1f} GiB: "
                    "use method = qlora or a smaller model")
        settings = f"batch_size = {plan.batch_size}, grad_accum = {plan.grad_accum}"
        if plan.seq_len != config.max_seq_len:
            settings += f", max_seq_len = {plan.seq_len}"
        if plan.grad_checkpointing and not config.gradient_checkpointing:
            settings += ", gradient_checkpointing = true"
        return f"{plan.describe(batch_size, seq_len)}: set {settings}"
    half = max(1, batch_size // 2)
    return (f"try batch_size = {half}, grad_accum = {config.grad_accum * batch_size // half} "
            "(the same effective batch), gradient_checkpointing = true, or a shorter max_seq_len")
