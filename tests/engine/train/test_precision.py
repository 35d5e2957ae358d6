"""What a run computes in: bf16 autocast where the hardware has bf16, fp32 on other CPUs, and a
clear refusal for what a device cannot do."""

from __future__ import annotations

import pytest
import torch

import engine.train.methods as methods
from engine.events import StepLogged, TrainStarted
from engine.train.methods import PrecisionError, choose_precision
from tests.engine.train.test_loop import run_tiny
from tests.engine.train.tiny import tiny_config


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
    with pytest.raises(PrecisionError, match="Tesla T4 has no native bf16"):
        choose_precision("lora", "cuda", "bf16")
    with pytest.raises(PrecisionError, match="fp32 is for the CPU"):
        choose_precision("lora", "cuda", "fp32")


def emulated_bf16(including_emulation=True):
    """torch's answer on a T4 or V100 (compute capability 7.x): bf16 tensors work, emulated."""
    return including_emulation


def test_a_gpu_that_only_emulates_bf16_trains_in_fp16_with_loss_scaling(monkeypatch):
    from engine.models.causal_lm import default_dtype

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", emulated_bf16)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "Tesla T4")
    assert choose_precision("lora", "cuda").label == "cuda float16 autocast + loss scaling"
    assert choose_precision("full", "cuda").loss_scaling
    assert default_dtype("cuda") == torch.float16  # the dtype a model loads in for merging and chat
    with pytest.raises(PrecisionError, match="Tesla T4 has no native bf16"):
        choose_precision("lora", "cuda", "bf16")


@pytest.mark.slow
def test_a_bf16_run_on_the_cpu_learns_and_says_so(tmp_path, model_folder):
    result, events = run_tiny(tiny_config(tmp_path, precision="bf16", max_steps=6), model_folder)
    assert result.status == "finished"
    started = next(e for e in events if isinstance(e, TrainStarted))
    assert started.device == "cpu bfloat16 autocast"
    losses = [e.loss for e in events if isinstance(e, StepLogged)]
    assert all(loss == loss for loss in losses) and losses[-1] < losses[0]


def test_frozen_weights_stored_in_bf16_give_the_same_step_under_cpu_autocast(model_folder):
    import copy

    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from engine.train.methods import Precision, store_frozen_weights_for_autocast

    torch.manual_seed(0)
    plain = get_peft_model(AutoModelForCausalLM.from_pretrained(model_folder),
                           LoraConfig(r=4, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "down_proj"]))
    for name, p in plain.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0, 0.1)
    stored = copy.deepcopy(plain)
    autocast = Precision("cpu", torch.float32, torch.bfloat16, False)
    assert store_frozen_weights_for_autocast(stored, Precision("cpu", torch.float32, None, False)) == 0
    assert store_frozen_weights_for_autocast(stored, autocast) >= 2 * 7  # every base projection of 2 layers
    assert stored.base_model.model.model.layers[0].self_attn.q_proj.base_layer.weight.dtype == torch.bfloat16
    assert stored.base_model.model.model.embed_tokens.weight.dtype == torch.float32
    assert stored.base_model.model.model.layers[0].self_attn.q_proj.lora_A["default"].weight.dtype == torch.float32

    ids = torch.randint(3, 64, (2, 20))
    results = []
    for model in (plain, stored):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        results.append((loss.detach(), [p.grad for p in model.parameters() if p.requires_grad]))
    assert torch.equal(results[0][0], results[1][0])
    assert all(torch.equal(a, b) for a, b in zip(results[0][1], results[1][1], strict=True))


def _mapped(folder) -> bool:
    return str(folder) in open("/proc/self/maps", encoding="utf-8").read()


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/maps"), reason="reads Linux's /proc/self/maps")
def test_storing_frozen_weights_in_bf16_lets_the_checkpoint_file_go(model_folder):
    """An fp32 checkpoint loads as a mapping of its file; a weight left in it keeps every page the
    conversion read resident beside the bf16 copies (0.5 GiB for SmolLM2-135M)."""
    import gc

    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from engine.train.methods import Precision, store_frozen_weights_for_autocast

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(model_folder, dtype=torch.float32),
                           LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    assert _mapped(model_folder)
    embedding = model.base_model.model.model.embed_tokens.weight
    before = embedding.detach().clone()
    assert store_frozen_weights_for_autocast(model, Precision("cpu", torch.float32, torch.bfloat16, False)) > 0
    gc.collect()
    assert not _mapped(model_folder)
    assert embedding.dtype == torch.float32 and torch.equal(embedding, before)
