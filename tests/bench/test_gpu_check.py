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


@pytest.mark.slow
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
    doctor, decode, *trained, exported = data["plans"]
    assert doctor["plan"] == "doctor" and {c["id"] for c in doctor["checks"]} >= {"torch", "llama_build", "disk"}
    assert decode["plan"] == "llama.cpp decode" and decode["status"] == "skipped"
    assert exported["status"] == "finished", exported
    assert exported["merge"].startswith("loading base weights; merging in no CUDA GPU: float32 on the CPU")
    assert exported["f16_argmax_agreement"] >= 0.95
    assert "no GPU offload" in decode["reason"]  # this machine's llama.cpp is the CPU build
    methods = {row["method"] for row in trained}
    assert {"lora", "full"} <= methods and all(row["status"] == "finished" for row in trained)
    assert all(row["estimate_peak_gib"] > 0 for row in trained)
    assert all(row["kernels"].startswith("decoder: plain torch") for row in trained)


def test_ladder_plans_are_the_recommendations():
    plans = load_script().plans("cuda", have_bnb=True, tiny=False)
    labels = [p.label for p in plans]
    assert labels[:2] == ["4 GiB: llama-3.2-1b-4bit qlora b2", "6 GiB: llama-3.2-3b-4bit qlora b2"]
    assert any(p.config.method == "full" for p in plans)
    extras = {p.label: (p.config.packing, p.varied) for p in plans if p.card_gib is None}
    assert extras == {"extra: llama-3.2-1b lora b4": (False, False), "extra: llama-3.2-1b lora b4 packed": (True, False),
                      "extra: llama-3.2-1b lora b4 varied": (False, True),
                      "extra: llama-3.2-1b lora b4 packed varied": (True, True),
                      "extra: llama-3.2-1b full b1": (False, False)}
    assert all(p.config.max_seq_len == 2048 for p in plans)


@pytest.mark.slow
def test_qlora_models_get_peft_4bit_adapters_on_cpu():
    pytest.importorskip("bitsandbytes")
    from engine.config.schema import RunConfig
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


@pytest.mark.slow
def test_a_failing_case_is_a_row_and_the_json_holds_every_row_as_it_completes(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("with a GPU the script runs the real check, minutes long")
    script = load_script()
    out = tmp_path / "check.json"
    real = script.run_plan
    seen_before: list[list[str]] = []

    def second_breaks(plan, *args):
        seen_before.append([row["plan"] for row in json.loads(out.read_text())["plans"]])
        if len(seen_before) == 2:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return real(plan, *args)

    monkeypatch.setattr(script, "run_plan", second_breaks)
    # main() counts bitsandbytes' paged buffers in its process: registered here, so this test's
    # process gets them back.
    if importlib.util.find_spec("bitsandbytes") is not None:
        import bitsandbytes.functional as bnb_functional

        monkeypatch.setattr(bnb_functional, "get_paged", bnb_functional.get_paged)
    assert script.main(["--tiny", "--out", str(out)]) == 1
    rows = json.loads(out.read_text())["plans"]
    assert seen_before[0] == ["doctor", "llama.cpp decode"]
    assert len(seen_before[1]) == 3  # the first plan was on disk before the second ran
    broken = rows[3]
    assert broken["status"] == "error" and "illegal memory access" in broken["reason"] and broken["traceback"]
    assert [row["status"] for row in rows[4:]] and all(row["status"] == "finished" for row in rows[4:])
    import engine.train.loop as loop

    assert loop.save_checkpoint.__module__ == "engine.train.checkpoint"  # the writers are back after the plans


def test_varied_lengths_spread_up_to_the_sequence_length():
    data = load_script().random_data(64, 2048, 1000, varied=True)
    lengths = [len(row.input_ids) for row in data.train]
    assert min(lengths) < 512 and max(lengths) > 1536 and len(set(lengths)) > 32
    assert {len(row.input_ids) for row in load_script().random_data(4, 2048, 1000).train} == {2048}


@pytest.mark.slow
def test_paged_optimizer_state_is_counted(monkeypatch):
    bnb_functional = pytest.importorskip("bitsandbytes.functional")
    import torch

    script = load_script()
    monkeypatch.setattr(bnb_functional, "get_paged", lambda *shape, dtype=torch.float32, device=None:
                        torch.zeros(shape, dtype=dtype))
    script.count_paged()
    bnb_functional.get_paged(10, 20, dtype=torch.uint8)
    bnb_functional.get_paged(4, dtype=torch.float32)
    assert script.PAGED_BYTES == [200, 16]


def test_the_script_needs_no_test_modules():
    """The GPU machine has no pytest: the two-GPU case builds its own tokenizer and data."""
    import ast

    imported = {node.module for node in ast.walk(ast.parse(SCRIPT.read_text()))
                if isinstance(node, ast.ImportFrom) and node.module}
    assert not {m for m in imported if m.split(".")[0] in ("tests", "pytest", "cli")}
