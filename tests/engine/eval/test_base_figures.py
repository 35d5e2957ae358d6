"""The base model's likelihood figures are measured once per base model and scored tokens: a second
evaluation on the same base reads them from the cache, and different inputs are measured anew."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from engine.config.schema import RunConfig
from engine.data.types import Conversation, Message
from engine.infer.base_answers import base_figures
from tests.engine.eval.test_nll import TEMPLATE
from tests.engine.train.tiny import make_model_folder


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FTUI_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "base-figures"


def test_figures_are_computed_once_per_base_and_inputs(cache):
    calls: list[str] = []

    def compute(tag):
        def run():
            calls.append(tag)
            return [1.5, None]
        return run

    assert base_figures("base-a", [[1, 2, 3]], compute("first")) == [1.5, None]
    assert base_figures("base-a", [[1, 2, 3]], compute("again")) == [1.5, None]
    base_figures("base-a", [[1, 2, 4]], compute("other tokens"))
    base_figures("base-b", [[1, 2, 3]], compute("other base"))
    assert calls == ["first", "other tokens", "other base"]

    for path in cache.iterdir():
        path.write_text("{not json")
    base_figures("base-a", [[1, 2, 3]], compute("after damage"))
    assert calls[-1] == "after damage"


def test_a_second_evaluation_reads_the_base_figures_from_the_cache(tmp_path, cache, monkeypatch):
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from engine.eval.evaluate import _hf_measures
    from engine.eval.retention import mean_token_nll
    from engine.train.methods import cpu_has_native_bf16

    folder = make_model_folder(tmp_path / "tiny")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.chat_template = TEMPLATE
    tokenizer.save_pretrained(folder)
    tuned = get_peft_model(AutoModelForCausalLM.from_pretrained(folder), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    for name, p in tuned.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0, 0.5)
    tuned.save_pretrained(tmp_path / "adapter")
    general = [Conversation((Message("user", f"t{5 + i} t{9 + i}"), Message("assistant", f"t{20 + i} t{30 + i}")), 0)
               for i in range(6)]
    source = SimpleNamespace(config=RunConfig(dataset="unused.jsonl", val_split=0.0), tokenizer_ref=str(folder),
                             base_ref=str(folder), origin_ref=str(folder), weights=tmp_path / "adapter")

    _, _, _, base_nll, tuned_nll = _hf_measures(source, general, lambda e: None)
    plain = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    chats = [[{"role": m.role, "content": m.content} for m in c.messages] for c in general]
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cpu_has_native_bf16()):  # as the measures run
        assert base_nll == pytest.approx(mean_token_nll(plain, tokenizer, chats), abs=1e-5)
    assert tuned_nll != pytest.approx(base_nll, abs=1e-3)

    def measured_again(*_args, **_kwargs):
        raise AssertionError("the base figures were measured again")

    monkeypatch.setattr(PeftModel, "disable_adapter", measured_again)
    again = _hf_measures(source, general, lambda e: None)
    assert again[3] == base_nll and again[4] == pytest.approx(tuned_nll, abs=1e-6)


@pytest.mark.parametrize("emulated", [False, True], ids=["ampere", "turing-emulates-bf16"])
def test_on_a_gpu_the_measures_load_in_16_bits_on_the_gpu(tmp_path, cache, monkeypatch, emulated):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from engine.eval.evaluate import _hf_measures, measure_placement

    assert measure_placement(False, False) == (torch.float32, {}, None)
    assert measure_placement(False, True) == (torch.float32, {}, torch.bfloat16)
    assert measure_placement(True, True) == (torch.bfloat16, {"device_map": {"": 0}}, None)
    assert measure_placement(True, False) == (torch.float16, {"device_map": {"": 0}}, None)

    folder = make_model_folder(tmp_path / "tiny")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.chat_template = TEMPLATE
    tokenizer.save_pretrained(folder)
    loads: list[dict] = []
    real = AutoModelForCausalLM.from_pretrained

    def on_a_fake_gpu(ref, **kwargs):
        loads.append(dict(kwargs))
        kwargs.pop("device_map")  # no GPU here: the model stays on the CPU, in the dtype asked
        return real(ref, **kwargs)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    # A T4 or V100 answers yes only when emulation counts: there fp16 is the 16-bit type.
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation or not emulated)
    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", on_a_fake_gpu)
    general = [Conversation((Message("user", "t5 t9"), Message("assistant", "t20 t30")), 0)]
    source = SimpleNamespace(config=RunConfig(dataset="unused.jsonl", val_split=0.0, method="full"),
                             tokenizer_ref=str(folder), base_ref=None, origin_ref=str(folder), weights=folder)
    _, _, _, base_nll, tuned_nll = _hf_measures(source, general, lambda e: None)
    half = torch.float16 if emulated else torch.bfloat16
    assert [(k["dtype"], k["device_map"]) for k in loads] == [(half, {"": 0})] * 2  # tuned, then base
    assert base_nll == pytest.approx(tuned_nll)  # the same weights
