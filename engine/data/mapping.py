"""Column and role mapping: other tools' dataset schemas read as they are, without converting files.

LLaMA-Factory describes a dataset's columns and role tags in `dataset_info.json`; Axolotl has
`field_instruction`, `field_messages`, `message_property_mappings` and `roles`. ftui's mapping is
the same idea in three settings: `columns` (ftui's field = the file's column), `roles` (ftui's
role = the file's role names) and `messages_field` (the column holding the list of turns). The
common public schemas need no setting: Dolly's instruction/context/response and Capybara's
`conversation` of input/output pairs are recognised from the first row. `describe()` says which
mapping a load used, so `ftui data check` can print it, and `suggest` proposes one for a file
in no known format, which the loader keeps only when it makes more rows usable.
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from engine.data.formats import known_role

FIELDS = ("instruction", "input", "output", "system", "messages", "conversations", "text", "prompt", "completion",
          "chosen", "rejected", "role", "content")
"""ftui's field names a column can be mapped to; `role` and `content` name the keys inside each turn."""
TURN_FIELDS = ("role", "content")
ROLES = ("system", "user", "assistant")
_TURN_LISTS = ("messages", "conversations", "prompt", "completion", "chosen", "rejected")


class MappingError(ValueError):
    """A mapping entry that cannot work: not `field=column`, an unknown ftui field or role."""


@dataclass(frozen=True)
class DataMapping:
    columns: tuple[tuple[str, str], ...] = ()
    """(ftui field, the file's column) pairs."""
    roles: tuple[tuple[str, str], ...] = ()
    """(ftui role, the file's role name) pairs."""
    schema: str = ""
    """The built-in schema this mapping is ("dolly", "capybara"); "" for the user's own."""

    @classmethod
    def parse(cls, columns: Iterable[str] = (), roles: Iterable[str] = (), messages_field: str = "") -> DataMapping:
        """From `field=column` and `role=name` entries as the config and the CLI hold them."""
        pairs = [_pair(entry, FIELDS, "columns", "field") for entry in columns]
        if messages_field.strip():
            pairs.append(("messages", messages_field.strip()))
        role_pairs = [_pair(entry, ROLES, "roles", "role") for entry in roles]
        return cls(tuple(dict(pairs).items()), tuple(dict.fromkeys(role_pairs)))

    @classmethod
    def from_config(cls, config: Any) -> DataMapping:
        return cls.parse(config.columns, config.roles, config.messages_field)

    def __bool__(self) -> bool:
        return bool(self.columns or self.roles)

    def apply(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """The row with mapped columns under ftui's names, turn keys and role names renamed."""
        out = dict(row)
        turn_keys = {}
        for field, column in self.columns:
            if field in TURN_FIELDS:
                turn_keys[column] = field
            elif column in row and column != field:
                out[field] = out.pop(column)
        roles = {name: role for role, name in self.roles}
        if turn_keys or roles:
            for key in _TURN_LISTS:
                if isinstance(out.get(key), list):
                    out[key] = [_turn(t, turn_keys, roles) for t in out[key]]
        return out

    def file_field(self, field: str | None) -> str | None:
        """A problem's field (`messages[2].role`) in the file's own names (`conversation[2].from`)."""
        if not field or not self.columns:
            return field
        back = {f: c for f, c in self.columns}
        head, rest = re.match(r"^(\w*)(.*)$", field).groups()  # type: ignore[union-attr]
        head = back.get(head, head) if head not in TURN_FIELDS else head
        return head + re.sub(r"\.(role|content)$", lambda m: "." + back.get(m.group(1), m.group(1)), rest)

    def describe(self) -> str:
        """`columns output=response, input=context; roles user=prompter`, led by the schema's name."""
        text = self._settings("{} ", ", ", "; ")
        return f"{self.schema} ({text})" if self.schema else text

    def as_flags(self) -> str:
        """`--columns output=response,input=context --roles user=prompter`."""
        return self._settings("--{} ", ",", " ")

    def _settings(self, name: str, comma: str, between: str) -> str:
        parts = [name.format(setting) + comma.join(f"{k}={v}" for k, v in pairs)
                 for setting, pairs in (("columns", self.columns), ("roles", self.roles)) if pairs]
        return between.join(parts)

    def as_toml(self) -> str:
        lines = []
        if self.columns:
            lines.append("columns = {" + ", ".join(f"{f} = {_quote(c)}" for f, c in self.columns) + "}")
        if self.roles:
            grouped: dict[str, list[str]] = {}
            for role, name in self.roles:
                grouped.setdefault(role, []).append(name)
            lines.append("roles = {" + ", ".join(
                f"{r} = [{', '.join(_quote(n) for n in names)}]" for r, names in grouped.items()) + "}")
        return "\n".join(lines)


def recognise(row: Mapping[str, Any]) -> DataMapping:
    """The built-in mapping for a row in a well-known schema that ftui's own names do not cover."""
    if "instruction" in row and "response" in row and "output" not in row:
        columns = [("output", "response")] + ([("input", "context")] if "context" in row and "input" not in row else [])
        return DataMapping(tuple(columns), schema="dolly")
    if "conversation" in row and not {"messages", "conversations"} & set(row):
        turns = row["conversation"]
        pairs = isinstance(turns, list) and bool(turns) and isinstance(turns[0], Mapping) and "input" in turns[0]
        return DataMapping((("messages", "conversation"),), schema="capybara" if pairs else "")
    return DataMapping()


_LIKE = {
    "instruction": ("question", "query", "problem", "task", "request", "instructions", "prompt", "human", "user"),
    "output": ("answer", "response", "reply", "solution", "target", "completion", "answers", "assistant", "gpt",
               "outputs"),
    "input": ("context", "inputs", "passage"),
    "system": ("systemprompt", "sys", "persona"),
    "messages": ("conversation", "conversations", "dialog", "dialogue", "chat", "turns", "history", "thread"),
    "text": ("content", "body", "document", "story", "article", "passage", "texts"),
}
_USER_LIKE = ("prompter", "human", "customer", "client", "question", "usr", "person", "patient", "student")
_ASSISTANT_LIKE = ("bot", "ai", "model", "agent", "gpt", "chatbot", "answer", "doctor", "teacher", "system_reply")


def suggest(rows: list[Mapping[str, Any]]) -> DataMapping | None:
    """A mapping that reads rows in no known format, from their column names and turn roles."""
    if not rows:
        return None
    first = rows[0]
    norm = {re.sub(r"[^a-z]", "", str(k).lower()): str(k) for k in first}
    lists = [str(k) for k, v in first.items() if isinstance(v, list) and v and isinstance(v[0], Mapping)]
    texts = [str(k) for k, v in first.items() if isinstance(v, str)]

    def like(field: str, among: list[str]) -> str | None:
        for name in _LIKE[field]:
            if name in norm and norm[name] in among:
                return norm[name]
        return None

    columns: list[tuple[str, str]] = []
    if "messages" not in first and "conversations" not in first and lists:
        columns.append(("messages", like("messages", lists) or lists[0]))
    elif "messages" not in first and "conversations" not in first:
        prompt = "prompt" if "prompt" in first else None
        question = like("instruction", texts) if not prompt else None
        answer = like("output", [t for t in texts if t not in (prompt, question)])
        if prompt and answer:
            columns.append(("completion", answer))
        elif question and answer:
            columns += [("instruction", question), ("output", answer)]
            extra = like("input", [t for t in texts if t not in (question, answer)])
            system = like("system", texts)
            columns += [("input", extra)] if extra else []
            columns += [("system", system)] if system else []
        elif "text" not in first and "output" not in first and "instruction" not in first:
            text = like("text", texts) or (texts[0] if len(texts) == 1 else None)
            if text:
                columns.append(("text", text))
    mapping = DataMapping(tuple(c for c in columns if c[0] != c[1]))
    roles = _suggest_roles(rows, dict(mapping.columns).get("messages"))
    mapping = DataMapping(mapping.columns, roles)
    return mapping or None


def _suggest_roles(rows: list[Mapping[str, Any]], messages_column: str | None) -> tuple[tuple[str, str], ...]:
    """Roles the formats do not know, put on the side of the conversation they speak on."""
    votes: dict[str, Counter[str]] = {}
    keys = [messages_column] if messages_column else list(_TURN_LISTS)
    for row in rows[:200]:
        for key in keys:
            turns = row.get(key)
            if not isinstance(turns, list):
                continue
            spoken = 0
            for turn in turns:
                if not isinstance(turn, Mapping):
                    continue
                name = turn.get("role", turn.get("from"))
                if not isinstance(name, str):
                    continue
                role = known_role(name)
                if role is None:
                    guess = ("user" if name.lower() in _USER_LIKE else "assistant" if name.lower() in _ASSISTANT_LIKE
                             else "user" if spoken % 2 == 0 else "assistant")
                    votes.setdefault(name, Counter())[guess] += 1
                    role = guess
                if role != "system":
                    spoken += 1
    return tuple((counts.most_common(1)[0][0], name) for name, counts in votes.items())


def _pair(entry: str, allowed: tuple[str, ...], setting: str, what: str) -> tuple[str, str]:
    key, sep, value = str(entry).partition("=")
    key, value = key.strip(), value.strip()
    if not sep or not key or not value:
        raise MappingError(f"{setting}: {entry!r} is not {what}=name (e.g. {'output=response' if what == 'field' else 'user=prompter'})")
    if key not in allowed:
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise MappingError(f"{setting}: {key!r} is not one of ftui's {what}s{hint}: {', '.join(allowed)}")
    return key, value


def _turn(turn: Any, keys: dict[str, str], roles: dict[str, str]) -> Any:
    if not isinstance(turn, Mapping):
        return turn
    out = {keys.get(str(k), k): v for k, v in turn.items()}
    role_key = "role" if "role" in out else "from"
    if isinstance(out.get(role_key), str) and out[role_key] in roles:
        out[role_key] = roles[out[role_key]]
    return out


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
