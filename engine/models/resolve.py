"""What the user typed (a catalog id, a hub id or a folder) turned into a local folder that loads.

The embedded model is converted on first use, hub models are downloaded into the HF cache,
folders are checked, and the result says whether the weights are already 4-bit and which 16-bit
weights an adapter is merged into at export.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.events import EventSink, ignore
from engine.hardware.catalog import ModelSpec, find, get, load_catalog
from engine.models.errors import ModelLoadError, did_you_mean
from engine.models.hub import download
from engine.models.safety import check_remote_code, check_weights

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class ResolvedModel:
    ref: str
    """A local folder to pass to `from_pretrained` (hub models are downloaded into the HF cache first)."""
    spec: ModelSpec | None
    """The catalog entry, when the model is one ftui knows."""
    prequantized_4bit: bool
    """The weights are already bitsandbytes 4-bit (a `*-bnb-4bit` repository)."""
    base_16bit_ref: str | None
    """The 16-bit weights an adapter is merged into for export (a hub id or folder); None if unknown."""
    trust_remote_code: bool = False
    """The user allowed this model's own Python code to run."""
    source: str = "local"
    """"embedded", "hub" or "local": where `ref` came from."""
    hub_id: str | None = None
    """The repository `ref` was downloaded from, for display and run records."""

    @property
    def name(self) -> str:
        return self.spec.id if self.spec else (self.hub_id or self.ref)


def resolve_model(model: str, on_event: EventSink = ignore, trust_remote_code: bool = False) -> ResolvedModel:
    """Turn what the user typed into a local folder that loads, downloading or converting once.

    Progress events: stage "convert embedded model" on the first use of the embedded model,
    stage "download model" (unit "B") while a hub repository is fetched.
    """
    text = model.strip()
    if not text:
        raise ModelLoadError("No model given.", f"Pick one of: {', '.join(s.id for s in load_catalog())}.")
    path = Path(text).expanduser()
    if path.exists():
        return _resolve_folder(path, trust_remote_code)
    spec = find(text)
    if spec is not None and spec.source == "embedded":
        # Imported here, not at the top: engine.models.embedded imports engine.models.errors, which runs
        # this package's __init__ and so this module, before engine.models.embedded has its names.
        from engine.models.embedded import ensure_embedded_model

        folder = ensure_embedded_model(on_event)
        return ResolvedModel(str(folder), spec, False, str(folder), trust_remote_code, "embedded", spec.hub_id)
    if spec is not None:
        repo = text if "/" in text else spec.hub_id
        return _resolve_hub(repo, spec, on_event, trust_remote_code)
    if text.startswith(("/", ".", "~")) or text.count("/") > 1:
        raise ModelLoadError(f"No model folder at {path}.", "Check the path, or give a catalog id or a hub id.")
    if _HUB_ID.match(text):
        return _resolve_hub(text, None, on_event, trust_remote_code)
    raise ModelLoadError(
        f"{text!r} is neither a catalog id, a hub id (owner/name) nor a model folder.{did_you_mean(text)}",
        f"Catalog ids: {', '.join(s.id for s in load_catalog())}.",
    )


def _resolve_folder(path: Path, trust_remote_code: bool) -> ResolvedModel:
    from engine.models.embedded import embedded_model_dir

    folder = path.resolve()
    if not folder.is_dir():
        hint = " A .gguf is for chat; training needs a Hugging Face folder." if folder.suffix == ".gguf" else ""
        raise ModelLoadError(f"{folder} is a file, not a model folder.{hint}", "Give the folder that holds config.json.")
    config = _read_config(folder)
    check_weights([p.name for p in folder.iterdir() if p.is_file()], str(folder))
    check_remote_code(config, str(folder), trust_remote_code)
    embedded = folder == embedded_model_dir().resolve()
    spec = find("smollm2-135m") if embedded else None
    four_bit = _is_bnb_4bit(config)
    return ResolvedModel(
        str(folder), spec, four_bit, None if four_bit else str(folder), trust_remote_code,
        "embedded" if embedded else "local",
    )


def _read_config(folder: Path) -> dict[str, Any]:
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise ModelLoadError(
            f"{folder} has no config.json, so it is not a Hugging Face model folder.",
            "Give the folder written by save_pretrained (or a run's model/ or merged/ folder).",
        )
    try:
        return json.loads(config_path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ModelLoadError(f"{config_path} is not valid JSON: {exc}.", "Restore the file from its source.") from None


def _is_bnb_4bit(config: dict[str, Any]) -> bool:
    quant = config.get("quantization_config") or {}
    return quant.get("quant_method") == "bitsandbytes" and bool(quant.get("load_in_4bit"))


def _resolve_hub(repo: str, spec: ModelSpec | None, on_event: EventSink, trust_remote_code: bool) -> ResolvedModel:
    folder = Path(download(repo, on_event, spec))
    config = _read_config(folder)
    check_weights([p.name for p in folder.iterdir()], repo)
    check_remote_code(config, repo, trust_remote_code)
    four_bit = (spec is not None and spec.bits == 4) or _is_bnb_4bit(config)
    if not four_bit:
        base: str | None = str(folder)
    elif spec is not None and spec.base_16bit:
        base = _base_repo(get(spec.base_16bit))
    else:
        base = None
    return ResolvedModel(str(folder), spec, four_bit, base, trust_remote_code, "hub", repo)


def _base_repo(base: ModelSpec) -> str:
    """The 16-bit repository to merge into: one already cached, else one that needs no licence click."""
    from huggingface_hub import try_to_load_from_cache

    candidates = [base.hub_id] + ([base.ungated] if base.ungated else [])
    for repo in candidates:
        if isinstance(try_to_load_from_cache(repo, "config.json"), str):
            return repo
    return base.ungated if base.gated and base.ungated else base.hub_id
