"""GRPO's reward functions: the built-ins, the user's own from a file, and the checks around them.

Each reward scores one sampled answer to one prompt row; `score` calls every function the config
names on every answer and weighs them into one number per answer. A function that raises or gives
something other than a finite number stops the run with its name and the row's file and line,
since a wrong reward silently teaches the wrong thing.

A reward in a file (`reward_file`) is the user's own Python, imported and run in the training
process with the user's rights, as a script they run would be.
"""

from __future__ import annotations

import importlib.util
import inspect
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from engine.config.grpo import parse_entry
from engine.errors import ActionableError

DEFAULT_FUNCTION = "reward"


class RewardError(ActionableError):
    """A reward function that cannot be used or failed on a row."""


@dataclass(frozen=True)
class Answer:
    """What a reward sees of one sampled answer."""

    prompt: str
    """The last user turn (or the row's prompt text)."""
    completion: str
    expected: str | None
    """The row's `expected` field, None where it has none."""
    tokens: int
    """Tokens the answer took, its end-of-turn token excluded."""
    where: str
    """file:line of the prompt row, for messages."""


@dataclass(frozen=True)
class Reward:
    name: str
    """As logged: the built-in's name, or the user's function name."""
    weight: float
    score: Callable[[Answer], float]


def build_rewards(config: Any, max_tokens: int) -> list[Reward]:
    """The config's rewards as functions, the user's file imported (its code runs now)."""
    out = []
    for entry in config.rewards:
        name, weight = parse_entry(entry)
        if name == "format":
            out.append(Reward("format", weight, partial(_format, re.compile(config.reward_format, re.S))))
        elif name == "answer":
            out.append(Reward("answer", weight, _contains))
        elif name == "exact":
            out.append(Reward("exact", weight, _exact))
        elif name == "length":
            out.append(Reward("length", weight, partial(_length, max_tokens)))
        else:
            function = load_user_reward(config.reward_file)
            out.append(Reward(function.__name__, weight, partial(_user, function)))
    return out


def _format(pattern: re.Pattern[str], answer: Answer) -> float:
    return float(pattern.fullmatch(answer.completion.strip()) is not None)


def _length(max_tokens: int, answer: Answer) -> float:
    return -answer.tokens / max_tokens


def _user(function: Callable[..., Any], answer: Answer) -> Any:
    return function(answer.prompt, answer.completion, answer.expected)


def _contains(answer: Answer) -> float:
    from engine.data.answers import answer_matches

    return float(answer.expected is not None and answer_matches(answer.completion, answer.expected))


def _exact(answer: Answer) -> float:
    if answer.expected is None:
        return 0.0
    return float(" ".join(answer.completion.split()).lower() == " ".join(answer.expected.split()).lower())


def load_user_reward(spec: str) -> Callable[..., Any]:
    """The function `file.py` (named `reward`) or `file.py:name` defines; importing runs the file."""
    from engine.files.paths import resolve_project_path

    named = re.fullmatch(r"(.+\.py):(\w+)", spec)
    file, name = (named.group(1), named.group(2)) if named else (spec, DEFAULT_FUNCTION)
    path = Path(resolve_project_path(file))
    if not path.is_file():
        raise RewardError(f"reward_file {file}: no such file", "name the Python file that defines your reward")
    module_spec = importlib.util.spec_from_file_location(f"ftui_user_reward_{path.stem}", path)
    if module_spec is None or module_spec.loader is None:
        raise RewardError(f"reward_file {file}: not a Python file", "name a .py file")
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - the user's code can raise anything
        raise RewardError(f"reward_file {file}: importing it raised {type(exc).__name__}: {exc}",
                          "fix the file; it is imported as a Python module") from None
    function = getattr(module, name, None)
    if not callable(function):
        raise RewardError(f"reward_file {file} defines no function {name}()",
                          f"define {name}(prompt, completion, expected) returning a number, or name yours as "
                          f"{file}:your_function")
    try:
        inspect.signature(function).bind("", "", None)
    except TypeError:
        raise RewardError(f"reward_file {file}: {name}() cannot take (prompt, completion, expected)",
                          f"define it as def {name}(prompt, completion, expected) -> float") from None
    return function


def score(rewards: list[Reward], answers: list[Answer]) -> tuple[list[float], dict[str, float]]:
    """Each answer's weighted total, and each function's mean over the answers (unweighted)."""
    totals = [0.0] * len(answers)
    means = {}
    for reward in rewards:
        values = []
        for i, answer in enumerate(answers):
            try:
                value = reward.score(answer)
            except Exception as exc:  # noqa: BLE001 - the user's code can raise anything
                raise RewardError(
                    f"reward {reward.name} raised {type(exc).__name__}: {exc} on the prompt at {answer.where} "
                    f"(answer {answer.completion[:80]!r})", "fix the reward function for that row") from None
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise RewardError(
                    f"reward {reward.name} returned {value!r} on the prompt at {answer.where} "
                    f"(answer {answer.completion[:80]!r}), not a finite number",
                    "make the reward function return a float for every answer (0.0 when nothing is right)")
            values.append(float(value))
            totals[i] += reward.weight * float(value)
        means[reward.name] = sum(values) / max(len(values), 1)
    return totals, means
