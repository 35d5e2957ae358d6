"""One loader for every model ftui trains, exports or evaluates: a catalog id, a hub id or a folder.

Everything that can go wrong before a single step runs (no network, a gated repo, a typo in an
id, pickle-only weights, code that would run on load) is found here and raised as one
`ModelLoadError` that says what happened and what to do, so the TUI and CLI never show a
traceback for a model that cannot load. Safe by default: weights load from safetensors only
and repository code never runs unless the user turned `trust_remote_code` on for that model.

- `resolve`: what the user typed -> a local folder (`ResolvedModel`), converting or downloading once.
- `hub`, `hub_progress`: the hub download, its progress events and its error messages.
- `safety`: the pickle and remote-code checks.
- `tokenizer`, `causal_lm`: loading the tokenizer and the weights (16/32-bit or 4-bit).
- `errors`: `ModelLoadError`, shared with `engine.models.embedded`.
"""

from __future__ import annotations

from engine.models.causal_lm import LOAD_STAGE, load_causal_lm
from engine.models.errors import ModelLoadError
from engine.models.hub import download
from engine.models.hub_progress import DOWNLOAD_STAGE
from engine.models.resolve import ResolvedModel, resolve_model
from engine.models.safety import ALLOW_PICKLE_ENV
from engine.models.tokenizer import load_tokenizer

__all__ = [
    "ALLOW_PICKLE_ENV",
    "DOWNLOAD_STAGE",
    "LOAD_STAGE",
    "ModelLoadError",
    "ResolvedModel",
    "download",
    "load_causal_lm",
    "load_tokenizer",
    "resolve_model",
]
