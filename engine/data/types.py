"""The shapes data takes between loading, rendering and training."""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.display import printable


@dataclass(frozen=True)
class Message:
    role: str
    """"system", "user" or "assistant"."""
    content: str


@dataclass(frozen=True)
class Conversation:
    messages: tuple[Message, ...]
    source_line: int
    """Line (JSONL), the line its row starts on (CSV), or row / record index + 1 (Parquet, JSON array)."""
    raw_text: str | None = None
    """Set for the `text` format (continued pre-training): trained on every token."""
    rejected: tuple[Message, ...] | None = None
    """Preference rows: the same prompt followed by the rejected reply (`messages` ends with the chosen one)."""


@dataclass(frozen=True)
class DataProblem:
    file: str
    line: int | None
    field: str | None
    message: str

    def __str__(self) -> str:
        """As shown to a person: a field or message quoting the row holds nothing a terminal acts on."""
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return printable(f"{where}: {self.field + ': ' if self.field else ''}{self.message}")


@dataclass(frozen=True)
class TokenizedExample:
    input_ids: tuple[int, ...]
    labels: tuple[int, ...]
    """-100 where no loss is taken (prompt side when training on responses only)."""
    source_line: int
    rejected: TokenizedExample | None = None
    """A preference pair's rejected side (this example is the chosen side), for the dpo and orpo objectives."""


@dataclass(frozen=True)
class PreparedData:
    """What the training loop consumes: tokenized, masked, split, with what was dropped."""

    train: tuple[TokenizedExample, ...]
    val: tuple[TokenizedExample, ...]
    format: str
    problems: tuple[DataProblem, ...] = field(default_factory=tuple)
    truncated: int = 0
    replayed: int = 0
    """Training examples that are replayed general conversations (engine/train/replay.py), at the end of `train`."""
