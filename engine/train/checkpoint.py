"""Checkpoints that resume exactly, and the final artefacts in the formats other tools load.

A checkpoint holds the trainable weights, optimizer, scheduler, loss scaler and RNG states
plus the loop's own counters; the data order needs no saving because it is a function of
(seed, epoch). Everything is written into a temporary folder that is renamed into place, so
a crash mid-write leaves no folder named step-N.

A folder named step-N can still be damaged later (a disk that filled or failed, a file cut by
hand), so resume checks each candidate's files first, newest first, and uses the newest whose
every file reads; the ones passed over are reported with why.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.config.schema import ConfigError
from engine.errors import ActionableError
from engine.files.atomic import atomic_dir, remove_dir
from engine.runs import RunDir, complete_checkpoints, read_config, tokenizer_dir, weights_dir, write_config
from engine.train.methods import trainable_named
from engine.train.parallel import SINGLE, Ranks, load_sharded

TENSOR_FILES = ("optimizer.pt", "scheduler.pt", "rng.pt")
"""Written by torch.save; scaler.pt joins them when the run used a loss scaler."""
REQUIRED_FILES = ("state.json", "config.toml", "trainable.safetensors", *TENSOR_FILES)


class CheckpointError(ActionableError):
    """A checkpoint that passed the file check but does not load into this run's model."""


@dataclass(frozen=True)
class CheckpointChoice:
    path: Path | None
    """The checkpoint to resume from; None when none loads."""
    skipped: tuple[tuple[Path, str], ...] = ()
    """Newer checkpoints passed over, each with why it cannot be loaded."""

    def refusal(self, resume: str | Path) -> tuple[str, str]:
        """Reason and advice when there is nothing to resume from."""
        if not self.skipped:
            return (f"no complete checkpoint in {resume}",
                    "pass a run directory with checkpoints/step-N or a checkpoint folder itself")
        if len(self.skipped) == 1 and self.skipped[0][0] == Path(resume):
            return (f"{resume} cannot be loaded: {self.skipped[0][1]}",
                    f"resume from the run directory {Path(resume).parent.parent} instead, which falls back to "
                    "the newest checkpoint that loads")
        named = "\n".join(f"  {path.name}: {why}" for path, why in self.skipped)
        return (f"no checkpoint in {resume} can be loaded:\n{named}",
                "start the run again; these files were damaged after they were written (a full or failing disk?)")


def choose_checkpoint(path: Path) -> CheckpointChoice:
    """`path` itself when it is a checkpoint folder, else the newest checkpoint of the run directory
    `path` whose files all read; newer ones that do not are skipped, with why."""
    path = Path(path)
    if (path / "state.json").exists():
        problem = checkpoint_problem(path)
        return CheckpointChoice(None, ((path, problem),)) if problem else CheckpointChoice(path)
    skipped: list[tuple[Path, str]] = []
    for candidate in reversed(complete_checkpoints(path)):
        problem = checkpoint_problem(candidate)
        if not problem:
            return CheckpointChoice(candidate, tuple(skipped))
        skipped.append((candidate, problem))
    return CheckpointChoice(None, tuple(skipped))


def checkpoint_problem(path: Path) -> str:
    """Why the checkpoint at `path` cannot be resumed from, or "" when every file reads.

    Cheap enough to run on every candidate before a model is built: safetensors reads only its
    header (which it checks against the file's length) and torch.load maps the tensors instead
    of reading them.
    """
    import torch
    from safetensors import safe_open

    optional = ("scaler.pt",) if (path / "scaler.pt").exists() else ()
    for name in (*REQUIRED_FILES, *optional):
        file = path / name
        if not file.is_file():
            return f"{name} is missing"
        if file.stat().st_size == 0:
            return f"{name} is empty"
    try:
        state = json.loads((path / "state.json").read_text(encoding="utf-8"))
    except ValueError as exc:
        return f"state.json is not valid JSON ({exc})"
    if not isinstance(state, dict) or type(state.get("step")) is not int:
        return "state.json holds no step number"
    try:
        read_config(path)
    except ConfigError as exc:
        return f"config.toml does not read ({exc.problems[0].message if exc.problems else exc})"
    try:
        with safe_open(str(path / "trainable.safetensors"), framework="pt") as f:
            f.keys()
    except Exception as exc:  # noqa: BLE001 - SafetensorError and OSError mean the same here
        return f"trainable.safetensors is cut short or damaged ({exc})"
    loaded: dict[str, Any] = {}
    for name in (*TENSOR_FILES, *optional):
        try:
            loaded[name] = torch.load(path / name, map_location="cpu", weights_only=True, mmap=True)
        except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError, OSError, EOFError, UnpicklingError...
            return f"{name} is cut short or damaged ({type(exc).__name__}: {exc})"
    if not isinstance(loaded["rng.pt"], dict) or "cpu" not in loaded["rng.pt"]:
        return "rng.pt holds no random state"
    return ""


def save_checkpoint(run: RunDir, step: int, weights: dict[str, Any], optimizer_state: dict[str, Any], scheduler: Any,
                    scaler: Any, state: dict[str, Any]) -> Path:
    """`weights` and `optimizer_state` whole, as engine.train.parallel gathers them."""
    import torch
    from safetensors.torch import save_file

    path = run.checkpoint(step)
    with atomic_dir(path) as tmp:
        save_file(weights, str(tmp / "trainable.safetensors"))
        torch.save(optimizer_state, tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        torch.save(rng_state(), tmp / "rng.pt")
        if scaler is not None:
            torch.save(scaler.state_dict(), tmp / "scaler.pt")
        write_config(tmp, run.config)
        # state.json last: its presence marks the folder's content as complete.
        (tmp / "state.json").write_text(json.dumps({"step": step, **state}, indent=2), encoding="utf-8")
    return path


def prune_checkpoints(run_dir: Path, keep: int, protect: int | None) -> list[Path]:
    """Delete all but the newest `keep` complete checkpoints (0 keeps all), never the one of step
    `protect`; returns the deleted ones. Each goes through a rename, so a kill mid-delete leaves a
    partial for the sweep, not a half-empty step-N that resume would try."""
    if keep <= 0:
        return []
    removed = []
    for path in complete_checkpoints(run_dir)[:-keep]:
        if path.name != f"step-{protect}":
            remove_dir(path)
            removed.append(path)
    return removed


def load_checkpoint(path: Path, model: Any, optimizer: Any, scheduler: Any, scaler: Any,
                    ranks: Ranks = SINGLE) -> dict[str, Any]:
    """Restore everything saved by `save_checkpoint`; returns the loop counters.

    FSDP keys its optimizer state by parameter name, one process and DDP by position, so a
    checkpoint goes back to the kind of run that wrote it (engine.train.launch keeps its strategy).
    """
    import torch
    from safetensors.torch import load_file

    state = json.loads((path / "state.json").read_text(encoding="utf-8"))
    if (state.get("strategy") == "fsdp") != (ranks.strategy == "fsdp"):
        raise CheckpointError(
            f"checkpoint {path} was written by {'FSDP' if state.get('strategy') == 'fsdp' else 'one process or DDP'}, "
            f"and this run is {'FSDP' if ranks.strategy == 'fsdp' else 'one process or DDP'}",
            "an FSDP checkpoint resumes on 2 or more GPUs (--gpus) under FSDP; any other under DDP or one process")
    weights = load_file(str(path / "trainable.safetensors"))
    params = trainable_named(model)
    missing = set(params) - set(weights)
    unexpected = set(weights) - set(params)
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint {path} does not match this model and method "
            f"({len(missing)} trainable tensors missing, {len(unexpected)} unexpected)",
            "resume with the model and method the run was trained with (its config.toml)")
    optimizer_state = torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True)
    if ranks.strategy == "fsdp":
        load_sharded(model, optimizer, weights, optimizer_state)
    else:
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(weights[name].to(p.device, p.dtype))
        optimizer.load_state_dict(optimizer_state)
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
    restore_rng(torch.load(path / "rng.pt", weights_only=True))
    if scaler is not None and (path / "scaler.pt").exists():
        scaler.load_state_dict(torch.load(path / "scaler.pt", weights_only=True))
    return state


def rng_state() -> dict[str, Any]:
    """The CPU's random state and, on a GPU, that of this process's GPU alone: every process of a run
    has its own, and a resume may see another number of GPUs than the run that saved it."""
    import torch

    rng = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state()
    return rng


def restore_rng(rng: dict[str, Any]) -> None:
    """Put back what `rng_state` saved. Checkpoints written before held a list, one state per GPU the
    process saw (all of a machine's for one process, its own alone for each of several): the current
    GPU's is taken, the first where the list is shorter."""
    import torch

    torch.set_rng_state(rng["cpu"])
    if "cuda" not in rng or not torch.cuda.is_available():
        return
    state = rng["cuda"]
    if isinstance(state, (list, tuple)):
        current = torch.cuda.current_device()
        state = state[current] if current < len(state) else state[0]
    torch.cuda.set_rng_state(state)


def save_weights(run: RunDir, model: Any, method: str, whole: dict[str, Any] | None = None) -> Path:
    """The adapter in standard PEFT format (adapter/), or the whole model for full fine-tuning (model/),
    with the tokenizer and a model card, its base named as a hub id (engine/export/artefacts.py).
    `whole`: the trainable weights gathered from FSDP shards (engine.train.parallel.whole_weights)."""
    from engine.export.artefacts import finish_weights

    path = weights_dir(run.path, method)
    with atomic_dir(path) as tmp:
        model.save_pretrained(str(tmp), **({"state_dict": whole} if whole is not None else {}))
        finish_weights(tmp, run)
    return path


def save_tokenizer(run: RunDir, tokenizer: Any) -> Path:
    path = tokenizer_dir(run.path)
    with atomic_dir(path) as tmp:
        tokenizer.save_pretrained(str(tmp))
    return path
