"""GRPO's settings that join several fields: the rewards list, its format and file, the KL's reference.

Checked with the rest of the config (`RunConfig.check`), before any model is loaded; the reward
functions themselves are built in engine.train.rewards.
"""

from __future__ import annotations

import math
import re
from typing import Any

BUILT_IN = ("format", "answer", "exact", "length", "code")
"""Reward names `rewards` takes: the first four are ftui's, `code` is the function in reward_file."""

def parse_entry(entry: str) -> tuple[str, float]:
    """`name` or `name:weight` as (name, weight); ValueError says what is wrong."""
    name, sep, raw = entry.partition(":")
    name = name.strip()
    if name not in BUILT_IN:
        raise ValueError(f"unknown reward {name!r}; choose from {', '.join(BUILT_IN)}")
    if not sep:
        return name, 1.0
    try:
        weight = float(raw)
    except ValueError:
        raise ValueError(f"{entry!r}: the weight after ':' must be a number, such as answer:2") from None
    if not math.isfinite(weight):
        raise ValueError(f"{entry!r}: the weight must be a finite number")
    return name, weight


def grpo_problems(config: Any) -> list[tuple[str, str]]:
    """(setting, message) for each reason the config's grpo settings cannot run: checked with the
    config, before any model is loaded."""
    out = []
    if config.grpo_max_completion_tokens >= config.max_seq_len:
        out.append(("grpo_max_completion_tokens", f"{config.grpo_max_completion_tokens} leaves no room for the prompt "
                                                  f"within max_seq_len = {config.max_seq_len}"))
    names = []
    for entry in config.rewards:
        try:
            names.append(parse_entry(entry)[0])
        except ValueError as exc:
            out.append(("rewards", str(exc)))
    if not config.rewards:
        out.append(("rewards", "is empty: grpo needs at least one reward, such as answer"))
    if len(set(names)) < len(names):
        out.append(("rewards", "names a reward twice; give it one weight instead (answer:2)"))
    if "format" in names:
        if not config.reward_format:
            out.append(("reward_format", "is empty but rewards has format: give the regular expression a good "
                                         "answer matches, such as ^Run: `[^`]+`$"))
        else:
            try:
                re.compile(config.reward_format)
            except re.error as exc:
                out.append(("reward_format", f"is not a regular expression: {exc}"))
    if "code" in names and not config.reward_file:
        out.append(("reward_file", "is empty but rewards has code: name the Python file with your reward function"))
    if config.reward_file and "code" not in names:
        out.append(("rewards", f"reward_file {config.reward_file} is set but rewards has no code entry to use it"))
    if config.grpo_guide and "{expected}" not in config.grpo_guide:
        out.append(("grpo_guide", "has no {expected}: write the reference reply around it, such as Run: `{expected}`"))
    if config.world_size > 1:
        out.append(("gpus", "grpo trains in one process for now: leave gpus empty (one device)"))
    if config.grpo_kl_beta > 0 and config.method == "full":
        out.append(("grpo_kl_beta", "needs adapters: the reference is the model with its adapters switched off, "
                                    "and full fine-tuning has none; set grpo_kl_beta = 0 or use lora"))
    return out
