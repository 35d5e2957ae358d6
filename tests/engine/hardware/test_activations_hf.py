"""The estimator's per-layer activation count against what transformers + peft really save.

A tiny Llama runs one forward pass under bf16 autocast (as engine/train does on a GPU) while a
saved-tensors hook adds up every tensor autograd keeps for backward. Two depths and two lengths
separate the per-layer, per-token share from embeddings, the loss and cast weights.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from engine.config.schema import DEFAULT_TARGET_MODULES  # noqa: E402
from engine.hardware.catalog import ModelSpec  # noqa: E402
from engine.hardware.estimate import layer_activation_bytes  # noqa: E402

pytestmark = pytest.mark.slow

HIDDEN, INTERMEDIATE, HEADS, KV_HEADS, VOCAB = 128, 344, 4, 2, 512


def saved_bytes(method: str, layers: int, tokens: int) -> int:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=HIDDEN, intermediate_size=INTERMEDIATE, num_attention_heads=HEADS,
                         num_key_value_heads=KV_HEADS, num_hidden_layers=layers, vocab_size=VOCAB,
                         max_position_embeddings=tokens)
    model = LlamaForCausalLM(config)
    if method == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model.to(torch.bfloat16), LoraConfig(
            r=8, lora_alpha=16, lora_dropout=0.0, target_modules=list(DEFAULT_TARGET_MODULES)))
    storages: dict[int, int] = {}

    def keep(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    ids = torch.randint(0, VOCAB, (1, tokens))
    with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t), torch.autocast("cpu", dtype=torch.bfloat16):
        model(input_ids=ids, labels=ids)
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    return sum(n for ptr, n in storages.items() if ptr not in params)


@pytest.mark.parametrize("method", ["lora", "full"])
def test_per_layer_activations_match_transformers_and_peft(method):
    short, long = 64, 192
    per_layer = [saved_bytes(method, 3, t) - saved_bytes(method, 1, t) for t in (short, long)]
    measured = (per_layer[1] - per_layer[0]) / 2 / (long - short)
    spec = ModelSpec("tiny", "tiny", "tiny", "hub", 0, 1, HIDDEN, HEADS, KV_HEADS, INTERMEDIATE, VOCAB,
                     False, long, "chatml", 16)
    predicted = layer_activation_bytes(spec, method, DEFAULT_TARGET_MODULES)
    assert predicted == pytest.approx(measured, rel=0.10)
