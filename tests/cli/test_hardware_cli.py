"""`ftui hardware`, `ftui recommend` and `ftui estimate` through cli.main.main, NVML faked."""

from __future__ import annotations

import json
import sys

import pynvml
import pytest

from cli.main import main


@pytest.fixture
def nvml(monkeypatch, fake_nvml, card):
    """Install a fake pynvml module for probe()'s lazy import; returns a setter for its cards."""
    def install(*sizes, **kwargs):
        fake = fake_nvml([card(s) for s in sizes], **kwargs)
        monkeypatch.setitem(sys.modules, "pynvml", fake)
        return fake
    return install


def run_json(capsys, *argv):
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_hardware_json_lists_every_gpu(nvml, capsys):
    nvml(24, 12)
    data = run_json(capsys, "hardware")
    assert [g["name"] for g in data["gpus"]] == ["NVIDIA GeForce RTX 4090", "NVIDIA GeForce RTX 3060"]
    first = data["gpus"][0]
    assert first["total_gib"] == pytest.approx(24) and first["free_gib"] == pytest.approx(23.6)
    assert first["compute_capability"] == [8, 9] and first["bf16"] is True
    assert data["driver"] == "550.54.14" and data["cpu_cores"] >= 1
    assert "GPU 0" in data["note"]


def test_hardware_table(nvml, capsys, card, fake_nvml, monkeypatch):
    busy = card(24, used_gib=6.0, processes=[(311, "/usr/bin/Xorg", 0.5)])
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml([busy]))
    assert main(["hardware"]) == 0
    out = capsys.readouterr().out
    header, row = out.splitlines()[2:4]
    assert header.split() == ["GPU", "name", "total", "free", "used", "cc", "bf16"]
    assert "NVIDIA GeForce RTX 4090" in row and "24.0" in row and "18.0" in row and "8.9" in row
    assert "pid 311 uses 0.5 GiB  /usr/bin/Xorg" in out


def test_hardware_without_driver_says_cpu_mode(nvml, capsys):
    nvml(init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
    data = run_json(capsys, "hardware")
    assert data["gpus"] == [] and "CPU mode" in data["note"]


def test_recommend_json_shape_for_detected_gpu(nvml, capsys):
    nvml(24)
    data = run_json(capsys, "recommend", "--seq-len", "1024")
    for key, kind in {"model": str, "method": str, "batch_size": int, "grad_accum": int, "seq_len": int,
                      "peak_gib": float, "reason": str, "fits": bool}.items():
        assert isinstance(data[key], kind), key
    assert data["seq_len"] == 1024 and data["fits"] is True
    assert "RTX 4090" in data["reason"]


def test_recommend_vram_plans_for_another_card(nvml, capsys):
    nvml(8)  # the machine's own card is ignored with --vram
    data = run_json(capsys, "recommend", "--vram", "80")
    assert (data["model"], data["method"]) == ("llama-3.1-8b", "lora")
    assert "80 GiB card" in data["reason"]


def test_recommend_on_cpu(nvml, capsys):
    nvml(init_error=pynvml.NVML_ERROR_DRIVER_NOT_LOADED)
    assert main(["recommend"]) == 0
    out = capsys.readouterr().out
    assert "smollm2-135m" in out and "No NVIDIA GPU" in out


def test_recommend_max_context_on_the_detected_gpu(nvml, capsys):
    nvml(16)
    assert main(["recommend", "--max-context"]) == 0
    out = capsys.readouterr().out
    assert "longest sequence" in out and "llama-3.1-8b-4bit" in out and "15.6 GiB free" in out
    data = run_json(capsys, "recommend", "--max-context", "--vram", "16")
    by_id = {m["model"]: m for m in data["models"]}
    assert by_id["llama-3.1-8b"]["seq_len"] == 0  # 16-bit 8B weights alone are 15 GiB
    assert by_id["llama-3.1-8b-4bit"]["seq_len"] >= 8192
    assert by_id["llama-3.2-1b-4bit"]["seq_len"] > by_id["llama-3.2-1b"]["seq_len"]


def test_recommend_max_context_needs_a_gpu_or_vram(nvml, capsys):
    nvml(init_error=pynvml.NVML_ERROR_DRIVER_NOT_LOADED)
    assert main(["recommend", "--max-context"]) == 2
    assert "--vram" in capsys.readouterr().err


def test_recommend_rejects_bad_vram(capsys):
    assert main(["recommend", "--vram", "-3"]) == 2
    assert "positive" in capsys.readouterr().err


def test_estimate_json_shape(capsys):
    data = run_json(capsys, "estimate", "--model", "meta-llama/Llama-3.1-8B-Instruct", "--method", "qlora",
                    "--batch", "2", "--seq-len", "2048", "--grad-checkpointing", "--optimizer", "adamw_8bit")
    assert data["model"] == "llama-3.1-8b"
    assert isinstance(data["peak_gib"], float)
    assert sum(data["breakdown"].values()) == pytest.approx(data["peak_gib"], abs=0.01)
    assert {"weights", "optimizer", "activations", "logits"} <= set(data["breakdown"])


def test_estimate_table(capsys):
    assert main(["estimate", "--model", "llama-3.2-1b", "--method", "lora", "--batch", "4", "--seq-len", "512"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("Llama 3.2 1B Instruct, lora, batch 4 x 512 tokens")
    assert out[-1].split()[0] == "peak" and out[-1].endswith("GiB")


def test_estimate_unknown_model_suggests_the_nearest(capsys):
    code = main(["estimate", "--model", "llama-3-8b", "--method", "lora", "--batch", "1", "--seq-len", "512"])
    assert code == 2
    err = capsys.readouterr().err
    assert "'llama-3-8b' is not in the model catalog" in err and "Did you mean 'llama-3.1-8b'?" in err


def test_estimate_bad_target_module(capsys):
    code = main(["estimate", "--model", "llama-3.2-1b", "--method", "lora", "--batch", "1", "--seq-len", "512",
                 "--target-modules", "q_proj,qkv_proj"])
    assert code == 2
    assert "qkv_proj" in capsys.readouterr().err


def test_estimate_rejects_unknown_method(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["estimate", "--model", "llama-3.2-1b", "--method", "sft", "--batch", "1", "--seq-len", "512"])
    assert exc.value.code == 2
    assert "invalid choice: 'sft'" in capsys.readouterr().err


def test_estimate_per_gpu_across_several_shards_with_fsdp_and_agrees_with_the_planner(capsys):
    from engine.config.schema import RunConfig
    from engine.hardware.estimate import estimate_for

    args = ["--model", "llama-3.1-8b", "--method", "lora", "--batch", "2", "--seq-len", "2048", "--grad-checkpointing"]
    one = run_json(capsys, "estimate", *args)
    ddp = run_json(capsys, "estimate", *args, "--gpus", "4")
    fsdp = run_json(capsys, "estimate", *args, "--gpus", "4", "--strategy", "fsdp")
    assert (ddp["gpus"], ddp["strategy"], one["strategy"]) == (4, "ddp", "")
    # A full copy per GPU plus the gradient buckets; sharding 8B's weights four ways saves gigabytes.
    assert one["peak_gib"] < ddp["peak_gib"] < one["peak_gib"] + 1
    assert fsdp["peak_gib"] < ddp["peak_gib"] - 5
    planned = estimate_for(RunConfig(model="llama-3.1-8b", method="lora", batch_size=2, max_seq_len=2048,
                                     gradient_checkpointing=True, gpus="0,1,2,3", strategy="fsdp"))
    assert planned is not None and fsdp["peak_gib"] == round(planned.peak_gib, 3)
    assert main(["estimate", *args, "--gpus", "0"]) == 2
    assert "--gpus must be at least 1" in capsys.readouterr().err
