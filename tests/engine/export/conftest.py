"""Tiny real models laid out like run directories, with the embedded SmolLM2 tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.config.schema import RunConfig
from tests.engine.models.tiny import FAMILIES, build

LLAMA3_ROPE = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 64}


@pytest.fixture(scope="session")
def embedded_dir() -> Path:
    """The converted embedded SmolLM2 folder (converted once into the user cache)."""
    from engine.models.embedded import ensure_embedded_model

    return ensure_embedded_model()


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory, embedded_dir) -> Path:
    from transformers import AutoTokenizer

    out = tmp_path_factory.mktemp("smollm2-tokenizer")
    AutoTokenizer.from_pretrained(embedded_dir).save_pretrained(out)
    return out


def make_tiny_model(folder: Path, tokenizer_dir: Path, *, rope_scaling: dict | None = None, tied: bool = True,
                    seed: int = 0, init_std: float = 0.02) -> Path:
    """A 2-layer Llama with the SmolLM2 vocabulary, saved with its tokenizer."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(seed)
    config = LlamaConfig(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, intermediate_size=128,
        vocab_size=len(tokenizer), max_position_embeddings=512, bos_token_id=1, eos_token_id=2,
        tie_word_embeddings=tied, rope_scaling=rope_scaling, rope_theta=10000.0, initializer_range=init_std,
    )
    model = LlamaForCausalLM(config).eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def make_run(run_dir: Path, base_dir: Path, *, system_prompt: str = "", seed: int = 1) -> Path:
    """A run directory as the trainer leaves it: config.toml, run.json, adapter/, tokenizer/."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(base_dir)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                      init_lora_weights=False)  # non-zero B: the merge must visibly change the model
    get_peft_model(base, lora).save_pretrained(run_dir / "adapter")
    AutoTokenizer.from_pretrained(base_dir).save_pretrained(run_dir / "tokenizer")
    config = RunConfig(name="tiny", model=str(base_dir), system_prompt=system_prompt, output_dir=str(run_dir.parent))
    (run_dir / "config.toml").write_text(config.to_toml(), encoding="utf-8")
    (run_dir / "run.json").write_text(json.dumps({
        "status": "finished", "name": "tiny", "model": str(base_dir), "model_ref": str(base_dir),
        "base_model_ref": str(base_dir), "method": "lora", "step": 4, "total_steps": 4}), encoding="utf-8")
    return run_dir


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tokenizer_dir) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    base = make_tiny_model(root / "base", tokenizer_dir)
    return make_run(root / "runs" / "2026-01-01-0000-tiny", base, system_prompt="You answer in one line.")


@pytest.fixture(scope="session")
def family_folders(tmp_path_factory) -> dict[str, Path]:
    """Each family's tiny model, built once a session (a few seconds each)."""
    root = tmp_path_factory.mktemp("families")
    return {family: build(root / family, family) for family in FAMILIES}
