"""ftui on an Arm machine (DGX Spark: GB10 with a Cortex-X925/A725 CPU; Grace; Graviton), faked on
this x86 one: torch's CPU features as it reports them on aarch64, NVML and /proc/meminfo as a
Spark answers. Nothing may ask an x86-only question and take its "no" for the whole answer."""

from __future__ import annotations

import platform
from types import MappingProxyType

import pytest
import torch

from engine.hardware.probe import probe
from engine.hardware.recommend import recommend
from engine.train.methods import choose_precision, cpu_has_native_bf16

# torch.cpu.get_capabilities() on aarch64 names Arm features; the x86 names are absent.
SPARK_CPU = {"architecture": "aarch64", "neon": True, "fp16_arith": True, "bf16": True, "i8mm": True,
             "dot": True, "sve": True, "sve2": True, "sve_bf16": True, "sve_max_length": 128}
"""Cortex-X925 (DGX Spark), Neoverse V2 (Grace): Armv9 with the BF16 extension."""
PI_CPU = {"architecture": "aarch64", "neon": True, "fp16_arith": False, "bf16": False, "dot": False, "sve": False}
"""Cortex-A72 (Raspberry Pi 4): Armv8.0, no bf16 arithmetic."""


@pytest.fixture
def aarch64(monkeypatch):
    """Make this machine look like an aarch64 one with the given CPU features."""
    def become(features: dict) -> None:
        monkeypatch.setattr(platform, "machine", lambda: "aarch64")
        monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: MappingProxyType(features))
    return become


@pytest.mark.parametrize(("features", "native", "label"), [
    (SPARK_CPU, True, "cpu bfloat16 autocast"),
    (PI_CPU, False, "cpu fp32"),
])
def test_cpu_bf16_is_judged_by_arm_features_on_arm(aarch64, features, native, label):
    aarch64(features)
    assert cpu_has_native_bf16() is native
    assert choose_precision("lora", "cpu").label == label


def test_x86_features_still_decide_on_x86(monkeypatch):
    for features, native in [({"architecture": "x86_64", "avx2": True, "avx512_bf16": False, "amx_tile": False}, False),
                             ({"architecture": "x86_64", "avx512_bf16": True}, True),
                             ({"architecture": "x86_64", "amx_bf16": True, "amx_tile": True}, True)]:
        monkeypatch.setattr(torch.cpu, "get_capabilities", lambda f=features: MappingProxyType(f))
        assert cpu_has_native_bf16() is native, features


def test_a_spark_end_to_end_probe_recommend_precision(aarch64, gb10, fake_nvml, meminfo):
    aarch64(SPARK_CPU)
    meminfo()
    report = probe(fake_nvml([gb10()]))
    assert report.unified_memory and report.cpu_cores >= 1
    rec = recommend(report)
    assert (rec.model, rec.method, rec.fits) == ("llama-3.1-8b", "lora", True)
    assert rec.free_gib > 100
    assert choose_precision("lora", "cpu").label == "cpu bfloat16 autocast"
