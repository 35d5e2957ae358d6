"""What a run computes in: bf16 autocast where the hardware has bf16, fp32 on other CPUs, and a
clear refusal for what a device cannot do."""

from __future__ import annotations

import pytest
import torch

import engine.train.methods as methods
from engine.events import StepLogged, TrainStarted
from engine.train.methods import PrecisionError, choose_precision
from tests.train.test_loop import run_tiny
from tests.train.tiny import tiny_config


@pytest.mark.parametrize("native", [True, False])
def test_auto_on_the_cpu_takes_bf16_only_where_the_cpu_computes_it(monkeypatch, native):
    monkeypatch.setattr(methods, "cpu_has_native_bf16", lambda: native)
    chosen = choose_precision("lora", "cpu")
    assert chosen.label == ("cpu bfloat16 autocast" if native else "cpu fp32")
    assert chosen.load_dtype == torch.float32  # the adapters' master weights stay fp32 either way
    assert choose_precision("lora", "cpu", "fp32").label == "cpu fp32"
    assert choose_precision("lora", "cpu", "bf16").label == "cpu bfloat16 autocast"


def test_a_gpu_refuses_fp32_and_bf16_it_does_not_have(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "Tesla T4")
    assert choose_precision("lora", "cuda").label == "cuda float16 autocast + loss scaling"
    with pytest.raises(PrecisionError, match="Tesla T4 has no bf16"):
        choose_precision("lora", "cuda", "bf16")
    with pytest.raises(PrecisionError, match="fp32 is for the CPU"):
        choose_precision("lora", "cuda", "fp32")


def test_a_bf16_run_on_the_cpu_learns_and_says_so(tmp_path, model_folder):
    result, events = run_tiny(tiny_config(tmp_path, precision="bf16", max_steps=6), model_folder)
    assert result.status == "finished"
    started = next(e for e in events if isinstance(e, TrainStarted))
    assert started.device == "cpu bfloat16 autocast"
    losses = [e.loss for e in events if isinstance(e, StepLogged)]
    assert all(loss == loss for loss in losses) and losses[-1] < losses[0]
