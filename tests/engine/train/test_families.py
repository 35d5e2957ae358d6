"""Each family ftui catalogs trains with the config's default targets: tiny random models built from
transformers' own config classes, a few steps of the real loop on the CPU (issue 23 item 3)."""

from __future__ import annotations

import pytest

from engine.config.schema import DEFAULT_TARGET_MODULES
from engine.hardware.architectures import translate_targets
from tests.engine.train.tiny import VOCAB, make_tokenizer, run_tiny, tiny_config

COMMON = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=256, pad_token_id=0, eos_token_id=1, bos_token_id=2)
FAMILIES = {
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", {"head_dim": 16}),
    "gemma3_text": ("Gemma3TextConfig", "Gemma3ForCausalLM", {"head_dim": 16, "sliding_window": 16}),
    "mistral": ("MistralConfig", "MistralForCausalLM", {}),
    "phi3": ("Phi3Config", "Phi3ForCausalLM", {}),
}
EXPECTED = {
    "qwen3": set(DEFAULT_TARGET_MODULES), "gemma3_text": set(DEFAULT_TARGET_MODULES),
    "mistral": set(DEFAULT_TARGET_MODULES), "phi3": {"qkv_proj", "o_proj", "gate_up_proj", "down_proj"},
}


def make_family_folder(folder, model_type):
    import torch
    import transformers

    config_class, model_class, extra = FAMILIES[model_type]
    torch.manual_seed(0)
    model = getattr(transformers, model_class)(getattr(transformers, config_class)(**COMMON, **extra))
    model.save_pretrained(folder)
    make_tokenizer().save_pretrained(folder)
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("model_type", FAMILIES)
def test_default_targets_train_each_family(tmp_path, model_type):
    # Phi-3 was refused before: the default q_proj/k_proj/v_proj/gate_proj/up_proj match no layer of it.
    import transformers

    from engine.train.methods import apply_method

    folder = make_family_folder(tmp_path / model_type, model_type)
    config = tiny_config(tmp_path, target_modules=DEFAULT_TARGET_MODULES, max_steps=3, val_split=0.0)

    result, _ = run_tiny(config, folder)

    assert result.status == "finished", (result.reason, result.advice)
    assert result.steps == 3
    wrapped = apply_method(transformers.AutoModelForCausalLM.from_pretrained(folder), config)
    assert {name.rsplit(".", 1)[-1] for name, m in wrapped.named_modules() if hasattr(m, "lora_A")} == EXPECTED[model_type]


def test_translation_keeps_other_names_and_dotted_paths():
    assert translate_targets(("q_proj", "v_proj", "self_attn.o_proj", "lm_head"), "phi3") == (
        "qkv_proj", "self_attn.o_proj", "lm_head")
    assert translate_targets(DEFAULT_TARGET_MODULES, "llama") == DEFAULT_TARGET_MODULES


def _train_here(config):
    import threading

    from engine.events import TrainFailed
    from engine.train.load import train_here

    events: list = []
    result = train_here(config, events.append, threading.Event())
    return result, [e for e in events if isinstance(e, TrainFailed)]


def test_a_folder_of_an_architecture_ftui_cannot_export_is_refused_before_training_naming_what_is(tmp_path):
    import transformers

    folder = tmp_path / "gpt2"
    transformers.GPT2LMHeadModel(transformers.GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=VOCAB)).save_pretrained(
        folder)
    make_tokenizer().save_pretrained(folder)
    config = tiny_config(tmp_path, model=str(folder), dataset=str(tmp_path / "absent.jsonl"))

    result, failed = _train_here(config)

    assert result.status == "failed" and len(failed) == 1
    assert result.reason.startswith("GGUF export of gpt2 models is not supported (ftui exports llama, qwen3, "
                                    "gemma3_text, mistral, phi3, gemma3)")
    assert result.advice.startswith("set export_gguf = false to train and keep the HF weights")


def test_every_catalog_family_and_each_tiny_family_folder_passes_the_check(tmp_path):
    from engine.hardware.catalog import load_catalog
    from engine.train.load import _model_type, check_exportable

    for spec in load_catalog():
        check_exportable(tiny_config(tmp_path, model=spec.id), spec.architecture)
    for model_type in FAMILIES:
        folder = make_family_folder(tmp_path / model_type, model_type)
        check_exportable(tiny_config(tmp_path, model=str(folder)), _model_type(folder))


def test_export_gguf_false_lets_any_architecture_through(tmp_path):
    from engine.train.load import check_exportable

    check_exportable(tiny_config(tmp_path, export_gguf=False), "gpt2")


def test_gemma_3_is_refused_in_fp16_but_trains_in_bf16_and_other_families_in_fp16():
    import torch

    from engine.train.load import check_family_precision
    from engine.train.loop import Failure
    from engine.train.methods import Precision

    fp16 = Precision("cuda", torch.float16, torch.float16, True)
    with pytest.raises(Failure, match="gemma3_text models overflow fp16") as refused:
        check_family_precision("gemma3_text", fp16)
    assert "compute capability 8.0+" in refused.value.advice
    check_family_precision("gemma3_text", Precision("cuda", torch.bfloat16, torch.bfloat16, False))
    check_family_precision("qwen3", fp16)
    check_family_precision("gemma3", Precision("cpu", torch.float32, None, False))
