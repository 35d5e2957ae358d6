"""The four row shapes fine-tuning data arrives in, and how each becomes one list of chat messages.

Users bring data from whatever tool they used last (Alpaca, ShareGPT, OpenAI chat, raw text);
the commonest complaints in other trainers' issue trackers are format errors reported as a
traceback. Here every row either becomes a `Conversation` or yields problems that name the
field, with a "did you mean" when a key is misspelled.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Callable, Mapping
from typing import Any

from engine.data.types import Conversation, DataProblem, Message

Report = Callable[[str | None, str], None]
"""Records a problem with a field of the current row."""

FORMATS = ("alpaca", "sharegpt", "messages", "text", "prompt_completion", "preference")

_KEYS = {
    "alpaca": ("instruction", "input", "output", "system"),
    "sharegpt": ("conversations",),
    "messages": ("messages",),
    "text": ("text",),
    "prompt_completion": ("prompt", "completion"),
    "preference": ("prompt", "chosen", "rejected"),
}
_SURROGATE = re.compile("[\ud800-\udfff]")
_ROLES = {"system": "system", "user": "user", "assistant": "assistant", "human": "user", "gpt": "assistant",
          # OpenAssistant's raw role, Gemma's, and the one some ShareGPT dumps carry.
          "prompter": "user", "model": "assistant", "chatgpt": "assistant"}
_HH_TURN = re.compile(r"(?:^|\n\n)(Human|Assistant):[ \t]?")


def detect(row: Mapping[str, Any]) -> str | None:
    """The format a row's keys say it is in, or None when no known key is present."""
    if "messages" in row:
        return "messages"
    if "conversations" in row:
        return "sharegpt"
    if "chosen" in row:
        return "preference"
    if "completion" in row:
        return "prompt_completion"
    if "instruction" in row or "output" in row:
        return "alpaca"
    if "text" in row:
        return "text"
    return None


def unknown_format_problem(row: Mapping[str, Any], file: str, line: int) -> DataProblem:
    """Explain a row in no known format, pointing at the key that looks like a misspelling."""
    known = [k for keys in _KEYS.values() for k in keys]
    for key in row:
        close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.75)
        if close:
            return DataProblem(file, line, str(key), f"unknown field (did you mean {close[0]!r}?)")
    found = ", ".join(repr(str(k)) for k in row) or "none"
    return DataProblem(
        file, line, None,
        f"no known format: expected 'messages' (chat), 'conversations' (ShareGPT), 'instruction' + "
        f"'output' (Alpaca), 'prompt' + 'completion', 'prompt' + 'chosen' (preference) or 'text'; "
        f"found fields {found}",
    )


def known_role(name: str) -> str | None:
    """ftui's role for a role name the formats read without a mapping, or None."""
    return _ROLES.get(name)


def normalise(row: Mapping[str, Any], fmt: str, file: str, line: int,
              pairs: bool = False) -> Conversation | list[DataProblem]:
    """Turn one row of format `fmt` into a Conversation, or say everything wrong with it.

    A preference row's rejected side is kept when it reads well; with `pairs` (the dpo and orpo
    objectives train on it) a missing or bad rejected side makes the row bad.
    """
    problems: list[DataProblem] = []

    def bad(field: str | None, message: str) -> None:
        problems.append(DataProblem(file, line, field, message))

    if fmt == "text":
        text = _text_field(row, "text", bad, required=True)
        if problems:
            return problems
        return Conversation(messages=(), source_line=line, raw_text=text)
    if fmt == "alpaca":
        messages = _alpaca(row, bad)
    elif fmt in ("prompt_completion", "preference"):
        messages = _prompt_completion(row, bad) if fmt == "prompt_completion" else _preference(row, bad)
    else:
        key = "messages" if fmt == "messages" else "conversations"
        messages = _turns(row, key, bad)
    if problems:
        return problems
    _check_order(messages, _ORDER_FIELD.get(fmt, "conversations"), bad)
    if problems:
        return problems
    rejected = _rejected(row, messages, file, line) if fmt == "preference" else []
    if pairs and isinstance(rejected, list):
        return rejected or [DataProblem(file, line, None, "not a preference row: no 'rejected' reply")]
    return Conversation(messages=tuple(messages), source_line=line,
                        rejected=rejected if isinstance(rejected, tuple) else None)


def _rejected(row: Mapping[str, Any], chosen: list[Message], file: str, line: int) -> tuple[Message, ...] | list[DataProblem]:
    """The rejected conversation: the chosen one's prompt turns and the rejected reply; else its problems."""
    problems: list[DataProblem] = []

    def bad(field: str | None, message: str) -> None:
        problems.append(DataProblem(file, line, field, message))

    rejected = row.get("rejected")
    if rejected is None:
        bad("rejected", _missing(row, "rejected") if "rejected" not in row else "'rejected' is null")
        return problems
    if row.get("prompt") is None and isinstance(rejected, str):
        turns = _hh_turns(rejected)
        if turns is None:
            bad("rejected", "no 'prompt' field, and the text holds no '\\n\\nHuman:' / '\\n\\nAssistant:' turns")
            return problems
        messages = turns
    else:
        reply = _side(row, "rejected", bad, "assistant")
        if problems:
            return problems
        # A reply alone shares the chosen side's prompt; a whole conversation (TRL's implicit prompt) is its own.
        messages = reply if any(m.role == "user" for m in reply) else _prompt_turns(chosen) + reply
    for i, m in enumerate(messages):
        if _blank(m.content):
            bad(f"rejected[{i}]", f"empty {m.role} turn")
    _check_order(messages, "rejected", bad)
    return problems or tuple(messages)


def _prompt_turns(chosen: list[Message]) -> list[Message]:
    """The chosen conversation without its final assistant reply."""
    end = len(chosen)
    while end and chosen[end - 1].role == "assistant":
        end -= 1
    return chosen[:end]


_ORDER_FIELD = {"messages": "messages", "prompt_completion": "completion", "preference": "chosen"}


def _missing(row: Mapping[str, Any], key: str) -> str:
    close = difflib.get_close_matches(key, [str(k) for k in row if k not in _all_keys()], n=1, cutoff=0.6)
    return f"missing field {key!r}" + (f" (found {close[0]!r}: did you mean {key!r}?)" if close else "")


def _all_keys() -> set[str]:
    return {k for keys in _KEYS.values() for k in keys} | {"role", "content", "from", "value"}


def _type_name(value: Any) -> str:
    return {list: "a list", dict: "an object", bool: "true/false", int: "a number", float: "a number"}.get(
        type(value), type(value).__name__
    )


def _text_field(row: Mapping[str, Any], key: str, bad: Report, *, required: bool, where: str = "") -> str:
    name = f"{where}{key}"
    if key not in row or row[key] is None:
        if required:
            bad(name, _missing(row, key) if key not in row else f"{key!r} is null")
        return ""
    value = _content_text(row[key])
    if value is None:
        bad(name, f"expected text, got {_type_name(row[key])}: {_short(row[key])}")
        return ""
    lone = _SURROGATE.search(value)
    if lone:
        # JSON can escape half of a UTF-16 pair ("\\ud83d"); no tokenizer can encode the result.
        bad(name, f"invalid text: unpaired surrogate \\u{ord(lone.group()):04x} at character {lone.start() + 1} "
                  "(half of an escaped emoji?)")
        return ""
    if required and _blank(value):
        shown = ", ".join(f"U+{ord(c):04X}" for c in dict.fromkeys(value) if not c.isspace())
        bad(name, f"empty content: only invisible characters ({shown})" if shown else "empty content")
    return value


_FILLERS = frozenset("\u115f\u1160\u3164\uffa0")
"""Hangul fillers: letters by category that draw nothing, a favourite of invisible-text tricks."""


def _blank(text: str) -> bool:
    """True when `text` shows nothing: whitespace, and format characters such as zero-width
    spaces and joiners (U+200B-U+200D), the word joiner (U+2060) and a stray BOM (U+FEFF)."""
    return all(c.isspace() or c in _FILLERS or unicodedata.category(c) == "Cf" for c in text)


def _content_text(value: Any) -> str | None:
    """Plain text, or the text parts of an OpenAI-style content list joined; None for anything else."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(
        isinstance(p, Mapping) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in value
    ):
        return "".join(p["text"] for p in value)
    return None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _alpaca(row: Mapping[str, Any], bad: Report) -> list[Message]:
    instruction = _text_field(row, "instruction", bad, required=True)
    extra = _text_field(row, "input", bad, required=False)
    output = _text_field(row, "output", bad, required=True)
    system = _text_field(row, "system", bad, required=False)
    prompt = instruction if _blank(extra) else f"{instruction}\n\n{extra}"
    messages = [] if _blank(system) else [Message("system", system)]
    return messages + [Message("user", prompt), Message("assistant", output)]


def _turns(row: Mapping[str, Any], key: str, bad: Report) -> list[Message]:
    if row.get(key) is None:
        bad(key, _missing(row, key) if key not in row else f"{key!r} is null")
        return []
    turns = row[key]
    if not isinstance(turns, list):
        bad(key, f"expected a list of turns, got {_type_name(turns)}: {_short(turns)}")
        return []
    if not turns:
        bad(key, "empty conversation")
        return []
    messages = []
    for i, turn in enumerate(turns):
        where = f"{key}[{i}]"
        if not isinstance(turn, Mapping):
            bad(where, f"expected an object with role and content, got {_type_name(turn)}: {_short(turn)}")
            continue
        if "role" not in turn and "from" not in turn and ("input" in turn or "output" in turn):
            # Capybara's turns are exchanges: the user's input and the assistant's output.
            for text_key, speaker in (("input", "user"), ("output", "assistant")):
                messages.append(Message(speaker, _text_field(turn, text_key, bad, required=True, where=f"{where}.")))
            continue
        # ShareGPT turns use from/value and chat turns role/content; real files mix the two
        # container names and turn shapes, so either turn shape is read under either key.
        role_key = "role" if "role" in turn or "from" not in turn else "from"
        if "content" in turn or "value" in turn:
            text_key = "content" if "content" in turn else "value"
        else:
            text_key = "value" if role_key == "from" else "content"
        if role_key not in turn:
            bad(f"{where}.role", _missing(turn, "role"))
            continue
        raw_role = turn[role_key]
        role = _ROLES.get(raw_role) if isinstance(raw_role, str) else None
        if role is None:
            close = difflib.get_close_matches(str(raw_role), list(_ROLES), n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            bad(f"{where}.{role_key}", f"unknown role {raw_role!r}: expected system, user or assistant{hint}")
            continue
        content = _text_field(turn, text_key, bad, required=True, where=f"{where}.")
        messages.append(Message(role, content))
    return messages


def _side(row: Mapping[str, Any], key: str, bad: Report, role: str) -> list[Message]:
    """A prompt or reply given as text (one turn of `role`) or as a list of chat turns."""
    value = row.get(key)
    if isinstance(value, list) and value and isinstance(value[0], Mapping) and "type" not in value[0]:
        return _turns(row, key, bad)
    text = _text_field(row, key, bad, required=True)
    return [Message(role, text)]


def _prompt_completion(row: Mapping[str, Any], bad: Report) -> list[Message]:
    """TRL's prompt/completion rows, plain (a user turn and the reply) or conversational (turn lists)."""
    return _side(row, "prompt", bad, "user") + _side(row, "completion", bad, "assistant")


def _preference(row: Mapping[str, Any], bad: Report) -> list[Message]:
    """The chosen side of a preference row (what SFT trains on; `_rejected` reads the other side).

    The prompt is the `prompt` field, or, without one, the conversation the chosen side holds
    (TRL's implicit prompt as a turn list, HH-RLHF's "\\n\\nHuman: ... \\n\\nAssistant: ..." text).
    """
    chosen = row.get("chosen")
    if row.get("prompt") is None and isinstance(chosen, str):
        turns = _hh_turns(chosen)
        if turns is None:
            bad("chosen", "no 'prompt' field, and the text holds no '\\n\\nHuman:' / '\\n\\nAssistant:' turns to "
                          "take one from")
            return []
        for i, m in enumerate(turns):
            if _blank(m.content):
                bad(f"chosen[{i}]", f"empty {m.role} turn")
        return turns
    reply = _side(row, "chosen", bad, "assistant")
    if any(m.role == "user" for m in reply):
        return reply
    return _side(row, "prompt", bad, "user") + reply


def _hh_turns(text: str) -> list[Message] | None:
    parts = _HH_TURN.split(text)
    if len(parts) < 3 or parts[0].strip():
        return None
    return [Message("user" if speaker == "Human" else "assistant", content.strip())
            for speaker, content in zip(parts[1::2], parts[2::2], strict=True)]


def _check_order(messages: list[Message], key: str, bad: Report) -> None:
    for i, m in enumerate(messages):
        if m.role == "system" and i > 0:
            bad(f"{key}[{i}].role", "a system turn can only come first")
            return
    roles = [m.role for m in messages]
    if "assistant" not in roles:
        bad(key, "no assistant turn: nothing to train on")
    elif "user" not in roles:
        bad(key, "no user turn: an assistant reply needs a prompt")
    elif roles[-1] != "assistant":
        bad(key, f"ends with a {roles[-1]} turn: the last turn must be the assistant's reply")
