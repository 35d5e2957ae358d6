"""What a checkpoint carries beyond tensors, and how a resumed run takes it back.

The best validation loss, the evaluations without progress (early-stopping patience) and the
diagnoser's memory of past losses are saved in every checkpoint's state.json, so a resumed run
stops, keeps its best adapter and warns exactly as the uninterrupted run would have.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.train.checkpoint import load_checkpoint
from engine.train.diagnose import Diagnoser
from engine.train.setup import TrainingSetup


@dataclass
class Counters:
    """The loop's own state, updated as it runs."""

    start: int = 0
    """The step this attempt starts after: 0, or the step of the checkpoint it resumes."""
    best: float | None = None
    """The best validation loss so far."""
    bad_evals: int = 0
    """Evaluations in a row that did not beat `best`."""
    best_step: int | None = None
    sampling_rng: str | None = None
    """GRPO's sampling generator state (engine.train.sampling), None for other objectives."""

    def to_state(self, diagnoser: Diagnoser) -> dict[str, Any]:
        """The counters and the diagnoser's memory, as saved beside the weights."""
        sampling = {"sampling_rng": self.sampling_rng} if self.sampling_rng is not None else {}
        return {"best_val_loss": self.best, "bad_evals": self.bad_evals, "best_step": self.best_step,
                "step_losses": diagnoser.step_losses, "val_losses": diagnoser.val_losses,
                "train_means": diagnoser.train_means, "said": sorted(diagnoser.said), **sampling}


def restore(checkpoint: Path, parts: TrainingSetup) -> Counters:
    """Load the checkpoint into the freshly built parts (weights, optimizer, scheduler, scaler, RNG)."""
    state = load_checkpoint(checkpoint, parts.model, parts.optimizer, parts.scheduler, parts.scaler, parts.ranks)
    diagnoser = parts.diagnoser
    diagnoser.step_losses = [tuple(x) for x in state.get("step_losses", [])]
    diagnoser.val_losses = state.get("val_losses", [])
    diagnoser.train_means = state.get("train_means", [])
    diagnoser.said = set(state.get("said", []))
    return Counters(state["step"], state.get("best_val_loss"), state.get("bad_evals", 0), state.get("best_step"),
                    state.get("sampling_rng"))
