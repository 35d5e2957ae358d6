"""Which GPU a training process computes on, named as ftui names GPUs, and its environment.

ftui names GPUs by NVML's index (`ftui hardware`, the recommender, `gpus = "1"`), which follows the
PCI bus. CUDA numbers them fastest first unless CUDA_DEVICE_ORDER=PCI_BUS_ID, and only those that
CUDA_VISIBLE_DEVICES shows, so NVML's GPU 1 can be CUDA's device 0. Both report each GPU's UUID,
which is where they meet: each process of several is started seeing its GPU by UUID, and one
process makes the GPU it chose torch's current device, so that "cuda" means it for every library.
A CUDA_VISIBLE_DEVICES the user set is kept: a GPU it hides is refused with the reason.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

from engine.config.schema import parse_gpus
from engine.hardware.probe import GpuInfo, HardwareReport, probe
from engine.train.preflight import PreflightError

ALLOCATOR_SETTINGS = "expandable_segments:True"
"""torch's caching allocator grows its segments instead of keeping freed blocks of odd sizes: batches of
varied length fragment the memory less, and an out-of-memory that the free memory could have held
becomes rarer."""
ALLOCATOR_VARIABLES = ("PYTORCH_CUDA_ALLOC_CONF", "PYTORCH_ALLOC_CONF")
"""torch reads either name (the second since 2.9); a user who set one keeps their settings."""
ONEDNN_CACHE = ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "64")
"""oneDNN, which computes torch's bf16 matmuls on a CPU, keeps a primitive with its buffers for each
shape it met, up to 1024 by default; packed and sampled batches give most steps new lengths, so a
CPU run grew by the step (SmolLM2-135M on the demo data: 2.03 GiB peak after 20 steps, 1.73 at 64,
no slower; 16 was slower). 64 holds the shapes of a step. oneDNN reads it when it first computes."""


def training_environment(environ: MutableMapping[str, str] = os.environ) -> None:
    """What a training process needs in its environment before CUDA allocates its first tensor
    and oneDNN its first primitive, unless the user set it; the processes it starts inherit it."""
    if not any(name in environ for name in ALLOCATOR_VARIABLES):
        environ["PYTORCH_CUDA_ALLOC_CONF"] = ALLOCATOR_SETTINGS
    environ.setdefault(*ONEDNN_CACHE)


def select_gpu(gpus: str, report: HardwareReport | None = None) -> str:
    """Make the GPU that `gpus` names ("N", or "" for the one with the most free memory among those CUDA
    shows this process) torch's current device; says which, for the run's log."""
    import torch

    _kind, ids = parse_gpus(gpus)
    report = report or probe()
    shown = cuda_uuids()
    by_uuid = {plain_uuid(g.uuid): g for g in report.gpus if g.uuid}
    placed = [(index, by_uuid[uuid]) for index, uuid in enumerate(shown) if uuid in by_uuid]
    if not placed:  # NVML cannot say which is which: CUDA's own numbering
        index = ids[0] if ids else torch.cuda.current_device()
        torch.cuda.set_device(index)
        return f"CUDA device {index} (NVML cannot tell which GPU that is)"
    if ids:
        gpu = _named(ids[0], gpus, report, shown)
        index = shown.index(plain_uuid(gpu.uuid))
    else:
        index, gpu = max(placed, key=lambda p: (p[1].free_gib, -p[1].index))
    torch.cuda.set_device(index)
    cuda = f", CUDA's device {index}" if index != gpu.index else ""
    return f"training on GPU {gpu.index} ({gpu.name}, {gpu.free_gib:.1f} GiB free{cuda})"


def child_environments(ids: tuple[int, ...], gpus: str, report: HardwareReport | None = None,
                       environ: MutableMapping[str, str] = os.environ) -> list[dict[str, str]]:
    """For each of several processes, the variables that make it see only its GPU (NVML's `ids[rank]`)."""
    report = report or probe()
    if not report.gpus:  # no NVML: the index in PCI order, which is NVML's
        return [{"CUDA_VISIBLE_DEVICES": str(i), "CUDA_DEVICE_ORDER": "PCI_BUS_ID"} for i in ids]
    # Only a CUDA_VISIBLE_DEVICES the user set can hide one, and only CUDA itself can say which it shows.
    shown = cuda_uuids() if "CUDA_VISIBLE_DEVICES" in environ else None
    out = []
    for i in ids:
        gpu = _named(i, gpus, report, shown)
        out.append({"CUDA_VISIBLE_DEVICES": gpu.uuid} if gpu.uuid else
                   {"CUDA_VISIBLE_DEVICES": str(i), "CUDA_DEVICE_ORDER": "PCI_BUS_ID"})
    return out


def cuda_uuids() -> list[str]:
    """The UUIDs of the GPUs CUDA shows this process, in CUDA's order (see `plain_uuid`)."""
    import torch

    return [plain_uuid(str(torch.cuda.get_device_properties(i).uuid)) for i in range(torch.cuda.device_count())]


def plain_uuid(uuid: str) -> str:
    """NVML says "GPU-1a2b...", torch "1a2b...": the same id."""
    return uuid.lower().removeprefix("gpu-")


def _named(index: int, gpus: str, report: HardwareReport, shown: list[str] | None) -> GpuInfo:
    """NVML's GPU `index`, refused when there is none or CUDA does not show it to this process."""
    gpu = next((g for g in report.gpus if g.index == index), None)
    if gpu is None:
        raise PreflightError(
            f"gpus = {gpus!r} names GPU {index}, and this machine has {len(report.gpus)} "
            f"(GPU {', '.join(str(g.index) for g in report.gpus)} in `ftui hardware`)",
            "set gpus to some of those, or leave it empty for the one with the most free memory")
    if shown is not None and gpu.uuid and plain_uuid(gpu.uuid) not in shown:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
        seen = [g.index for g in report.gpus if g.uuid and plain_uuid(g.uuid) in shown]
        raise PreflightError(
            f"gpus = {gpus!r} names GPU {index} ({gpu.name}), which CUDA_VISIBLE_DEVICES={visible!r} hides "
            "from ftui's processes",
            (f"set gpus to {', '.join(str(i) for i in seen)} (the GPUs it shows, as `ftui hardware` numbers them)"
             if seen else "set CUDA_VISIBLE_DEVICES to show the GPU") + ", or unset CUDA_VISIBLE_DEVICES")
    return gpu
