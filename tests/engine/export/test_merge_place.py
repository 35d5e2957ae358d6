"""Where the merge runs: in 16 bits on a GPU with room (an 8B in float32 on the CPU needs ~32 GB of
RAM), else float32 on the CPU; and a 16-bit merge saves what a float32 merge saves, to 16-bit rounding."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

import engine.export.merge as merge_module
from engine.events import ExportFinished
from engine.export import export
from engine.export.merge import MergePlace, count_parameters, merge, merge_place, read_run_source

GIB = 1024**3
EIGHT_B = 8_030_261_248  # Llama 3.1 8B


def test_an_8b_merges_in_bf16_on_an_80_gib_gpu_with_a_float32_reference():
    place = merge_place(EIGHT_B, torch.bfloat16, cuda_free=78 * GIB, bf16=True)
    assert (place.device, place.dtype, place.reference_dtype) == ("cuda", torch.bfloat16, torch.float32)


def test_an_8b_on_a_24_gib_gpu_merges_in_bf16_and_keeps_the_reference_in_bf16():
    place = merge_place(EIGHT_B, torch.bfloat16, cuda_free=23 * GIB, bf16=True)
    assert (place.device, place.reference_dtype) == ("cuda", torch.bfloat16)
    assert "float32 would not fit" in place.why


def test_a_gpu_without_room_or_bf16_falls_back_to_the_cpu_and_says_why():
    small = merge_place(EIGHT_B, torch.bfloat16, cuda_free=12 * GIB, bf16=True)
    assert (small.device, small.dtype) == ("cpu", torch.float32)
    assert "12.0 GiB free" in small.why and "17.9 GiB" in small.why
    t4 = merge_place(EIGHT_B, torch.bfloat16, cuda_free=15 * GIB, bf16=False)
    assert t4.device == "cpu" and "no native bf16" in t4.why
    assert merge_place(EIGHT_B, torch.bfloat16, cuda_free=None, bf16=False).device == "cpu"


def test_the_parameter_count_comes_from_the_config_alone(tiny_run):
    from transformers import AutoModelForCausalLM

    base = read_run_source(tiny_run).base_ref
    real = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(base).parameters())
    assert count_parameters(base) == real


def test_a_16_bit_merge_saves_the_float32_merge_to_bf16_rounding(tmp_path, tiny_run):
    source = read_run_source(tiny_run)
    merge(source, tmp_path / "fp32")
    model, _ = merge(source, tmp_path / "bf16", place=MergePlace("cpu", torch.bfloat16, torch.float32, "test"))
    want, got = load_file(tmp_path / "fp32" / "model.safetensors"), load_file(tmp_path / "bf16" / "model.safetensors")
    assert want.keys() == got.keys()
    q = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(got[q], want[q])  # merged in bf16: rounded ...
    for name, w in want.items():  # ... by no more than bf16's relative step
        assert (got[name] - w).abs().max() <= 2**-7 * w.abs().max(), name
    assert next(model.parameters()).dtype == torch.float32


@pytest.mark.slow
def test_an_export_merged_in_16_bits_with_a_16_bit_reference_passes_verification(tmp_path, tiny_run, monkeypatch):
    monkeypatch.setattr(merge_module, "_place_here",
                        lambda *a: MergePlace("cpu", torch.bfloat16, torch.bfloat16, "bf16 as on a 24 GiB GPU"))
    events = []
    result = export(tiny_run, quants=("F16",), out_dir=tmp_path / "out", on_event=events.append)
    assert isinstance(events[-1], ExportFinished) and result.passed
    assert any("bf16 as on a 24 GiB GPU" in getattr(e, "message", "") for e in events)
