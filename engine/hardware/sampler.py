"""The run's GPU as NVML sees it, sampled at every logged step and kept in metrics.jsonl.

torch's peak (StepLogged.peak_mem_gib) counts this process's tensors only; the card also holds
the CUDA context, the allocator's cache and other processes, and that is what runs out. NVML
says what the whole card holds, and how busy it is: the share of its last sample period (1/6 s
to 1 s, by card) in which a kernel ran, which for a run that is meant to keep the GPU busy shows
a data loader or a CPU-side step that starves it.

The GPU is found by UUID, where CUDA's and NVML's numbering meet (engine.train.devices). A
figure NVML cannot give (an unsupported call, a driver that went away) is None, never an error:
sampling must not end a run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

GIB = 1024**3


@dataclass(frozen=True)
class GpuSample:
    used_gib: float | None
    """Memory in use on the whole card."""
    util_percent: int | None
    """Share of the last sample period a kernel ran on it, 0..100."""


class GpuSampler:
    """One GPU's memory and utilisation, asked of an NVML kept open between samples."""

    def __init__(self, nvml: Any, handle: Any):
        self._nvml, self._handle = nvml, handle
        self._gave_up: set[str] = set()

    @classmethod
    def open(cls, uuid: str, nvml: Any = None) -> GpuSampler | None:
        """A sampler of the GPU with this NVML UUID ("GPU-..."), or None where NVML cannot reach it."""
        if nvml is None:
            try:
                import pynvml
            except ImportError:
                return None
            nvml = pynvml
        try:
            nvml.nvmlInit()
        except (nvml.NVMLError, OSError):
            return None
        try:
            return cls(nvml, nvml.nvmlDeviceGetHandleByUUID(uuid))
        except nvml.NVMLError:
            nvml.nvmlShutdown()
            return None

    def sample(self) -> GpuSample:
        memory = self._ask("memory", self._nvml.nvmlDeviceGetMemoryInfo)
        rates = self._ask("utilisation", self._nvml.nvmlDeviceGetUtilizationRates)
        return GpuSample(round(memory.used / GIB, 3) if memory is not None else None,
                         int(rates.gpu) if rates is not None else None)

    def close(self) -> None:
        try:
            self._nvml.nvmlShutdown()
        except self._nvml.NVMLError:
            pass

    def _ask(self, what: str, fn: Any) -> Any:
        """A call that failed is not made again: NVML answers an unsupported one the same way each time."""
        if what in self._gave_up:
            return None
        try:
            return fn(self._handle)
        except self._nvml.NVMLError:
            self._gave_up.add(what)
            return None
