"""Safe by default: no pickle weights and no repository code unless the user opted in.

Pickled `.bin`/`.pt` weights can run arbitrary code when read, and a model with an `auto_map`
ships Python that `from_pretrained` would execute. Both checks run on local folders and on hub
file listings before anything is downloaded or loaded.
"""

from __future__ import annotations

import os
from typing import Any

from engine.models.errors import ModelLoadError
from engine.models.hf_import import hf_imported

ALLOW_PICKLE_ENV = "FTUI_ALLOW_PICKLE"
"""Set to 1 to load `.bin`/`.pt` weights, which are Python pickles and can run code when read."""
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def allow_pickle() -> bool:
    return os.environ.get(ALLOW_PICKLE_ENV, "").strip().lower() in ("1", "true", "yes")


def check_weights(names: list[str], where: str) -> None:
    """Refuse folders and repositories whose only weights are pickles, unless the user opted in."""
    if any(n.endswith(".safetensors") for n in names):
        return
    pickles = sorted(n for n in names if n.endswith(PICKLE_SUFFIXES))
    if pickles and not allow_pickle():
        raise ModelLoadError(
            f"{where} only has pickle weights ({', '.join(pickles[:3])}), which can run arbitrary code when loaded.",
            f"Convert them to safetensors, or if you trust the source set {ALLOW_PICKLE_ENV}=1 and try again.",
        )
    if not pickles:
        gguf = " It holds GGUF files, which are for chat; training needs safetensors." if any(
            n.endswith(".gguf") for n in names
        ) else ""
        raise ModelLoadError(f"{where} has no model weights (*.safetensors).{gguf}", "Give a complete model folder.")


def check_remote_code(config: dict[str, Any], where: str, trust_remote_code: bool) -> None:
    """Refuse a model whose type transformers does not know, so it would need its own code, unless trusted."""
    if trust_remote_code or "auto_map" not in config:
        return
    hf_imported()
    from transformers import CONFIG_MAPPING

    if config.get("model_type") not in CONFIG_MAPPING:
        raise ModelLoadError(
            f"{where} needs its own Python code to load (model type {config.get('model_type')!r}).",
            "Set trust_remote_code = true for this run only if you trust the repository.",
        )


def check_run_code_consent(run_dir: Any, model: str, run_trusts: bool, allowed: bool) -> None:
    """A run's own config.toml turning trust_remote_code on is not consent: exporting, evaluating or
    resuming a run someone else made would run its model repository's code unasked. Refused unless
    the person running ftui says so for this command (--trust-remote-code)."""
    if run_trusts and not allowed:
        raise ModelLoadError(
            f"{run_dir}: its config.toml says trust_remote_code = true, so loading it runs Python code from the "
            f"model's repository ({model}).",
            "If you trust that repository, run the command again with --trust-remote-code.",
        )
