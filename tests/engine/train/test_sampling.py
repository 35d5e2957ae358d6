"""GRPO's sampler on a tiny real Llama: what it draws, and the work it leaves out to draw it."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from engine.train import sampling  # noqa: E402
from engine.train.sampling import new_generator, sample  # noqa: E402

PROMPTS = [(3, 4, 5, 6), (7, 8)]


@pytest.fixture(scope="module")
def tied_lora(tmp_path_factory):
    """SmolLM2's layout: the head is the fp32 input embedding, frozen under LoRA."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        vocab_size=96, max_position_embeddings=128, pad_token_id=0, eos_token_id=1, bos_token_id=2,
        tie_word_embeddings=True))
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.05)
    return model


def draw(model, tokens: int = 6, group: int = 3):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        return sample(model, PROMPTS, group, tokens, 1.0, frozenset({1}), 0, new_generator(7),
                      torch.autocast("cpu", dtype=torch.bfloat16))


def test_the_frozen_fp32_head_is_cast_to_16_bits_once_not_per_token(tied_lora, monkeypatch):
    head = tied_lora.get_output_embeddings().weight
    assert head.dtype == torch.float32 and not head.requires_grad
    with torch.profiler.profile(record_shapes=True) as prof:
        got = draw(tied_lora)
    head_casts = [e for e in prof.events() if e.name == "aten::_to_copy" and e.input_shapes[:1] == [list(head.shape)]]
    assert len(head_casts) <= 1

    # The same answers as the model's own forward, where autocast casts the head at every token.
    monkeypatch.setattr(sampling, "has_plain_head", lambda _model: False)
    assert draw(tied_lora) == got
