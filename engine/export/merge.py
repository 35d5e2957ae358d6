"""Fold a run's adapter into 16-bit base weights and save a plain HF folder.

QLoRA adapters are merged into the 16-bit base named in run.json (`base_model_ref`), never
into dequantised 4-bit weights: those carry the 4-bit rounding error into every layer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.config.schema import RunConfig
from engine.errors import ActionableError
from engine.events import EventSink, Progress, ignore
from engine.export.artefacts import finish_merged
from engine.files.atomic import atomic_dir
from engine.runs import RunReadError, config_path, read_config, read_record, tokenizer_dir, weights_dir


class MergeError(ActionableError):
    """A run that cannot be merged: not a run, no weights, or a base that does not load."""


@dataclass(frozen=True)
class RunSource:
    """What export needs from a run directory."""

    run_dir: Path
    config: RunConfig
    method: str
    weights: Path
    """adapter/ (PEFT) or model/ (full fine-tuning)."""
    base_ref: str | None
    """16-bit base to merge into; None for full fine-tuning."""
    tokenizer_ref: str
    origin_ref: str
    """The model the run started from (for full fine-tuning, the "before" of an evaluation)."""


def read_run_source(run_dir: Path, trust_remote_code: bool = False) -> RunSource:
    """What a run exports from; refused when its config turns repository code on and
    `trust_remote_code` (the user's own word for this command) does not."""
    from engine.models.errors import ModelLoadError
    from engine.models.safety import check_run_code_consent

    run_dir = Path(run_dir)
    if not config_path(run_dir).is_file():
        raise MergeError(f"{run_dir} is not a run directory (no config.toml)",
                         "pass a folder under runs/, e.g. `ftui export runs/<date>-<name>`")
    config = read_config(run_dir)
    try:
        check_run_code_consent(run_dir, config.model, config.trust_remote_code, trust_remote_code)
    except ModelLoadError as exc:
        raise MergeError(exc.reason, exc.advice) from None
    try:
        record = read_record(run_dir)
        method, origin, base = record.method, record.model_ref, record.base_model_ref
    except RunReadError:
        method, origin, base = config.method, config.model, config.model
    tokenizer_ref = str(tokenizer_dir(run_dir)) if tokenizer_dir(run_dir).is_dir() else ""
    weights = weights_dir(run_dir, method)
    if method == "full":
        if not (weights / "config.json").is_file():
            raise MergeError(f"{weights} holds no model", "the run has not finished; export a finished run")
        return RunSource(run_dir, config, method, weights, None, tokenizer_ref or str(weights), origin)
    if not (weights / "adapter_config.json").is_file():
        raise MergeError(f"{weights} holds no adapter (adapter_config.json)",
                         "the run has not saved its adapter yet; export a finished or stopped run")
    return RunSource(run_dir, config, method, weights, base, tokenizer_ref or base, origin)


def base_config_dir(ref: str) -> Path:
    """The folder holding the base model's config.json (local, or the hub cache)."""
    if Path(ref).is_dir():
        return Path(ref)
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(ref, "config.json")).parent
    except Exception as exc:  # noqa: BLE001 - the hub raises many types for one meaning here
        raise MergeError(f"cannot read the base model {ref!r}: {exc}",
                         "the base model must be in the local Hugging Face cache or reachable") from exc


def check_not_4bit(config_dir: Path, ref: str) -> None:
    cfg = json.loads((config_dir / "config.json").read_text(encoding="utf-8"))
    if cfg.get("quantization_config"):
        raise MergeError(
            f"the base {ref!r} is a pre-quantised 4-bit model; merging into it would bake in 4-bit error",
            "train from a catalog 4-bit entry (which names its 16-bit weights) or set model to the 16-bit repo")


def merge(source: RunSource, merged_dir: Path, on_event: EventSink = ignore) -> tuple[Any, Any]:
    """Write merged_dir (safetensors, tokenizer, chat template, a model card; configs that transformers
    4.x loads too); return the float32 model and tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    trust = source.config.trust_remote_code
    on_event(Progress("merge", 0, 3, "steps", "loading base weights"))
    if source.base_ref is None:
        model = AutoModelForCausalLM.from_pretrained(source.weights, dtype=torch.float32, trust_remote_code=trust)
        save_dtype = _declared_dtype(source.weights)
    else:
        config_dir = base_config_dir(source.base_ref)
        check_not_4bit(config_dir, source.base_ref)
        from peft import PeftModel

        base = AutoModelForCausalLM.from_pretrained(source.base_ref, dtype=torch.float32, trust_remote_code=trust)
        on_event(Progress("merge", 1, 3, "steps", "merging the adapter"))
        model = PeftModel.from_pretrained(base, str(source.weights)).merge_and_unload()
        save_dtype = _declared_dtype(config_dir)
    tokenizer = AutoTokenizer.from_pretrained(source.tokenizer_ref, trust_remote_code=trust)
    model.eval()
    on_event(Progress("merge", 2, 3, "steps", f"saving {merged_dir.name}/ as {save_dtype}"))
    with atomic_dir(merged_dir) as tmp:
        # Saved in the base's own precision; the float32 copy returned is what was saved.
        model.to(save_dtype).save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        _keep_sentencepiece_model(tokenizer, source, tmp)
        finish_merged(tmp, source)
    model.to(torch.float32)
    on_event(Progress("merge", 3, 3, "steps", "merged"))
    return model, tokenizer


def _keep_sentencepiece_model(tokenizer: Any, source: RunSource, folder: Path) -> None:
    """tokenizer.model beside the merged weights when the model has one: transformers 5 does not
    save it, and llama.cpp's converter reads Gemma's and Mistral's vocabulary from it."""
    import shutil

    if (folder / "tokenizer.model").is_file():
        return
    places = [Path(p) for p in (getattr(tokenizer, "vocab_file", None), Path(source.tokenizer_ref) / "tokenizer.model")
              if p]
    if source.base_ref is not None:  # a local folder, or the hub cache's copy of the base
        places.append(base_config_dir(source.base_ref) / "tokenizer.model")
    for place in places:
        if place.name == "tokenizer.model" and place.is_file():
            shutil.copyfile(place, folder / "tokenizer.model")
            return


def _declared_dtype(config_dir: Path) -> Any:
    import torch

    cfg = json.loads((Path(config_dir) / "config.json").read_text(encoding="utf-8"))
    name = cfg.get("dtype") or cfg.get("torch_dtype") or "float32"
    return {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(str(name), torch.float32)
