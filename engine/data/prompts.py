"""General prompt files: questions the base and tuned models answer, each with an optional expected answer.

Evaluation scores retention on presets/data/general_eval.jsonl, and replay has the base model
answer presets/data/general_replay.jsonl; both read them here. A prompt set is small and
hand-written, so every bad line is reported (file:line: field: what is wrong), none skipped.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.data.readers import DatasetError, read_rows
from engine.data.types import Conversation, DataProblem, Message

KINDS = ("fact", "arithmetic", "translation", "code", "instruction", "smalltalk")
ROLES = ("system", "user", "assistant")
FIELDS = ("messages", "expected", "kind")


@dataclass(frozen=True)
class GeneralPrompt:
    messages: tuple[Message, ...]
    """The conversation so far, ending with the user turn the model answers."""
    expected: str | None
    """A short answer a right reply contains (see `answer_matches`); None where no one answer exists."""
    kind: str
    """One of KINDS: fact, arithmetic, translation, code, instruction, smalltalk."""
    source_line: int = 0

    @property
    def prompt(self) -> str:
        return self.messages[-1].content

    def message_dicts(self) -> list[dict[str, str]]:
        return [{"role": m.role, "content": m.content} for m in self.messages]

    def answered(self, reply: str) -> Conversation:
        """The prompt with `reply` as the assistant turn, ready for `mean_token_nll`."""
        return Conversation((*self.messages, Message("assistant", reply)), self.source_line)


def read_prompt_file(path: str | Path) -> list[GeneralPrompt]:
    """Lines of {"messages": [...ending with a user turn], "expected": "..." (optional), "kind": "..."}.

    Raises DatasetError listing every bad line as file:line: field: what is wrong. A prompt set
    is small and hand-written, so a bad line is a mistake to fix, not a row to skip.
    """
    name = str(path)
    prompts: list[GeneralPrompt] = []
    problems: list[DataProblem] = []
    for item in read_rows(name):
        if isinstance(item, DataProblem):
            problems.append(item)
            continue
        line, row = item
        parsed = _prompt_row(row, name, line)
        if isinstance(parsed, GeneralPrompt):
            prompts.append(parsed)
        else:
            problems.extend(parsed)
    if problems:
        raise DatasetError(problems, f"{name}: {len(problems)} problem(s) in the prompt file")
    if not prompts:
        raise DatasetError([DataProblem(name, None, None, "has no prompts")])
    return prompts


def _prompt_row(row: Any, file: str, line: int) -> GeneralPrompt | list[DataProblem]:
    if not isinstance(row, dict):
        return [DataProblem(file, line, None, f"each line must be a JSON object, not {type(row).__name__}")]
    problems = []

    def bad(field: str | None, message: str) -> None:
        problems.append(DataProblem(file, line, field, message))

    for key in row:
        if key not in FIELDS:
            near = difflib.get_close_matches(str(key), FIELDS, n=1)
            bad(str(key), "unknown field" + (f" (did you mean {near[0]!r}?)" if near else f"; use {', '.join(FIELDS)}"))
    raw = row.get("messages")
    messages: list[Message] = []
    if not isinstance(raw, list) or not raw:
        bad("messages", "must be a non-empty list of {\"role\", \"content\"} objects")
    else:
        for i, m in enumerate(raw):
            ok = isinstance(m, dict) and m.get("role") in ROLES and isinstance(m.get("content"), str) and m["content"].strip()
            if not ok:
                bad(f"messages[{i}]", f"must be {{\"role\": one of {', '.join(ROLES)}, \"content\": non-empty text}}")
            else:
                messages.append(Message(m["role"], m["content"]))
        if messages and len(messages) == len(raw) and messages[-1].role != "user":
            bad("messages", f"must end with a user turn for the model to answer, not {messages[-1].role!r}")
    expected = row.get("expected")
    if expected is not None and (not isinstance(expected, str) or not expected.strip()):
        bad("expected", "must be non-empty text, or left out where no single answer exists")
    kind = row.get("kind")
    if kind not in KINDS:
        bad("kind", f"must be one of {', '.join(KINDS)}, not {kind!r}")
    if problems:
        return problems
    return GeneralPrompt(tuple(messages), expected.strip() if expected else None, str(kind), line)
