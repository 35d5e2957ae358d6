"""A fake NVML at the boundary: the same function names as pynvml, raising pynvml's own errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import pynvml
import pytest

GIB = 1024**3


@dataclass
class FakeCard:
    name: str
    total_gib: float
    used_gib: float = 0.4
    cc: tuple[int, int] = (8, 9)
    processes: list[tuple[int, str | None, float | None]] = field(default_factory=list)
    fail: dict[str, int] = field(default_factory=dict)
    """NVML function name -> error code that call raises for this card."""
    uuid: str = ""
    """NVML's "GPU-..." id; "" makes one from the card's place."""


class FakeNvml:
    NVMLError = pynvml.NVMLError
    NVMLError_LibraryNotFound = pynvml.NVMLError_LibraryNotFound
    NVMLError_DriverNotLoaded = pynvml.NVMLError_DriverNotLoaded
    NVMLError_NoPermission = pynvml.NVMLError_NoPermission

    def __init__(self, cards=(), init_error: int | None = None, driver: str = "550.54.14"):
        self.cards = list(cards)
        self.init_error = init_error
        self.driver = driver
        self.initialised = False
        self.shutdowns = 0

    def _card(self, handle, fn: str) -> FakeCard:
        assert self.initialised, f"{fn} called before nvmlInit"
        card = self.cards[handle]
        if fn in card.fail:
            raise pynvml.NVMLError(card.fail[fn])
        return card

    def nvmlInit(self):
        if self.init_error is not None:
            raise pynvml.NVMLError(self.init_error)
        self.initialised = True

    def nvmlShutdown(self):
        self.shutdowns += 1
        self.initialised = False

    def nvmlSystemGetDriverVersion(self):
        return self.driver

    def nvmlDeviceGetCount(self):
        return len(self.cards)

    def nvmlDeviceGetHandleByIndex(self, index):
        return index

    def nvmlDeviceGetName(self, handle):
        return self._card(handle, "nvmlDeviceGetName").name

    def nvmlDeviceGetMemoryInfo(self, handle):
        card = self._card(handle, "nvmlDeviceGetMemoryInfo")
        total, used = int(card.total_gib * GIB), int(card.used_gib * GIB)
        return SimpleNamespace(total=total, used=used, free=total - used)

    def nvmlDeviceGetUUID(self, handle):
        return self._card(handle, "nvmlDeviceGetUUID").uuid or f"GPU-{handle:08x}-0000-0000-0000-000000000000"

    def nvmlDeviceGetCudaComputeCapability(self, handle):
        return self._card(handle, "nvmlDeviceGetCudaComputeCapability").cc

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        card = self._card(handle, "nvmlDeviceGetComputeRunningProcesses")
        return [SimpleNamespace(pid=pid, usedGpuMemory=None if used is None else int(used * GIB))
                for pid, _, used in card.processes]

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle):
        self._card(handle, "nvmlDeviceGetGraphicsRunningProcesses")
        return []

    def nvmlSystemGetProcessName(self, pid):
        for card in self.cards:
            for p, name, _ in card.processes:
                if p == pid:
                    if name is None:
                        raise pynvml.NVMLError(pynvml.NVML_ERROR_NO_PERMISSION)
                    return name
        raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND)


CARDS = {
    8: FakeCard("NVIDIA GeForce RTX 4060", 8.0, cc=(8, 9)),
    12: FakeCard("NVIDIA GeForce RTX 3060", 12.0, cc=(8, 6)),
    16: FakeCard("NVIDIA GeForce RTX 4080", 16.0, cc=(8, 9)),
    24: FakeCard("NVIDIA GeForce RTX 4090", 24.0, cc=(8, 9)),
    48: FakeCard("NVIDIA RTX A6000", 48.0, cc=(8, 6)),
    80: FakeCard("NVIDIA A100-SXM4-80GB", 80.0, cc=(8, 0)),
}


@pytest.fixture
def card():
    """A fresh copy of one of the reference cards, by size in GiB."""
    def make(size: int, **changes) -> FakeCard:
        base = CARDS[size]
        values = {**base.__dict__, "processes": list(base.processes), "fail": dict(base.fail), **changes}
        return FakeCard(**values)
    return make


@pytest.fixture
def fake_nvml():
    """The FakeNvml class: `fake_nvml([card(24)])`, or `fake_nvml(init_error=code)`."""
    return FakeNvml
