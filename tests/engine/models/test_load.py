"""Loading weights and tokenizers: fp32 on CPU, bitsandbytes NF4 for QLoRA, safe tokenizer defaults."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from engine.events import Progress
from engine.models import LOAD_STAGE, ModelLoadError, ResolvedModel, load_causal_lm, load_tokenizer, resolve_model


def test_loads_in_float32_on_cpu_with_progress(tiny_folder):
    events: list[Progress] = []
    model = load_causal_lm(resolve_model(str(tiny_folder)), on_event=events.append)
    assert next(model.parameters()).dtype == torch.float32
    assert [(e.stage, e.done) for e in events] == [(LOAD_STAGE, 0), (LOAD_STAGE, 1)]
    assert "float32" in events[0].message


def test_dtype_can_be_asked_for_by_name(tiny_folder):
    model = load_causal_lm(resolve_model(str(tiny_folder)), dtype="bfloat16")
    assert next(model.parameters()).dtype == torch.bfloat16


@pytest.mark.slow
def test_4bit_on_cpu_quantises_the_linear_layers_to_nf4(tiny_folder):
    import bitsandbytes as bnb

    model = load_causal_lm(resolve_model(str(tiny_folder)), load_in_4bit=True)
    four_bit = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(four_bit) == 2 * 7  # q, k, v, o, gate, up, down in each of the 2 layers
    assert four_bit[0].weight.quant_state.quant_type == "nf4"
    assert four_bit[0].weight.quant_state.nested  # double quantisation
    with torch.no_grad():
        logits = model(torch.tensor([[1, 2, 3, 4]])).logits
    assert torch.isfinite(logits).all()


def test_prequantized_4bit_folder_loads_without_a_new_quantisation_config(tiny_folder, tmp_path):
    import bitsandbytes as bnb

    quantised = load_causal_lm(resolve_model(str(tiny_folder)), load_in_4bit=True)
    folder = tmp_path / "tiny-bnb-4bit"
    quantised.save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(tiny_folder / name, folder / name)
    resolved = resolve_model(str(folder))
    assert resolved.prequantized_4bit is True
    assert resolved.base_16bit_ref is None
    model = load_causal_lm(resolved)
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())


def test_broken_weights_are_a_model_load_error(tiny_folder, tmp_path):
    folder = tmp_path / "broken"
    shutil.copytree(tiny_folder, folder)
    (folder / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelLoadError) as info:
        load_causal_lm(resolve_model(str(folder)))
    assert "does not load" in info.value.reason


def test_embedded_tokenizer_is_ready_for_chat_training():
    tokenizer = load_tokenizer(resolve_model("smollm2-135m"))
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.pad_token == "<|endoftext|>"
    assert "<|im_start|>" in tokenizer.chat_template


def test_tokenizer_without_template_or_pad_gets_chatml_and_a_pad_that_is_not_eos(tiny_folder, tmp_path):
    folder = tmp_path / "bare"
    shutil.copytree(tiny_folder, folder)
    (folder / "chat_template.jinja").unlink()
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.pop("pad_token", None)
    config.pop("chat_template", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    tokenizer = load_tokenizer(ResolvedModel(str(folder), None, False, str(folder)))
    assert tokenizer.pad_token is not None and tokenizer.pad_token != tokenizer.eos_token
    text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
