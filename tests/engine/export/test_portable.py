"""Artefacts other machines and tools load: transformers 4.x-compatible configs, adapters naming
their base as a hub id, the tokenizer in adapter/, model cards, GGUF general.* keys, file modes.

transformers 4.57 itself is not installed here; `bench/portable_artefacts.py` loads the same
folders in a separate environment with it and compares logits (figures in docs/benchmarks.md).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest
import torch

from engine.config.schema import RunConfig
from engine.export.card import EMBEDDED_NOTE, model_card
from engine.export.gguf_writer import write_gguf
from engine.export.portable import PORTABLE_TOKENIZER_CLASS, BaseModel, base_model, make_model_portable
from engine.files.atomic import atomic_dir, umask, write_text_atomic

from .conftest import LLAMA3_ROPE, make_tiny_model

REVISION = "a" * 40


@pytest.fixture
def tiny_llama3(tmp_path, tokenizer_dir) -> Path:
    return make_tiny_model(tmp_path / "m", tokenizer_dir, rope_scaling=LLAMA3_ROPE)


@pytest.mark.slow
def test_merged_config_carries_rope_theta_and_a_tokenizer_class_both_versions_know(tiny_llama3, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    before = json.loads((tiny_llama3 / "config.json").read_text())
    assert "rope_theta" not in before and before["rope_parameters"]["rope_theta"] == 10000.0  # what 4.57 misreads
    ids = torch.tensor([[1, 520, 9531, 198, 34, 35, 2]])
    want = AutoModelForCausalLM.from_pretrained(tiny_llama3).eval()(ids).logits
    want_ids = AutoTokenizer.from_pretrained(tiny_llama3)("12 + 3.5 <|im_end|>").input_ids

    make_model_portable(tiny_llama3)
    cfg = json.loads((tiny_llama3 / "config.json").read_text())
    assert cfg["rope_theta"] == 10000.0 and cfg["rope_parameters"] == before["rope_parameters"]
    assert cfg["rope_scaling"] == {k: v for k, v in before["rope_parameters"].items() if k != "rope_theta"}
    assert cfg["torch_dtype"] == cfg["dtype"]
    tok_cfg = json.loads((tiny_llama3 / "tokenizer_config.json").read_text())
    assert tok_cfg["tokenizer_class"] == PORTABLE_TOKENIZER_CLASS
    assert tok_cfg["chat_template"] == (tiny_llama3 / "chat_template.jinja").read_text()
    # transformers 5 still loads it to the same model and tokenizer.
    got = AutoModelForCausalLM.from_pretrained(tiny_llama3).eval()(ids).logits
    assert torch.equal(got, want)
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama3)
    assert tokenizer("12 + 3.5 <|im_end|>").input_ids == want_ids
    assert tokenizer.chat_template == (tiny_llama3 / "chat_template.jinja").read_text()


def test_base_model_names_the_hub_repository_and_revision(tmp_path, embedded_dir):
    snapshot = tmp_path / "hub" / "models--HuggingFaceTB--SmolLM2-360M-Instruct" / "snapshots" / REVISION
    snapshot.mkdir(parents=True)
    assert base_model(str(snapshot)) == BaseModel("HuggingFaceTB/SmolLM2-360M-Instruct", REVISION)
    assert base_model(str(embedded_dir)) == BaseModel("HuggingFaceTB/SmolLM2-135M-Instruct", None, True)
    assert base_model("meta-llama/Llama-3.2-1B-Instruct") == BaseModel("meta-llama/Llama-3.2-1B-Instruct")
    local = base_model(str(tmp_path))
    assert local == BaseModel(str(tmp_path)) and not local.on_hub


def _trained_run(tmp_path, base_dir: Path, base_ref: str, tokenizer_dir: Path, method: str = "lora"):
    """A run directory as the trainer writes it, up to save_weights."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from engine.runs import RunDir
    from engine.train.checkpoint import save_tokenizer

    config = RunConfig(name="tiny", model=base_ref, method=method, output_dir=str(tmp_path / "runs"),
                       dataset="HuggingFaceH4/ultrachat_200k", dataset_split="train_sft")
    run = RunDir.create(config, base_ref, base_ref)
    save_tokenizer(run, AutoTokenizer.from_pretrained(tokenizer_dir))
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    if method != "full":
        model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    return run, model


@pytest.mark.slow
def test_adapter_names_its_hub_base_and_carries_the_tokenizer(tmp_path, tokenizer_dir):
    from transformers import AutoTokenizer

    from engine.train.checkpoint import save_weights

    snapshot = tmp_path / "hub" / "models--someone--tiny-llama" / "snapshots" / REVISION
    make_tiny_model(snapshot, tokenizer_dir)
    run, model = _trained_run(tmp_path, snapshot, str(snapshot), tokenizer_dir)
    adapter = save_weights(run, model, "lora")
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    assert (cfg["base_model_name_or_path"], cfg["revision"]) == ("someone/tiny-llama", REVISION)
    tokenizer = AutoTokenizer.from_pretrained(adapter)
    assert tokenizer.chat_template and type(tokenizer).__name__ in ("TokenizersBackend", PORTABLE_TOKENIZER_CLASS)
    card = (adapter / "README.md").read_text()
    assert card.startswith("---\nbase_model: someone/tiny-llama\nlibrary_name: peft\n")
    assert "datasets:\n- HuggingFaceH4/ultrachat_200k\n" in card and "(split `train_sft`)" in card
    assert f"at revision `{REVISION}`" in card and "| lora_r | 16 |" in card


@pytest.mark.slow
def test_embedded_base_gets_its_hub_id_and_a_card_that_says_it_is_dequantised(tmp_path, tokenizer_dir, embedded_dir):
    from engine.train.checkpoint import save_weights

    base = make_tiny_model(tmp_path / "tiny", tokenizer_dir)
    run, model = _trained_run(tmp_path, base, str(embedded_dir), tokenizer_dir)
    adapter = save_weights(run, model, "lora")
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] == \
        "HuggingFaceTB/SmolLM2-135M-Instruct"
    card = (adapter / "README.md").read_text()
    assert EMBEDDED_NOTE in card and "dequantised from the Q4_1 GGUF" in card


@pytest.mark.slow
def test_full_fine_tuning_model_folder_is_portable(tmp_path, tokenizer_dir):
    from engine.train.checkpoint import save_weights

    base = make_tiny_model(tmp_path / "tiny", tokenizer_dir)
    run, model = _trained_run(tmp_path, base, str(base), tokenizer_dir, method="full")
    folder = save_weights(run, model, "full")
    assert json.loads((folder / "config.json").read_text())["rope_theta"] == 10000.0
    assert (folder / "tokenizer.json").is_file() and (folder / "README.md").is_file()


def test_card_shows_eval_and_retention_figures():
    evaluation = {"quant": "Q8_0", "items": [{}] * 43, "base_score": 0.0, "tuned_score": 0.372,
                  "base_val_loss": 2.906, "tuned_val_loss": 0.341,
                  "retention": {"exact": {"scored": 20, "base_right": 15, "tuned_right": 14, "tuned_kept": 13,
                                          "share": 0.8667},
                                "base_collapse": 0.0, "tuned_collapse": 0.05, "nll_increase": 0.12,
                                "findings": [{"message": "13 of 15 general answers kept", "advice": "x"}]}}
    card = model_card("gguf", RunConfig(name="demo"), BaseModel("HuggingFaceTB/SmolLM2-135M-Instruct", None, True),
                      {"step": 40, "total_steps": 40, "status": "finished", "best_val_loss": 0.341}, evaluation,
                      ["model-Q8_0.gguf", "Modelfile"])
    assert "| held-out prompts answered as expected (43, Q8_0) | 0% | 37% |" in card
    assert "| validation loss | 2.9060 | 0.3410 |" in card
    assert "| general prompts right (20) | 15 | 14 |" in card and "| retention (base's right answers kept) | | 87% |" in card
    assert "- 13 of 15 general answers kept" in card and "tags:\n- ftui\n- sft\n- gguf\n" in card
    assert "`model-Q8_0.gguf`" in card


@pytest.mark.slow
def test_gguf_general_keys_name_base_run_and_size(tmp_path, tokenizer_dir):
    import gguf

    folder = make_tiny_model(tmp_path / "merged", tokenizer_dir)
    (folder / "README.md").write_text(model_card(
        "merged", RunConfig(name="demo"), BaseModel("HuggingFaceTB/SmolLM2-135M-Instruct", None, True)))
    path = write_gguf(folder, tmp_path / "m.gguf", name="demo")
    reader = gguf.GGUFReader(path)

    def field(key):
        value = reader.fields[key]
        return value.contents()

    assert field("general.name") == "SmolLM2 135M Instruct (demo)"
    assert (field("general.basename"), field("general.finetune"), field("general.size_label")) == (
        "SmolLM2", "demo", "3.2M")  # counted: the tiny model, not the name's 135M
    assert field("general.base_model.count") == 1
    assert field("general.base_model.0.repo_url") == "https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct"
    assert field("general.base_model.0.organization") == "HuggingFaceTB"


@pytest.mark.slow
def test_gguf_without_a_hub_base_is_named_by_the_run_with_a_measured_size(tmp_path, tokenizer_dir):
    import gguf

    folder = make_tiny_model(tmp_path / "merged", tokenizer_dir)
    reader = gguf.GGUFReader(write_gguf(folder, tmp_path / "m.gguf", name="demo"))
    assert reader.fields["general.name"].contents() == "demo"
    assert reader.fields["general.size_label"].contents().endswith("M")
    assert "general.base_model.count" not in reader.fields


@pytest.mark.parametrize("mask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700),
                                                        (0o002, 0o664, 0o775)])
def test_atomic_files_follow_the_umask(tmp_path, mask, file_mode, dir_mode):
    old = os.umask(mask)
    try:
        assert umask() == mask
        write_text_atomic(tmp_path / "f.txt", "x")
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "inner.txt").write_text("y")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == file_mode
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == dir_mode
    assert stat.S_IMODE((tmp_path / "d" / "inner.txt").stat().st_mode) == file_mode


@pytest.mark.slow
def test_exported_files_are_not_private(tiny_run, tmp_path):
    from engine.export import export

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    old = os.umask(0o022)
    try:
        result = export(run, quants=("F16",))
    finally:
        os.umask(old)
    assert result.passed
    for path in [*result.files, *result.modelfiles, f"{result.merged_dir}/model.safetensors"]:
        assert stat.S_IMODE(Path(path).stat().st_mode) == 0o644, path
    merged = Path(result.merged_dir)
    assert (merged / "README.md").is_file() and "rope_theta" in json.loads((merged / "config.json").read_text())
