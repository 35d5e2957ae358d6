"""Prompt rows for GRPO: what the model answers, with the answer a reward checks against.

A row is `{"prompt": "..."}` or `{"messages": [...]}` ending with a user turn, with an optional
`expected` answer for the answer and exact rewards; a conversation that ends with the assistant's
answer is SFT data, not a prompt. The prompts are rendered with the model's chat template up to the
assistant's turn, as chat will ask them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.data.readers import DatasetError, read_rows
from engine.data.render import RenderError, _apply, with_system_prompt
from engine.data.types import Conversation, DataProblem, Message, PreparedData, TokenizedExample
from engine.files.paths import resolve_project_path

ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class RlPrompt:
    text: str
    """The last user turn, as reward functions get it."""
    expected: str | None
    where: str
    """file:line, for messages about the row."""


@dataclass(frozen=True)
class RlData:
    data: PreparedData
    """`train` holds each prompt's tokens (no labels: nothing is imitated); no validation split."""
    prompts: tuple[RlPrompt, ...]
    """The same rows in the same order."""


def read_rl_prompts(config: Any, tokenizer: Any) -> RlData:
    """The dataset's prompt rows, rendered and fitted to max_seq_len minus the answer's room.

    Raises DatasetError naming the file when it holds no prompt row, or more bad rows than
    max_bad_share allows.
    """
    path = str(resolve_project_path(config.dataset))
    room = config.max_seq_len - config.grpo_max_completion_tokens
    examples, prompts, problems, rows = [], [], [], 0
    for item in read_rows(path, config.dataset_split):
        if isinstance(item, DataProblem):
            problems.append(item)
            rows += 1
            continue
        rows += 1
        line, row = item
        parsed = prompt_row(row, path, line)
        if isinstance(parsed, DataProblem):
            problems.append(parsed)
            continue
        conversation, expected = parsed
        try:
            text = _apply(tokenizer, [{"role": m.role, "content": m.content} for m in
                                      with_system_prompt(conversation, config.system_prompt).messages],
                          add_generation_prompt=True)
        except RenderError as exc:
            problems.append(DataProblem(path, line, None, str(exc)))
            continue
        ids = tuple(tokenizer(text, add_special_tokens=False)["input_ids"])
        if len(ids) > room:
            problems.append(DataProblem(path, line, None, (
                f"the prompt is {len(ids)} tokens; with grpo_max_completion_tokens = "
                f"{config.grpo_max_completion_tokens} it exceeds max_seq_len = {config.max_seq_len}: dropped")))
            continue
        examples.append(TokenizedExample(ids, (-100,) * len(ids), line))
        prompts.append(RlPrompt(conversation.messages[-1].content, expected, f"{path}:{line}"))
    if not prompts:
        raise DatasetError(problems, (
            f"{path} holds no prompt rows for grpo out of {rows}: each row needs a `prompt` text or `messages` "
            "ending with a user turn (and may have an `expected` answer)"))
    if rows and len(problems) / rows > config.max_bad_share:
        raise DatasetError(problems, (
            f"{path}: {len(problems)} of {rows} rows are bad, more than max_bad_share = {config.max_bad_share:g}"))
    return RlData(PreparedData(tuple(examples), (), "prompts", tuple(problems)), tuple(prompts))


def prompt_row(row: Any, path: str, line: int) -> tuple[Conversation, str | None] | DataProblem:
    """A GRPO prompt row: a `prompt` text or `messages` ending with a user turn, with an optional `expected`."""
    if not isinstance(row, dict):
        return DataProblem(path, line, None, f"expected an object, got {type(row).__name__}")
    expected = row.get("expected")
    if expected is not None and not isinstance(expected, (str, int, float)):
        return DataProblem(path, line, "expected", "must be text (or a number)")
    expected = None if expected is None else str(expected)
    if isinstance(row.get("prompt"), str) and row["prompt"].strip():
        return Conversation((Message("user", row["prompt"]),), line), expected
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        return DataProblem(path, line, None, "has no `prompt` text nor `messages` list")
    turns = []
    for turn in messages:
        if not isinstance(turn, dict) or turn.get("role") not in ROLES or not isinstance(turn.get("content"), str):
            return DataProblem(path, line, "messages", "each turn needs a role (system, user, assistant) and content")
        turns.append(Message(turn["role"], turn["content"]))
    if turns[-1].role != "user":
        return DataProblem(path, line, "messages", f"ends with an {turns[-1].role} turn: a prompt row ends with the "
                                                   "user turn the model answers")
    return Conversation(tuple(turns), line), expected
