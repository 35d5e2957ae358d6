"""Evaluation and retention scoring on every family's template: the likelihood of an answer under
a tiny random model of each architecture (Qwen3, Gemma 3, Mistral, Phi-3 as Phi-4-mini is), with
the family's published chat template, counts the answer and its end of turn and nothing of the
prompt, and a thinking model's reasoning never counts as its answer."""

from __future__ import annotations

import math

import pytest

from engine.data.prompts import GeneralPrompt
from engine.data.render import with_system_prompt
from engine.data.types import Conversation, Message
from engine.eval.retention import answer_matches, answer_nll, exact_retention
from engine.infer.thinking import answer_only
from tests.engine.export.test_ollama_templates import FAMILY_TEMPLATES, FIXTURES, SPECIAL

CONFIGS = {"qwen3": "Qwen3Config", "gemma": "Gemma3TextConfig", "mistral": "MistralConfig", "phi4": "Phi3Config"}


def tiny_model(family: str, vocab: int):
    import torch
    import transformers

    torch.manual_seed(0)
    config = getattr(transformers, CONFIGS[family])(
        vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=16, max_position_embeddings=256, pad_token_id=0)
    return transformers.AutoModelForCausalLM.from_config(config).eval()


@pytest.mark.slow
@pytest.mark.parametrize("family", list(FAMILY_TEMPLATES))
def test_the_answer_and_its_end_of_turn_are_scored_on_every_family(family, tokenizer_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    tok.chat_template = (FIXTURES / FAMILY_TEMPLATES[family]).read_text()
    tok.bos_token, tok.eos_token = SPECIAL[family]
    model = tiny_model(family, len(tok))
    answer = "Paris is the capital."
    # Mistral v0.3's template writes the system text only into a user turn that ends the
    # conversation, so a conversation ending in its answer renders without it and the reply's
    # prefix is not stable: ftui refuses it with advice (RenderError), left to the masks' owner.
    system = "" if family == "mistral" else "Be brief."
    conversation = with_system_prompt(
        Conversation((Message("user", "Capital of France?"), Message("assistant", answer)), 0), system)
    alone = answer_nll(model, tok, [[{"role": "user", "content": "Capital of France?"},
                                     {"role": "assistant", "content": answer}]])
    with_system = answer_nll(model, tok, [conversation])
    assert math.isfinite(with_system.mean) and with_system.mean > 0
    # The system text is prompt, however the template places it (Gemma's first turn, Mistral's last).
    assert with_system.tokens == alone.tokens
    answer_tokens = len(tok(answer, add_special_tokens=False)["input_ids"])
    assert answer_tokens < alone.tokens <= answer_tokens + 12  # the answer and its end-of-turn markup


def test_a_thinking_reply_is_scored_on_its_answer():
    prompts = [GeneralPrompt((Message("user", "Capital of France?"),), "Paris", "fact", 1)]
    base = [answer_only("<think>\nIt is Paris, clearly.\n</think>\n\nParis.")]
    tuned = [answer_only("<think>\nParis? Or Lyon. The answer must be")]  # cut mid-thought
    assert answer_matches(base[0], "Paris") and not answer_matches(tuned[0], "Paris")
    scores = exact_retention(prompts, base, tuned)
    assert (scores.base_right, scores.tuned_kept) == (1, 0)
