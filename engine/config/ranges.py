"""The settings' ranges and typical values, as data: the config check, the form's hints and the
manual's settings table all read them here, so the three never disagree.

A rule that joins two settings (LoRA's alpha against its rank, warmup against the run's steps)
stays in `RunConfig.check`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MAX_SEED = 2**32 - 1
"""numpy's random generator takes seeds up to this."""
MAX_RETENTION_MIX = 0.8
"""Above this the task's own examples are a minority of what is trained."""


@dataclass(frozen=True)
class Range:
    low: float
    high: float = math.inf
    note: str = ""
    """What people use, or why the bound is where it is: said after a value out of range, shown as the
    form's hint and in the manual."""
    open_high: bool = False
    """The high end itself is out of range."""
    why: str = ""
    """The whole message for an unbounded range ("must be at least 1"), instead of "x is outside a..b"."""

    def problem(self, value: float) -> str:
        """Why `value` is out of range, or "" when it is in."""
        inside = self.low <= value and (value < self.high if self.open_high else value <= self.high)
        if inside:
            return ""
        if self.why:
            return self.why
        note = f" ({self.note})" if self.note else ""
        return f"{_number(value)} is outside {_number(self.low)}..{_number(self.high)}{note}"

    def hint(self) -> str:
        """The range as the form and the manual show it."""
        span = f"at least {_number(self.low)}" if self.high == math.inf else f"{_number(self.low)}..{_number(self.high)}"
        span += f", below {_number(self.high)}" if self.open_high else ""
        return f"{span}; {self.note}" if self.note else span


def _number(value: float) -> str:
    """Whole numbers in full (a seed of 4294967295), others as a person writes them (1e-6, 0.05)."""
    if float(value).is_integer():
        return str(int(value))
    if 0 < abs(value) < 0.01:
        mantissa, exponent = f"{value:e}".split("e")
        return f"{float(mantissa):g}e{int(exponent)}"
    return f"{value:g}"


RANGES: dict[str, Range] = {
    "learning_rate": Range(1e-6, 1e-3, "2e-4 is typical for LoRA, 2e-5 for full fine-tuning"),
    "retention_mix": Range(0, MAX_RETENTION_MIX, "0.1-0.3 keeps general answers without drowning the task"),
    "dpo_beta": Range(0.001, 10, "0.1 is typical; 0.01-0.5 is the range people use"),
    "dpo_sft_weight": Range(0, 10, "1.0 as in the RPO paper; 0 is plain DPO"),
    "orpo_lambda": Range(0.001, 10, "0.1 as in the ORPO paper; 0.05-0.5 is the range people use"),
    "lora_dropout": Range(0, 0.5, "0.05-0.1 is typical"),
    "max_steps": Range(0, why="must be 0 (use epochs) or positive"),
    "batch_size": Range(1, why="must be at least 1"),
    "grad_accum": Range(1, why="must be at least 1"),
    "warmup_ratio": Range(0, 0.2, "3-10% of steps is typical"),
    "warmup_steps": Range(0, why="must be 0 or positive"),
    "weight_decay": Range(0, 0.2, "0-0.1 is typical"),
    "seed": Range(0, MAX_SEED, "2**32 - 1, the most numpy's random generator takes"),
    "val_split": Range(0, 0.5, "0.05-0.1 is typical", open_high=True),
    "max_bad_share": Range(0, 1, why="must be a share between 0 and 1"),
    "eval_interval": Range(1, why="must be at least 1"),
    "save_interval": Range(1, why="must be at least 1"),
    "keep_checkpoints": Range(0, why="must be 0 (keep all) or more"),
    "early_stopping_patience": Range(0, why="must be 0 (off) or positive"),
    "grpo_group_size": Range(2, 64, "answers compared per prompt; 4-16 is usual"),
    "grpo_max_completion_tokens": Range(1, 4096, "sampling time grows with it"),
    "grpo_temperature": Range(0.05, 2, "0.7-1.0 is usual; 0 would sample one answer G times"),
    "grpo_kl_beta": Range(0, 1, "0-0.1 is usual (DeepSeekMath 0.04)"),
    "grpo_clip_epsilon": Range(0.01, 1, "0.2 is usual (PPO, DeepSeekMath)"),
    "grpo_iterations": Range(1, 8, "1-4 is usual"),
}
"""Fields checked against a range whatever the other settings are."""
