"""bench/gpu_check.py runs here too: without CUDA it dry-runs the smallest plan, shrunk, and exits 0."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "gpu_check.py"


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_dry_run_on_cpu_writes_the_json(tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("with a GPU the script runs the real check, minutes long")
    out = tmp_path / "check.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--out", str(out)], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No CUDA GPU here" in done.stdout
    data = json.loads(out.read_text())
    assert data["dry_run"] is True
    methods = {row["method"] for row in data["plans"]}
    assert {"lora", "full"} <= methods and all(row["status"] == "finished" for row in data["plans"])
    assert all(row["estimate_peak_gib"] > 0 for row in data["plans"])
    assert all(row["kernels"].startswith("decoder: plain torch") for row in data["plans"])


def test_ladder_plans_are_the_recommendations():
    plans = load_script().plans("cuda", have_bnb=True, tiny=False)
    labels = [p.label for p in plans]
    assert labels[:2] == ["4 GiB: llama-3.2-1b-4bit qlora b2", "6 GiB: llama-3.2-3b-4bit qlora b2"]
    assert any(p.config.method == "full" for p in plans)
    extras = {p.label: p.config.packing for p in plans if p.card_gib is None}
    assert extras == {"extra: llama-3.2-1b lora b4": False, "extra: llama-3.2-1b lora b4 packed": True,
                      "extra: llama-3.2-1b full b1": False}
    assert all(p.config.max_seq_len == 2048 for p in plans)


def test_qlora_models_get_peft_4bit_adapters_on_cpu():
    pytest.importorskip("bitsandbytes")
    from engine.config import RunConfig
    from engine.train.methods import apply_method

    script = load_script()
    import torch

    model = script.build_model(script.shapes("llama-3.2-1b", tiny=True), "qlora", torch.float32, "cpu")
    config = RunConfig.from_dict({"model": "llama-3.2-1b-4bit", "method": "qlora", "lora_r": 4})
    model = apply_method(model, config)
    q_proj = model.get_base_model().model.layers[0].self_attn.q_proj
    assert type(q_proj).__module__ == "peft.tuners.lora.bnb"
    assert q_proj.get_base_layer().weight.quant_type == "nf4"
    assert model.get_base_model().lm_head.weight.dtype == torch.float32
