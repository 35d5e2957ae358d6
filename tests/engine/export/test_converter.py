"""Which converter a family's folder gets, and what a user sees when llama.cpp's is missing."""

from __future__ import annotations

import json

import pytest

from engine.export.gguf_writer import UnsupportedModel, pre_tokenizer_name
from engine.export.hf_converter import ConverterMissing, converter_dir, llama_cpp_version
from engine.export.to_gguf import LLAMA_CPP_CONVERTER, OWN_WRITER, check_convertible
from tests.engine.models.tiny import FAMILIES, O200K_SPLIT, QWEN2_SPLIT


def _folder(tmp_path, architecture, model_type):
    folder = tmp_path / model_type
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architectures": [architecture], "model_type": model_type}))
    return folder


def test_the_converter_is_the_one_of_the_installed_llama_cpp_python(monkeypatch):
    monkeypatch.delenv("FTUI_LLAMA_CONVERT", raising=False)
    assert converter_dir().name == llama_cpp_version() is not None
    assert converter_dir().parent.name == "llama-convert"


@pytest.mark.parametrize(("architecture", "model_type"), [
    ("Qwen3ForCausalLM", "qwen3"), ("Gemma3ForCausalLM", "gemma3_text"), ("MistralForCausalLM", "mistral"),
    ("Phi3ForCausalLM", "phi3"), ("Gemma3ForConditionalGeneration", "gemma3")])
def test_other_families_go_to_llama_cpp_and_say_how_to_get_it_when_missing(tmp_path, monkeypatch, architecture,
                                                                           model_type):
    folder = _folder(tmp_path, architecture, model_type)
    monkeypatch.setenv("FTUI_LLAMA_CONVERT", str(tmp_path / "absent"))
    with pytest.raises(ConverterMissing) as missing:
        check_convertible(folder)
    assert "missing convert_hf_to_gguf.py" in missing.value.reason
    assert missing.value.advice.startswith("run `make converter`")
    monkeypatch.delenv("FTUI_LLAMA_CONVERT")
    assert check_convertible(folder) == LLAMA_CPP_CONVERTER


def test_llama_stays_with_ftuis_writer_and_other_architectures_are_refused_naming_the_supported(tmp_path,
                                                                                                embedded_dir):
    assert check_convertible(embedded_dir) == OWN_WRITER
    with pytest.raises(UnsupportedModel, match="GPT2LMHeadModel is not supported for GGUF export; supported: "
                                               "LlamaForCausalLM, Qwen3ForCausalLM, Gemma3ForCausalLM"):
        check_convertible(_folder(tmp_path, "GPT2LMHeadModel", "gpt2"))


@pytest.mark.parametrize(("split", "name"), [(QWEN2_SPLIT, "qwen2"), (O200K_SPLIT, "gpt-4o")])
def test_a_vocabulary_llama_cpp_does_not_know_gets_the_pre_tokenizer_its_rules_name(tmp_path, split, name):
    data = {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": split}}, {"type": "ByteLevel", "use_regex": False}]}}
    (tmp_path / "tokenizer.json").write_text(json.dumps(data))
    assert pre_tokenizer_name(tmp_path) == name


def test_families_are_the_catalogs():
    from engine.hardware.catalog import load_catalog

    assert {s.architecture for s in load_catalog()} - {"llama", "gemma3"} == set(FAMILIES)


def test_a_phi_4_mini_run_named_phi3_still_loads(tmp_path):
    # llama.cpp fails to load a Phi-3-architecture file named "...phi3..." whose vocabulary lacks </s>.
    from engine.export.hf_converter import loadable_name

    folder = _folder(tmp_path, "Phi3ForCausalLM", "phi3")
    assert loadable_name("my-Phi3-run, phi-3 too", folder) == "my-Phi 3-run, phi 3 too"
    (folder / "tokenizer.model").write_bytes(b"")  # Phi-3 itself (SentencePiece) has </s>: left alone
    assert loadable_name("phi3", folder) == "phi3"
    assert loadable_name("phi3", _folder(tmp_path, "Qwen3ForCausalLM", "qwen3")) == "phi3"
