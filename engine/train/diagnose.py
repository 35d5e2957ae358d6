"""Read the loss curves the way an experienced fine-tuner would, and say so while it matters.

The rules are the common guidance: validation loss rising while training loss keeps falling
means the model is memorising (overfitting); training loss flat after warm-up means it is not
learning (underfitting); a non-finite loss means the run has diverged and must stop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from engine.events import Diagnosis

OVERFIT_EVALS = 3
"""Consecutive evaluations with rising validation loss before overfitting is called."""
FLAT_SHARE = 0.02
"""Training loss that fell by less than this share after warm-up counts as flat."""
FLAT_MIN_STEPS = 10
"""Steps after warm-up before a flat loss is judged (shorter is noise)."""


def is_overfitting(val_losses: list[float], train_losses: list[float], k: int = OVERFIT_EVALS) -> bool:
    """Validation loss rose at each of the last k evaluations while training loss fell.

    `train_losses[i]` is the mean training loss over the steps before evaluation i.
    """
    if len(val_losses) < k + 1 or len(train_losses) < k + 1:
        return False
    vals, trains = val_losses[-(k + 1):], train_losses[-(k + 1):]
    rising = all(b > a for a, b in zip(vals, vals[1:], strict=False))
    falling = trains[-1] < trains[0]
    return rising and falling


def is_flat(losses_after_warmup: list[float], share: float = FLAT_SHARE, min_steps: int = FLAT_MIN_STEPS) -> bool:
    """Mean loss of the last quarter is within `share` of the first quarter's."""
    n = len(losses_after_warmup)
    if n < min_steps:
        return False
    q = max(1, n // 4)
    first = sum(losses_after_warmup[:q]) / q
    last = sum(losses_after_warmup[-q:]) / q
    return first > 0 and (first - last) / first < share


@dataclass
class Diagnoser:
    """Fed each step's loss and each evaluation; returns a Diagnosis the first time a rule fires."""

    warmup_steps: int
    learning_rate: float
    method: str
    step_losses: list[tuple[int, float]] = field(default_factory=list)
    val_losses: list[float] = field(default_factory=list)
    train_means: list[float] = field(default_factory=list)
    said: set[str] = field(default_factory=set)
    _since_eval: list[float] = field(default_factory=list)

    def on_step(self, step: int, loss: float) -> Diagnosis | None:
        if not math.isfinite(loss):
            return Diagnosis(
                step, "divergence", f"training loss became {loss} at step {step}: the run has diverged",
                f"lower learning_rate (now {self.learning_rate:g}, try {self.learning_rate / 4:g}), keep "
                "max_grad_norm at 1.0, and on GPUs without bf16 check the data for extreme lengths",
            )
        self.step_losses.append((step, loss))
        self._since_eval.append(loss)
        return None

    def on_eval(self, step: int, val_loss: float) -> Diagnosis | None:
        if self._since_eval:
            self.train_means.append(sum(self._since_eval) / len(self._since_eval))
            self._since_eval = []
            self.val_losses.append(val_loss)
        if "overfitting" not in self.said and is_overfitting(self.val_losses, self.train_means):
            self.said.add("overfitting")
            return Diagnosis(
                step, "overfitting",
                f"validation loss rose for {OVERFIT_EVALS} evaluations in a row while training loss fell: "
                "the model is memorising the training examples",
                "lower learning_rate or epochs, raise lora_dropout (0.1) or weight_decay (0.05-0.1), "
                "or set early_stopping_patience to keep the best adapter",
            )
        return self.check_flat(step)

    def check_flat(self, step: int) -> Diagnosis | None:
        if "underfitting" in self.said:
            return None
        after = [loss for s, loss in self.step_losses if s > self.warmup_steps]
        if not is_flat(after):
            return None
        self.said.add("underfitting")
        advice = f"raise learning_rate (now {self.learning_rate:g}) or epochs"
        if self.method != "full":
            advice += ", or lora_r for more capacity"
        return Diagnosis(
            step, "underfitting",
            f"training loss moved less than {FLAT_SHARE:.0%} over {len(after)} steps after warm-up: "
            "the model is barely learning", advice,
        )
