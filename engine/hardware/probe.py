"""What this machine can train on: every NVIDIA GPU through NVML, or the CPU when there is none.

A workstation without an NVIDIA driver is a normal outcome, not an error: the report then
describes the CPU and says that only the embedded model is practical. NVML is asked one field
at a time, so a query that fails on one GPU (an MIG slice that hides its processes, a driver
that lacks a call) loses that field alone, never the whole report. `pynvml` is imported inside
`probe`, and tests pass a fake with the same function names through `nvml`.

A GPU with no memory of its own (DGX Spark's GB10 shares 128 GB with its Arm CPU) has NVML answer
NOT_SUPPORTED for its memory: the report marks it `unified_memory` and gives it the system's
memory as /proc/meminfo counts it, MemAvailable being what training can take (nvtop, all-smi and
ollama read the same figure there).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GIB = 1024**3
BF16_MIN_COMPUTE_CAPABILITY = (8, 0)
"""bf16 tensor-core arithmetic arrived with Ampere (compute capability 8.0)."""
UNKNOWN_COMPUTE_CAPABILITY = (0, 0)
"""Stands in when NVML cannot say: such a GPU is treated as lacking bf16."""
CPU_ONLY_ADVICE = "only the embedded model (SmolLM2 135M) is practical to train on the CPU"
UNIFIED_MEMORY_GPUS = ("GB10",)
"""Names (as parts of NVML's device name) of NVIDIA GPUs that share the system's memory: the GB10
of DGX Spark and its OEM twins (ASUS Ascent GX10, Dell Pro Max GB10). Another such GPU is known by
NVML answering NOT_SUPPORTED for its memory while it addresses the CPU's memory coherently (ATS)."""
MEMINFO = Path("/proc/meminfo")
"""Where Linux says how much memory the system has and how much a new program can take."""
NO_NVML_MODULE = "nvidia-ml-py is not installed, so GPUs cannot be seen"
NO_DRIVER = "no NVIDIA driver found (the NVML library is missing)"
NO_GPU_REPORTED = "the NVIDIA driver is loaded but reports no GPU"
"""Causes of CPU mode that `no_gpu_cause` holds word for word (engine/hardware/doctor.py tells them apart)."""


@dataclass(frozen=True)
class GpuProcess:
    pid: int
    name: str | None
    """Executable path as NVML reports it; None where NVML may not tell (other users, containers)."""
    used_gib: float | None
    """None where the driver does not account per-process memory (Windows WDDM, MIG)."""


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    total_gib: float
    free_gib: float
    used_gib: float
    compute_capability: tuple[int, int]
    """(major, minor); (0, 0) when NVML could not say."""
    bf16: bool
    processes: tuple[GpuProcess, ...] = ()
    problems: tuple[str, ...] = ()
    """Fields NVML failed to report for this GPU, with its reason, e.g. "processes: Not Supported"."""
    unified_memory: bool = False
    """The GPU has no memory of its own and shares the system's (DGX Spark's GB10): total is the
    system's memory, free what a new program can take (MemAvailable), shrinking as CPU programs grow."""
    uuid: str = ""
    """"GPU-..." as NVML reports it; "" when it could not say. CUDA numbers GPUs in another order than
    NVML (fastest first, and only those CUDA_VISIBLE_DEVICES shows): the UUID is what both agree on."""


@dataclass(frozen=True)
class HardwareReport:
    gpus: tuple[GpuInfo, ...]
    cpu_cores: int
    ram_gib: float
    driver: str | None
    """NVIDIA driver version, or None without a driver."""
    note: str
    """One sentence on what was found and what it means for training."""
    no_gpu_cause: str = ""
    """In CPU mode, why no GPU can be used (no driver, NVML failed, ...); empty with GPUs."""
    cuda_driver: tuple[int, int] | None = None
    """The newest CUDA version the driver supports, (major, minor), as nvidia-smi's "CUDA Version"
    (NVML's nvmlSystemGetCudaDriverVersion); None without a driver or where NVML cannot say."""

    @property
    def best_gpu(self) -> GpuInfo | None:
        """The GPU with the most free memory: single-device training plans for it."""
        return max(self.gpus, key=lambda g: (g.free_gib, -g.index), default=None)

    @property
    def unified_memory(self) -> bool:
        """The GPU training plans for shares the system's memory with the CPU."""
        best = self.best_gpu
        return best is not None and best.unified_memory


def probe(nvml: Any = None) -> HardwareReport:
    """Every GPU NVML can see, plus CPU cores and RAM. Never raises for a missing driver or GPU."""
    cores = os.cpu_count() or 1
    ram = ram_gib()
    if nvml is None:
        try:
            import pynvml
        except ImportError:
            return _cpu_report(cores, ram, NO_NVML_MODULE)
        nvml = pynvml
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as exc:
        return _cpu_report(cores, ram, _init_failure(nvml, exc))
    except OSError as exc:  # a broken libnvidia-ml can fail to load below pynvml's own checks
        return _cpu_report(cores, ram, f"the NVIDIA management library failed to load ({exc})")
    try:
        driver = _text(_ask(nvml, nvml.nvmlSystemGetDriverVersion)[0])
        cuda_driver = _cuda_version(nvml)
        count = nvml.nvmlDeviceGetCount()
        gpus = tuple(_gpu(nvml, i) for i in range(count))
    except nvml.NVMLError as exc:
        return _cpu_report(cores, ram, f"NVML failed while listing GPUs ({exc})")
    finally:
        try:
            nvml.nvmlShutdown()
        except nvml.NVMLError:
            pass
    if not gpus:
        return _cpu_report(cores, ram, NO_GPU_REPORTED, driver, cuda_driver)
    best = max(gpus, key=lambda g: g.free_gib)
    several = f"{len(gpus)} GPUs; training uses one, " if len(gpus) > 1 else ""
    if best.unified_memory:
        note = (f"{several}{best.name} (GPU {best.index}) has unified memory, shared with the CPU: "
                f"{best.free_gib:.1f} GiB of {best.total_gib:.1f} GiB is available now, and programs on "
                "the CPU draw on it too")
    else:
        note = f"{several}{best.name} (GPU {best.index}) has the most free memory: {best.free_gib:.1f} GiB"
    return HardwareReport(gpus, cores, ram, driver, note, cuda_driver=cuda_driver)


def _cuda_version(nvml: Any) -> tuple[int, int] | None:
    """NVML's CUDA driver version (12040 for 12.4) as (12, 4); None where the call is missing or fails."""
    ask = getattr(nvml, "nvmlSystemGetCudaDriverVersion", None)
    value = _ask(nvml, ask)[0] if ask is not None else None
    if not isinstance(value, int) or value <= 0:
        return None
    return value // 1000, value % 1000 // 10


def cuda_computes_bf16() -> bool:
    """Whether the current CUDA device computes bf16 natively: compute capability 8.0+, the rule
    `GpuInfo.bf16`, the estimate and training share. torch's `is_bf16_supported()` also says yes
    where bf16 is only emulated (T4, V100: slower than fp16), so it is asked without emulation."""
    import torch

    return bool(torch.cuda.is_bf16_supported(including_emulation=False))


def _gpu(nvml: Any, index: int) -> GpuInfo:
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    problems: list[str] = []

    def field(label: str, fn: Any, *args: Any) -> Any:
        value, error = _ask(nvml, fn, *args)
        if error:
            problems.append(f"{label}: {error}")
        return value

    name = _text(field("name", nvml.nvmlDeviceGetName, handle)) or f"GPU {index}"
    memory, memory_error = _ask_error(nvml, nvml.nvmlDeviceGetMemoryInfo, handle)
    unified = _unified(nvml, handle, name, memory_error)
    system = system_memory_gib() if unified else None
    if system is not None:
        total, free = system
        used = total - free
    elif memory is not None:
        total, free, used = memory.total / GIB, memory.free / GIB, memory.used / GIB
    else:
        total, free, used = 0.0, 0.0, 0.0
    if memory_error is not None and system is None:
        problems.append(f"memory: {_describe(memory_error)}" + (f" (and {MEMINFO} could not be read)" if unified else ""))
    uuid = getattr(nvml, "nvmlDeviceGetUUID", None)
    uuid = _text(field("uuid", uuid, handle)) if uuid is not None else None
    cc = field("compute capability", nvml.nvmlDeviceGetCudaComputeCapability, handle)
    cc = tuple(int(x) for x in cc) if cc is not None else UNKNOWN_COMPUTE_CAPABILITY
    return GpuInfo(
        index=index, name=name, total_gib=total, free_gib=free, used_gib=used,
        compute_capability=cc, bf16=cc >= BF16_MIN_COMPUTE_CAPABILITY,
        processes=_processes(nvml, handle, field), problems=tuple(problems), unified_memory=unified,
        uuid=uuid or "",
    )


def _unified(nvml: Any, handle: Any, name: str, memory_error: Exception | None) -> bool:
    """A GPU that shares the system's memory: one of UNIFIED_MEMORY_GPUS, or one whose memory NVML
    cannot report while it addresses the CPU's memory through ATS. A discrete card answers for its
    memory (and on an older driver without the call, NOT_SUPPORTED alone is no proof), so it keeps
    its zero and the problem rather than being planned on the system's RAM."""
    if any(part in name for part in UNIFIED_MEMORY_GPUS):
        return True
    not_supported = getattr(nvml, "NVML_ERROR_NOT_SUPPORTED", 3)
    if getattr(memory_error, "value", None) != not_supported:
        return False
    ask = getattr(nvml, "nvmlDeviceGetAddressingMode", None)
    mode = _ask(nvml, ask, handle)[0] if ask is not None else None
    return mode is not None and mode == getattr(nvml, "NVML_DEVICE_ADDRESSING_MODE_ATS", 2)


def _processes(nvml: Any, handle: Any, field: Any) -> tuple[GpuProcess, ...]:
    """Compute and graphics processes, once each: a desktop's compositor holds VRAM too."""
    seen: dict[int, GpuProcess] = {}
    for label, fn in (("compute processes", nvml.nvmlDeviceGetComputeRunningProcesses),
                      ("graphics processes", nvml.nvmlDeviceGetGraphicsRunningProcesses)):
        for proc in field(label, fn, handle) or ():
            if proc.pid in seen:
                continue
            used = getattr(proc, "usedGpuMemory", None)
            # NVML reports "not available" as the all-ones 64-bit value.
            used_gib = used / GIB if used is not None and used < 2**63 else None
            name = _text(_ask(nvml, nvml.nvmlSystemGetProcessName, proc.pid)[0])
            seen[proc.pid] = GpuProcess(proc.pid, name, used_gib)
    return tuple(seen.values())


def _ask(nvml: Any, fn: Any, *args: Any) -> tuple[Any, str | None]:
    value, error = _ask_error(nvml, fn, *args)
    return value, None if error is None else _describe(error)


def _ask_error(nvml: Any, fn: Any, *args: Any) -> tuple[Any, Exception | None]:
    try:
        return fn(*args), None
    except nvml.NVMLError as exc:
        return None, exc


def _describe(error: Exception) -> str:
    return str(error) or type(error).__name__


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _init_failure(nvml: Any, exc: Exception) -> str:
    if isinstance(exc, getattr(nvml, "NVMLError_LibraryNotFound", ())):
        return NO_DRIVER
    if isinstance(exc, getattr(nvml, "NVMLError_DriverNotLoaded", ())):
        return "the NVIDIA driver is installed but not loaded (reboot, or check `nvidia-smi`)"
    if isinstance(exc, getattr(nvml, "NVMLError_NoPermission", ())):
        return "no permission to query the NVIDIA driver"
    return f"NVML could not start ({exc})"


def _cpu_report(cores: int, ram: float, why: str, driver: str | None = None,
                cuda_driver: tuple[int, int] | None = None) -> HardwareReport:
    note = f"No usable GPU: {why}. CPU mode with {cores} cores and {ram:.1f} GiB RAM; {CPU_ONLY_ADVICE}."
    return HardwareReport((), cores, ram, driver, note, why, cuda_driver)


def system_memory_gib() -> tuple[float, float] | None:
    """(MemTotal, MemAvailable) in GiB from /proc/meminfo; None where it cannot be read (not Linux).

    MemAvailable counts the page cache the kernel gives back on demand, which MemFree (and CUDA's
    own free figure on unified memory) leave out."""
    try:
        text = MEMINFO.read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    kib = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        number = rest.split()[:1]
        if number and number[0].isdigit():
            kib[key.strip()] = int(number[0])
    if "MemTotal" not in kib:
        return None
    available = kib.get("MemAvailable", kib.get("MemFree", 0))
    return kib["MemTotal"] * 1024 / GIB, available * 1024 / GIB


def ram_gib() -> float:
    """Physical memory of this machine; what CPU training can use at most."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB
    except (AttributeError, ValueError, OSError):  # not POSIX: the report just shows 0
        return 0.0
