"""A fake NVML at the boundary: the same function names as pynvml, raising pynvml's own errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import pynvml
import pytest

GIB = 1024**3
ADDRESSING_NONE, ADDRESSING_ATS = 0, 2
"""NVML_DEVICE_ADDRESSING_MODE_NONE and _ATS (nvidia-ml-py 13 names them; 12 lacks the call)."""


@dataclass
class FakeCard:
    name: str
    total_gib: float
    used_gib: float = 0.4
    cc: tuple[int, int] = (8, 9)
    processes: list[tuple[int, str | None, float | None]] = field(default_factory=list)
    fail: dict[str, int] = field(default_factory=dict)
    """NVML function name -> error code that call raises for this card."""
    addressing_mode: int = ADDRESSING_NONE
    """ATS where the GPU reaches the CPU's memory coherently (GB10, Grace Hopper)."""
    uuid: str = ""
    """NVML's "GPU-..." id; "" makes one from the card's place."""
    util_percent: int = 0
    """What nvmlDeviceGetUtilizationRates says of the GPU (its .gpu)."""


class FakeNvml:
    NVMLError = pynvml.NVMLError
    NVMLError_LibraryNotFound = pynvml.NVMLError_LibraryNotFound
    NVMLError_DriverNotLoaded = pynvml.NVMLError_DriverNotLoaded
    NVMLError_NoPermission = pynvml.NVMLError_NoPermission
    NVML_ERROR_NOT_SUPPORTED = pynvml.NVML_ERROR_NOT_SUPPORTED
    NVML_DEVICE_ADDRESSING_MODE_ATS = ADDRESSING_ATS

    def __init__(self, cards=(), init_error: int | None = None, driver: str = "550.54.14", cuda_driver: int = 12040):
        self.cards = list(cards)
        self.init_error = init_error
        self.driver = driver
        self.cuda_driver = cuda_driver
        """What nvmlSystemGetCudaDriverVersion answers: 12040 is CUDA 12.4, driver 550's."""
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

    def nvmlSystemGetCudaDriverVersion(self):
        assert self.initialised, "nvmlSystemGetCudaDriverVersion called before nvmlInit"
        return self.cuda_driver

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

    def nvmlDeviceGetAddressingMode(self, handle):
        return self._card(handle, "nvmlDeviceGetAddressingMode").addressing_mode
    def nvmlDeviceGetUUID(self, handle):
        return self._card(handle, "nvmlDeviceGetUUID").uuid or f"GPU-{handle:08x}-0000-0000-0000-000000000000"

    def nvmlDeviceGetHandleByUUID(self, uuid):
        assert self.initialised, "nvmlDeviceGetHandleByUUID called before nvmlInit"
        for index in range(len(self.cards)):
            if self.nvmlDeviceGetUUID(index) == uuid:
                return index
        raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND)

    def nvmlDeviceGetUtilizationRates(self, handle):
        card = self._card(handle, "nvmlDeviceGetUtilizationRates")
        return SimpleNamespace(gpu=card.util_percent, memory=0)

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


GB10 = FakeCard("NVIDIA GB10", 0.0, used_gib=0.0, cc=(12, 1), addressing_mode=ADDRESSING_ATS,
                fail={"nvmlDeviceGetMemoryInfo": pynvml.NVML_ERROR_NOT_SUPPORTED})
"""DGX Spark's GPU as its NVML answers (driver 580): no memory figures, compute capability 12.1."""
SPARK_MEMINFO = "MemTotal:       127600748 kB\nMemFree:         9514216 kB\nMemAvailable:   118566368 kB\n"
"""/proc/meminfo of a DGX Spark with little running: 121.7 GiB in all, 113.1 GiB available."""


@pytest.fixture
def meminfo(tmp_path, monkeypatch):
    """Stand in for /proc/meminfo: `meminfo(text)`; `meminfo(None)` makes it unreadable."""
    import engine.hardware.probe

    def write(text: str | None = SPARK_MEMINFO):
        path = tmp_path / "meminfo"
        if text is not None:
            path.write_text(text)
        monkeypatch.setattr(engine.hardware.probe, "MEMINFO", path)
    return write


@pytest.fixture
def gb10():
    """A fresh copy of GB10, with `changes`: `gb10(name="...")`."""
    def make(**changes) -> FakeCard:
        values = {**GB10.__dict__, "processes": list(GB10.processes), "fail": dict(GB10.fail), **changes}
        return FakeCard(**values)
    return make


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


from tests.engine.native.conftest import crash  # noqa: E402,F401 - the doctor's decode, crashed on purpose
