"""The run's GPU sampled from NVML at each logged step and kept in metrics.jsonl (issue 25 item 5),
on the fake NVML."""

from __future__ import annotations

import pynvml

from engine.hardware.sampler import GpuSampler
from tests.engine.hardware.conftest import FakeCard, FakeNvml

UUID = "GPU-6a2c3d4e-0000-1111-2222-333344445555"


def cards() -> list[FakeCard]:
    return [FakeCard("NVIDIA GeForce RTX 3060", 12.0, used_gib=1.0, util_percent=3),
            FakeCard("NVIDIA GeForce RTX 4090", 24.0, used_gib=9.5, util_percent=87, uuid=UUID)]


def test_the_gpu_named_by_uuid_is_sampled_and_nvml_closed_after():
    nvml = FakeNvml(cards())
    sampler = GpuSampler.open(UUID, nvml)
    assert sampler is not None
    sample = sampler.sample()
    assert (sample.used_gib, sample.util_percent) == (9.5, 87)
    sampler.close()
    assert nvml.shutdowns == 1


def test_a_figure_nvml_cannot_give_is_none_and_not_asked_again():
    card = cards()[1]
    card.fail["nvmlDeviceGetUtilizationRates"] = pynvml.NVML_ERROR_NOT_SUPPORTED
    sampler = GpuSampler.open(UUID, FakeNvml([card]))
    assert sampler is not None
    assert sampler.sample().util_percent is None and sampler.sample().used_gib == 9.5
    card.fail.clear()
    assert sampler.sample().util_percent is None


def test_no_sampler_where_nvml_cannot_reach_the_gpu():
    assert GpuSampler.open("GPU-not-here", FakeNvml(cards())) is None
    assert GpuSampler.open(UUID, FakeNvml(cards(), init_error=pynvml.NVML_ERROR_DRIVER_NOT_LOADED)) is None
