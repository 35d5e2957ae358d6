"""Checkpoints that resume exactly, and the final artefacts in the formats other tools load.

A checkpoint holds the trainable weights, optimizer, scheduler, loss scaler and RNG states
plus the loop's own counters; the data order needs no saving because it is a function of
(seed, epoch). Everything is written into a temporary folder that is renamed into place, so
a crash mid-write leaves no folder named step-N.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from engine.atomic import atomic_dir
from engine.runs import RunDir, tokenizer_dir, weights_dir, write_config
from engine.train.methods import trainable_named


def save_checkpoint(run: RunDir, step: int, model: Any, optimizer: Any, scheduler: Any,
                    scaler: Any, state: dict[str, Any]) -> Path:
    import torch
    from safetensors.torch import save_file

    path = run.checkpoint(step)
    with atomic_dir(path) as tmp:
        weights = {k: v.detach().contiguous().cpu() for k, v in trainable_named(model).items()}
        save_file(weights, str(tmp / "trainable.safetensors"))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        rng = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        torch.save(rng, tmp / "rng.pt")
        if scaler is not None:
            torch.save(scaler.state_dict(), tmp / "scaler.pt")
        write_config(tmp, run.config)
        # state.json last: its presence marks the folder's content as complete.
        (tmp / "state.json").write_text(json.dumps({"step": step, **state}, indent=2), encoding="utf-8")
    return path


def load_checkpoint(path: Path, model: Any, optimizer: Any, scheduler: Any, scaler: Any) -> dict[str, Any]:
    """Restore everything saved by `save_checkpoint`; returns the loop counters."""
    import torch
    from safetensors.torch import load_file

    weights = load_file(str(path / "trainable.safetensors"))
    params = trainable_named(model)
    missing = set(params) - set(weights)
    unexpected = set(weights) - set(params)
    if missing or unexpected:
        raise ValueError(
            f"checkpoint {path} does not match this model and method "
            f"({len(missing)} trainable tensors missing, {len(unexpected)} unexpected)"
        )
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(weights[name].to(p.device, p.dtype))
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
    rng = torch.load(path / "rng.pt", weights_only=True)
    torch.set_rng_state(rng["cpu"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    if scaler is not None and (path / "scaler.pt").exists():
        scaler.load_state_dict(torch.load(path / "scaler.pt", weights_only=True))
    return json.loads((path / "state.json").read_text(encoding="utf-8"))


def save_weights(run: RunDir, model: Any, method: str) -> Path:
    """The adapter in standard PEFT format (adapter/), or the whole model for full fine-tuning (model/)."""
    path = weights_dir(run.path, method)
    with atomic_dir(path) as tmp:
        model.save_pretrained(str(tmp))
    return path


def save_tokenizer(run: RunDir, tokenizer: Any) -> Path:
    path = tokenizer_dir(run.path)
    with atomic_dir(path) as tmp:
        tokenizer.save_pretrained(str(tmp))
    return path
