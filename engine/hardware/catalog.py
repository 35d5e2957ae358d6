"""The model catalog (presets/models.toml): ids, hub repos and architecture numbers.

The numbers let the estimator plan memory for any listed model without downloading it.
"""

from __future__ import annotations

import difflib
import tomllib
from dataclasses import dataclass
from functools import cache

from engine.files.paths import catalog_file


@dataclass(frozen=True)
class ModelSpec:
    id: str
    name: str
    hub_id: str
    source: str
    """"embedded" (ships with ftui) or "hub"."""
    params: int
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    tied_embeddings: bool
    context: int
    chat_template: str
    bits: int
    """16 for plain weights, 4 for a bitsandbytes NF4 repository."""
    gated: bool = False
    ungated: str | None = None
    """A mirror of the same weights without the licence gate."""
    base_16bit: str | None = None
    """For 4-bit entries: the catalog id of the 16-bit weights."""
    family: str = "llama"
    """The recommendation's family (`ftui recommend --family`): llama, qwen3, gemma3, mistral, phi4."""
    architecture: str = "llama"
    """config.json's model_type: picks the LoRA target names and whether GGUF export is built."""
    head_dim: int | None = None
    """Attention head width where it is not hidden / heads (Qwen3: 128, Gemma 3: 256)."""
    note: str = ""
    """Licence, gating and what ftui trains of it."""

    @property
    def head_size(self) -> int:
        return self.head_dim or self.hidden // self.heads

    @property
    def size_class(self) -> str:
        return f"{self.params / 1e9:.1f}B" if self.params >= 1e9 else f"{self.params / 1e6:.0f}M"


class UnknownModel(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


@cache
def load_catalog() -> tuple[ModelSpec, ...]:
    data = tomllib.loads(catalog_file().read_text(encoding="utf-8"))
    return tuple(ModelSpec(**entry) for entry in data["model"])


def find(model: str) -> ModelSpec | None:
    """The catalog entry for a catalog id or a hub id (case-insensitive), or None."""
    key = model.strip().lower()
    for spec in load_catalog():
        if key in (spec.id.lower(), spec.hub_id.lower()) or (spec.ungated and key == spec.ungated.lower()):
            return spec
    return None


def get(model: str) -> ModelSpec:
    spec = find(model)
    if spec is None:
        ids = [s.id for s in load_catalog()] + [s.hub_id for s in load_catalog()]
        close = difflib.get_close_matches(model, ids, n=1, cutoff=0.5)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownModel(f"{model!r} is not in the model catalog.{hint} Known: {', '.join(s.id for s in load_catalog())}")
    return spec


def four_bit_variant(spec: ModelSpec) -> ModelSpec | None:
    for other in load_catalog():
        if other.base_16bit == spec.id:
            return other
    return None
