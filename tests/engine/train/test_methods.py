"""Each method trains on a tiny real model and leaves weights in the format its loaders expect."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors import safe_open

from engine.events import StepLogged, TrainStarted
from tests.engine.train.tiny import run_tiny, tiny_config


def finite_losses(events):
    import math

    losses = [e.loss for e in events if isinstance(e, StepLogged)]
    return losses and all(math.isfinite(x) for x in losses)


@pytest.mark.slow
def test_qlora_trains_adapters_on_a_4bit_nf4_base_on_cpu(tmp_path, wide_model_folder):
    seen = {}

    def record(model, config):
        layer = model.get_decoder().layers[0]
        seen["q_proj"] = type(layer.self_attn.q_proj).__name__
        seen["quant"] = layer.self_attn.q_proj.weight.quant_state.quant_type
        return model

    result, events = run_tiny(tiny_config(tmp_path, method="qlora", max_steps=2, val_split=0.0), wide_model_folder,
                              wrap=record)

    assert result.status == "finished", result.reason
    assert seen == {"q_proj": "Linear4bit", "quant": "nf4"}
    assert finite_losses(events)
    adapter = Path(result.adapter_dir)
    assert json.loads((adapter / "adapter_config.json").read_text())["peft_type"] == "LORA"
    assert (adapter / "adapter_model.safetensors").exists()


@pytest.mark.slow
def test_dora_saves_magnitude_vectors_with_the_adapter(tmp_path, model_folder):
    result, events = run_tiny(tiny_config(tmp_path, method="dora", max_steps=2, val_split=0.0), model_folder)

    assert result.status == "finished", result.reason
    assert finite_losses(events)
    adapter = Path(result.adapter_dir)
    assert json.loads((adapter / "adapter_config.json").read_text())["use_dora"] is True
    with safe_open(str(adapter / "adapter_model.safetensors"), "pt") as f:
        assert any("lora_magnitude_vector" in k for k in f.keys())


@pytest.mark.slow
def test_full_fine_tuning_trains_every_weight_and_saves_a_model_folder(tmp_path, model_folder):
    from transformers import AutoModelForCausalLM

    result, events = run_tiny(tiny_config(tmp_path, method="full", learning_rate=1e-4, max_steps=2, val_split=0.0),
                              model_folder)

    assert result.status == "finished", result.reason
    started = next(e for e in events if isinstance(e, TrainStarted))
    assert started.trainable_params == started.total_params
    run = Path(result.run_dir)
    assert result.adapter_dir == str(run / "model") and not (run / "adapter").exists()
    AutoModelForCausalLM.from_pretrained(run / "model")


@pytest.mark.slow
def test_gradient_checkpointing_gives_the_same_losses(tmp_path, model_folder):
    config = tiny_config(tmp_path, max_steps=3, val_split=0.0)
    _, plain = run_tiny(config, model_folder)
    _, ckpt = run_tiny(config.replace(gradient_checkpointing=True), model_folder)
    a = [e.loss for e in plain if isinstance(e, StepLogged)]
    b = [e.loss for e in ckpt if isinstance(e, StepLogged)]
    assert a == b or max(abs(x - y) for x, y in zip(a, b, strict=True)) < 1e-5


def test_the_fast_loss_equals_the_models_own_loss(model_folder):
    """Logits only at labelled positions must give exactly the loss transformers computes."""
    import torch
    from transformers import AutoModelForCausalLM

    from engine.train.batching import collate
    from engine.train.loss import token_loss_sum
    from tests.engine.train.tiny import make_examples

    model = AutoModelForCausalLM.from_pretrained(model_folder)
    examples = make_examples(4)
    batch = collate(examples, 0)
    with torch.no_grad():
        fast = token_loss_sum(model, batch, fast=True)
        slow = token_loss_sum(model, batch, fast=False)
        reference = model(**batch).loss
    n = int((batch["labels"][:, 1:] != -100).sum())
    assert float(fast) == float(slow) or abs(float(fast) - float(slow)) < 1e-4
    assert abs(float(fast) / n - float(reference)) < 1e-5


@pytest.mark.slow
def test_qlora_keeps_embeddings_and_norms_16_bit_with_the_losses_of_an_fp32_upcast(tmp_path, wide_model_folder):
    """Measured on CPU under bf16 autocast (the GPU recipe): peft's prepare_model_for_kbit_training
    cast embeddings, norms and lm_head to fp32; keeping them bf16 changes step losses by < 1e-3."""
    import threading

    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    from engine.train import Loaded, run_loaded
    from engine.train.methods import Precision
    from tests.engine.train.tiny import make_tokenizer, tiny_data

    dtypes = {}

    def build_for(upcast):
        def build(config, precision):
            model = AutoModelForCausalLM.from_pretrained(
                wide_model_folder, dtype=torch.bfloat16, quantization_config=BitsAndBytesConfig(
                    load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                    bnb_4bit_compute_dtype=torch.bfloat16))
            if upcast:  # what prepare_model_for_kbit_training did
                for p in model.parameters():
                    if p.dtype == torch.bfloat16 and type(p).__name__ != "Params4bit":
                        p.data = p.data.float()
            dtypes[upcast] = model
            return model
        return build

    losses = {}
    for upcast in (True, False):
        events = []
        config = tiny_config(tmp_path / str(upcast), method="qlora", max_steps=4, val_split=0.0, learning_rate=3e-3)
        loaded = Loaded(build_for(upcast), make_tokenizer(), tiny_data(), str(wide_model_folder))
        result = run_loaded(config, loaded, events.append, threading.Event(),
                            precision=Precision("cpu", torch.bfloat16, torch.bfloat16, False))
        assert result.status == "finished", result.reason
        losses[upcast] = [e.loss for e in events if isinstance(e, StepLogged)]
        model = dtypes[upcast]
        plain = {model.get_input_embeddings().weight.dtype, model.get_output_embeddings().weight.dtype,
                 model.get_decoder().norm.weight.dtype}
        assert plain == ({torch.float32} if upcast else {torch.bfloat16})

    assert max(abs(a - b) for a, b in zip(losses[True], losses[False], strict=True)) < 1e-3
