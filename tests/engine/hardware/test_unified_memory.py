"""A GPU that shares the system's memory (DGX Spark's GB10): NVML answers NOT_SUPPORTED for its
memory, so the probe reads /proc/meminfo, marks the GPU unified and the recommendation plans on
what the system has available. NVML and /proc/meminfo are faked as a Spark answers."""

from __future__ import annotations

import json
import sys

import pynvml
import pytest

from cli.main import main
from engine.hardware.probe import probe
from engine.hardware.recommend import recommend

SPARK_TOTAL, SPARK_AVAILABLE = 127600748 / 1024**2, 118566368 / 1024**2  # GiB, from SPARK_MEMINFO


def test_gb10_is_unified_and_budgets_from_memavailable(gb10, fake_nvml, meminfo):
    meminfo()
    report = probe(fake_nvml([gb10()]))
    (gpu,) = report.gpus
    assert gpu.unified_memory and report.unified_memory
    assert gpu.total_gib == pytest.approx(SPARK_TOTAL) and gpu.free_gib == pytest.approx(SPARK_AVAILABLE)
    assert gpu.used_gib == pytest.approx(SPARK_TOTAL - SPARK_AVAILABLE)
    assert gpu.bf16 and gpu.compute_capability == (12, 1)
    assert gpu.problems == ()  # the missing NVML figure is expected here, not a fault to show
    assert "unified memory, shared with the CPU" in report.note
    assert f"{SPARK_AVAILABLE:.1f} GiB of {SPARK_TOTAL:.1f} GiB" in report.note


def test_another_ats_gpu_without_memory_figures_is_unified(gb10, fake_nvml, meminfo):
    meminfo()
    (gpu,) = probe(fake_nvml([gb10(name="NVIDIA Thor")])).gpus
    assert gpu.unified_memory and gpu.free_gib == pytest.approx(SPARK_AVAILABLE)


@pytest.mark.parametrize("addressing", ["none", "old driver", "old nvidia-ml-py"])
def test_a_discrete_card_without_memory_figures_is_not_planned_on_system_ram(card, fake_nvml, meminfo, addressing,
                                                                             monkeypatch):
    meminfo()
    broken = card(24, fail={"nvmlDeviceGetMemoryInfo": pynvml.NVML_ERROR_NOT_SUPPORTED})
    if addressing == "old driver":
        broken.fail["nvmlDeviceGetAddressingMode"] = pynvml.NVML_ERROR_FUNCTION_NOT_FOUND
    nvml = fake_nvml([broken])
    if addressing == "old nvidia-ml-py":
        monkeypatch.delattr(type(nvml), "nvmlDeviceGetAddressingMode")
    (gpu,) = probe(nvml).gpus
    assert not gpu.unified_memory and gpu.total_gib == 0
    assert gpu.problems == ("memory: Not Supported",)


def test_gb10_whose_nvml_answers_memory_still_plans_on_memavailable(gb10, fake_nvml, meminfo):
    meminfo()
    (gpu,) = probe(fake_nvml([gb10(total_gib=119.7, used_gib=1.0, fail={})])).gpus
    assert gpu.unified_memory and gpu.free_gib == pytest.approx(SPARK_AVAILABLE)


def test_unreadable_meminfo_leaves_zero_and_says_why(gb10, fake_nvml, meminfo):
    meminfo(None)
    (gpu,) = probe(fake_nvml([gb10()])).gpus
    assert gpu.unified_memory and gpu.free_gib == 0
    assert len(gpu.problems) == 1 and "Not Supported" in gpu.problems[0] and "meminfo" in gpu.problems[0]


def test_memavailable_missing_falls_back_to_memfree(gb10, fake_nvml, meminfo):
    meminfo("MemTotal:  8388608 kB\nMemFree:  4194304 kB\n")
    (gpu,) = probe(fake_nvml([gb10()])).gpus
    assert (gpu.total_gib, gpu.free_gib) == (pytest.approx(8.0), pytest.approx(4.0))


def test_recommendation_for_a_spark_is_an_8b_lora(gb10, fake_nvml, meminfo):
    meminfo()
    rec = recommend(probe(fake_nvml([gb10()])))
    assert (rec.model, rec.method, rec.fits) == ("llama-3.1-8b", "lora", True)
    assert rec.free_gib == pytest.approx(SPARK_AVAILABLE, abs=0.01)
    assert "NVIDIA GB10" in rec.reason and "unified memory" in rec.reason


def test_ftui_hardware_says_unified_memory(gb10, fake_nvml, meminfo, monkeypatch, capsys):
    meminfo()
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml([gb10()]))
    assert main(["hardware"]) == 0
    out = capsys.readouterr().out
    assert "GPU 0: unified memory, shared with the CPU" in out
    assert "could not read" not in out
    assert main(["hardware", "--json"]) == 0
    (gpu,) = json.loads(capsys.readouterr().out)["gpus"]
    assert gpu["unified_memory"] is True and gpu["free_gib"] == pytest.approx(SPARK_AVAILABLE)


def test_home_screen_shows_unified_memory_instead_of_vram(gb10, fake_nvml, meminfo, card):
    from tui.screens.home import render_gpu

    meminfo()
    (spark,) = probe(fake_nvml([gb10()])).gpus
    shown = render_gpu(spark).plain
    assert "unified memory, shared with the CPU" in shown and "VRAM" not in shown
    assert f"{SPARK_AVAILABLE:.1f} free of {SPARK_TOTAL:.1f} GiB" in shown
    (discrete,) = probe(fake_nvml([card(24)])).gpus
    assert "VRAM" in render_gpu(discrete).plain


@pytest.mark.parametrize(("integrated", "free"), [(1, SPARK_AVAILABLE), (0, 96.0)])
def test_preflight_on_unified_memory_counts_what_the_system_has_available(monkeypatch, meminfo, integrated, free):
    """CUDA's free figure on a Spark leaves out the reclaimable page cache; preflight judges by
    MemAvailable there, as the recommendation does, and by CUDA's figure on a discrete card."""
    from types import SimpleNamespace

    import torch

    from engine.train.preflight import free_gpu_gib

    meminfo()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a: (96 * 1024**3, 120 * 1024**3))
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda *a: SimpleNamespace(is_integrated=integrated))
    assert free_gpu_gib() == pytest.approx(free)


def test_config_form_budget_is_named_unified_memory(gb10, fake_nvml, meminfo, card, tmp_path):
    from tests.tui.fake_backend import FakeBackend
    from tui.app import FtuiApp

    meminfo()
    app = FtuiApp(backend=FakeBackend(tmp_path))
    app.session.hardware = probe(fake_nvml([gb10()]))
    assert app.session.memory_budget() == (pytest.approx(SPARK_AVAILABLE), "free unified memory")
    app.session.hardware = probe(fake_nvml([card(24)]))
    assert app.session.memory_budget() == (pytest.approx(23.6), "free VRAM")
