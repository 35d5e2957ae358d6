"""The catalog holds the product's model ladder with the numbers the estimator needs."""

import pytest

from engine.hardware import catalog


def test_ladder_and_4bit_variants_are_listed():
    ids = {s.id for s in catalog.load_catalog()}
    assert {"smollm2-135m", "llama-3.2-1b", "llama-3.2-3b", "llama-3.1-8b"} <= ids
    for base in ("llama-3.2-1b", "llama-3.2-3b", "llama-3.1-8b"):
        four = catalog.four_bit_variant(catalog.get(base))
        assert four is not None and four.bits == 4 and "bnb-4bit" in four.hub_id
        assert four.params == catalog.get(base).params


def test_lookup_by_catalog_id_hub_id_or_mirror():
    assert catalog.get("meta-llama/Llama-3.1-8B-Instruct").id == "llama-3.1-8b"
    assert catalog.get("unsloth/Llama-3.2-3B-Instruct").id == "llama-3.2-3b"
    assert catalog.get("LLAMA-3.2-1B").hub_id == "meta-llama/Llama-3.2-1B-Instruct"


def test_unknown_id_suggests_a_close_one():
    with pytest.raises(catalog.UnknownModel) as exc:
        catalog.get("llama-3.2-1")
    assert "Did you mean" in str(exc.value)


def test_gated_repos_name_an_ungated_mirror():
    for spec in catalog.load_catalog():
        if spec.gated:
            assert spec.ungated and spec.ungated != spec.hub_id


FAMILY_CONFIGS = {
    "qwen3": ("Qwen3Config", {}), "gemma3_text": ("Gemma3TextConfig", {}), "gemma3": ("Gemma3TextConfig", {}),
    "mistral": ("MistralConfig", {}), "phi3": ("Phi3Config", {"pad_token_id": 0}),
}


@pytest.mark.parametrize("spec", [s for s in catalog.load_catalog() if s.architecture in FAMILY_CONFIGS],
                         ids=lambda s: s.id)
def test_each_family_entrys_shapes_give_its_parameter_count(spec):
    # The estimator predicts memory from these numbers: built by transformers' own config class, the
    # model they describe must have exactly the catalog's parameter count (the text tower for Gemma 3).
    import torch
    import transformers

    name, extra = FAMILY_CONFIGS[spec.architecture]
    config = getattr(transformers, name)(
        vocab_size=spec.vocab, hidden_size=spec.hidden, intermediate_size=spec.intermediate,
        num_hidden_layers=spec.layers, num_attention_heads=spec.heads, num_key_value_heads=spec.kv_heads,
        head_dim=spec.head_size, tie_word_embeddings=spec.tied_embeddings, **extra)
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(config)
    assert sum(p.numel() for p in model.parameters()) == spec.params


def test_every_family_has_entries_and_a_note():
    families = {s.family for s in catalog.load_catalog()}
    assert {"llama", "qwen3", "gemma3", "mistral", "phi4"} <= families
    for spec in catalog.load_catalog():
        if spec.family not in ("llama", "smollm2"):
            assert spec.note
