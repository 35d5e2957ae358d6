"""End to end on the embedded SmolLM2: merge, F16 + Q8_0, verification, then chat with the result."""

from __future__ import annotations

import json
from unittest.mock import patch

import pytest

from engine.config.schema import RunConfig
from engine.export import export
from engine.infer.chat import ChatSession

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def embedded_export(tmp_path_factory, embedded_dir):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = tmp_path_factory.mktemp("runs") / "2026-01-01-0000-demo"
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(embedded_dir, dtype=torch.float32)
    # Default LoRA init: B = 0, so the tuned model still answers (and stops) like the instruct model.
    get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"])).save_pretrained(
        run / "adapter")
    AutoTokenizer.from_pretrained(embedded_dir).save_pretrained(run / "tokenizer")
    (run / "config.toml").write_text(RunConfig(name="demo").to_toml())
    (run / "run.json").write_text(json.dumps({"status": "finished", "method": "lora", "model": "smollm2-135m",
                                              "model_ref": str(embedded_dir), "base_model_ref": str(embedded_dir)}))
    return export(run, quants=("Q8_0",))


def test_embedded_export_is_verified(embedded_export):
    result = embedded_export
    assert result.passed, [c.problems for c in result.checks]
    f16, q8 = result.checks
    assert f16.argmax_agreement >= 0.95 and f16.token_ids_match
    assert q8.argmax_agreement >= 0.8 and q8.stops_at_end_of_turn
    modelfile = (result.out_dir and open(f"{result.out_dir}/Modelfile").read())
    assert "FROM ./model-Q8_0.gguf" in modelfile and 'PARAMETER stop "<|im_end|>"' in modelfile


def test_chat_streams_keeps_history_resets_and_closes(embedded_export):
    chat = ChatSession(embedded_export.gguf("Q8_0"), system_prompt="Answer in one short sentence.",
                       temperature=0.0, max_tokens=48)
    try:
        assert chat.family == "chatml" and chat.stops == ("<|im_start|>", "<|im_end|>")  # SmolLM2's, as its Modelfile
        pieces = list(chat.send("What is the capital of France?"))
        assert len(pieces) > 1 and "Paris" in "".join(pieces)
        assert chat.history == [{"role": "user", "content": "What is the capital of France?"},
                                {"role": "assistant", "content": "".join(pieces)}]
        follow_up = "".join(chat.send("Repeat the city you just named."))
        assert "Paris" in follow_up and len(chat.history) == 4
        chat.reset()
        assert chat.history == []
    finally:
        chat.close()
    with pytest.raises(RuntimeError, match="closed"):
        next(chat.send("hello"))


def test_batched_replies_equal_the_chats_one_at_a_time(embedded_export):
    questions = ["What is the capital of France?", "What is 7 times 8?", "Name a primary colour.",
                 "Translate 'thank you' into Spanish.", "Write a haiku about rain.", "Who wrote Hamlet?",
                 "What is the boiling point of water in Celsius?", "Say hello in French."]
    chat = ChatSession(embedded_export.gguf("Q8_0"), system_prompt="Answer in one short sentence.",
                       temperature=0.0, max_tokens=24)
    try:
        one_at_a_time = []
        for question in questions:
            chat.reset()
            one_at_a_time.append("".join(chat.send(question)).strip())
        finished: list[int] = []
        with patch("engine.infer.greedy_batch.SLOTS", 3):  # fewer slots than prompts: freed slots take the next
            batched = chat.complete_all([[{"role": "user", "content": q}] for q in questions],
                                        lambda index, text, ended: finished.append(index))
    finally:
        chat.close()
    assert [text for text, _ in batched] == one_at_a_time
    assert sorted(finished) == list(range(len(questions)))
    cut = [ended for _, ended in batched]
    assert True in cut and False in cut  # the haiku runs into the 24-token limit; short answers end themselves


def test_a_batch_llama_cpp_cannot_decode_is_named_with_advice(embedded_export, monkeypatch):
    import llama_cpp

    from engine.infer.greedy_batch import BatchDecodeError

    monkeypatch.setattr(llama_cpp, "llama_decode", lambda ctx, batch: 1)  # llama.cpp's "no room in the cache"
    with ChatSession(embedded_export.gguf("Q8_0"), temperature=0.0, max_tokens=8) as chat:
        with pytest.raises(BatchDecodeError) as raised:
            chat.complete_all([[{"role": "user", "content": "Hello?"}], [{"role": "user", "content": "Hi?"}]])
    assert "could not decode a batch of" in raised.value.reason and "2 greedy replies" in raised.value.reason
    assert "shorten the longest prompts" in raised.value.advice
