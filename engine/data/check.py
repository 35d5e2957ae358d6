"""`ftui data check` as a function: everything a person should know about a dataset before a run.

It applies the same rules as `prepare` (same loader, renderer and fitting policy), so "check
says usable" means "training will accept it".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.config.schema import PAIR_OBJECTIVES, RunConfig
from engine.data.load import LoadResult, load_conversations
from engine.data.mapping import DataMapping
from engine.data.prepare import fit
from engine.data.readers import DatasetError, read_rows
from engine.data.render import RenderError, render
from engine.data.rl_prompts import prompt_row
from engine.data.types import Conversation, DataProblem
from engine.display import printable
from engine.files.paths import resolve_project_path

PERCENTILES = (50, 90, 95, 99)


@dataclass(frozen=True)
class Segment:
    text: str
    trained: bool


@dataclass(frozen=True)
class DataReport:
    path: str
    format: str
    rows: int
    usable_rows: int
    """Rows that load and (with a tokenizer) render and fit max_seq_len."""
    problems: tuple[DataProblem, ...]
    refusal: str | None
    """Why training would refuse this data; None when it is usable."""
    lengths: tuple[int, ...] = ()
    """Token length of each example that renders, in file order (with a tokenizer)."""
    percentiles: dict[str, int] | None = None
    """Token-length percentiles p50/p90/p95/p99 and max (with a tokenizer)."""
    max_seq_len: int | None = None
    over_length: int = 0
    """Examples longer than max_seq_len: their prompt side is cut from the left."""
    dropped: int = 0
    """Examples whose final turn alone exceeds max_seq_len: left out of training."""
    sample: tuple[Segment, ...] = ()
    """The first usable conversation as the model sees it, trained parts marked."""
    sample_line: int | None = None
    mapping: str = ""
    """The column and role mapping the rows were read with ("" for none), e.g. `dolly (columns output=response)`."""
    notes: tuple[str, ...] = ()
    """How the rows were read, when it is not plain (preference data trains on the chosen reply)."""
    suggestion: dict[str, Any] | None = None
    """A mapping that makes more rows usable: {"flags", "toml", "usable_rows"}."""
    objectives: tuple[str, ...] = ()
    """The objectives the rows can feed: sft (replies), dpo and orpo (chosen and rejected replies),
    grpo (prompts, with an optional `expected` answer)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "format": self.format,
            "rows": self.rows,
            "usable_rows": self.usable_rows,
            "usable": self.refusal is None,
            "refusal": self.refusal,
            "problems": [{"file": p.file, "line": p.line, "field": p.field, "message": p.message} for p in self.problems],
            "length_percentiles": self.percentiles,
            "max_seq_len": self.max_seq_len,
            "over_length": self.over_length,
            "dropped": self.dropped,
            "sample_line": self.sample_line,
            "sample": [{"text": s.text, "trained": s.trained} for s in self.sample],
            "mapping": self.mapping,
            "notes": list(self.notes),
            "suggestion": self.suggestion,
            "objectives": list(self.objectives),
        }


def check(
    path: str,
    fmt: str = "auto",
    tokenizer: Any = None,
    max_seq_len: int | None = None,
    *,
    strict: bool = False,
    max_bad_share: float = RunConfig.max_bad_share,
    train_on_responses_only: bool = True,
    mapping: DataMapping | None = None,
    split: str = "",
) -> DataReport:
    """Load and validate `path`; with a tokenizer also measure lengths and render a sample.

    Never raises for bad data: an unreadable source is a report with rows = 0 and its problems.
    """
    path = resolve_project_path(path)
    try:
        loaded = load_conversations(path, fmt, strict=strict, mapping=mapping, split=split)
    except DatasetError as exc:
        why = exc.summary or (str(exc.problems[0]) if exc.problems else "unreadable")
        return DataReport(path, fmt if fmt != "auto" else "unknown", 0, 0, exc.problems, why)
    if not loaded.conversations and _prompt_rows(path, split):
        return DataReport(path, "prompts", loaded.rows, loaded.rows, (), None, objectives=("grpo",), notes=(
            PROMPTS_NOTE,))
    read_as = _read_as(loaded)
    refusal = _refusal(loaded, max_bad_share)
    if tokenizer is None:
        return DataReport(path, loaded.format, loaded.rows, len(loaded.conversations), tuple(loaded.problems), refusal,
                          **read_as)

    measured = _measure(path, loaded.conversations, tokenizer, max_seq_len, train_on_responses_only)
    usable = len(loaded.conversations) - len(measured.problems)
    if refusal is None and usable == 0:
        refusal = ("no example renders within max_seq_len" if measured.lengths
                   else "the chat template refused every conversation")
    return DataReport(
        path, loaded.format, loaded.rows, usable, (*loaded.problems, *measured.problems), refusal,
        lengths=measured.lengths, percentiles=_percentiles(list(measured.lengths)), max_seq_len=max_seq_len,
        over_length=measured.over_length, dropped=measured.dropped, sample=measured.sample,
        sample_line=measured.sample_line, **read_as,
    )


def _read_as(loaded: LoadResult) -> dict[str, Any]:
    """How the rows were read, for the report: the mapping, notes, the objectives they feed, a better mapping."""
    pairs = any(c.rejected is not None for c in loaded.conversations)
    read_as: dict[str, Any] = {"mapping": loaded.mapping.describe(), "notes": loaded.notes,
                               "objectives": ("sft", *PAIR_OBJECTIVES) if pairs else ("sft",)}
    if loaded.suggestion is not None:
        read_as["suggestion"] = {"flags": loaded.suggestion.as_flags(), "toml": loaded.suggestion.as_toml(),
                                 "usable_rows": loaded.suggestion_usable}
    return read_as


def _refusal(loaded: LoadResult, max_bad_share: float) -> str | None:
    """Why training would refuse the rows as loaded (before rendering); None when it would take them."""
    if not loaded.conversations:
        return f"no usable rows out of {loaded.rows}"
    if loaded.bad_share > max_bad_share:
        return (f"{loaded.bad_rows} of {loaded.rows} rows ({loaded.bad_share:.1%}) are bad, "
                f"over max_bad_share = {max_bad_share:g}")
    return None


@dataclass(frozen=True)
class _Measured:
    """What rendering each conversation with the tokenizer found."""

    lengths: tuple[int, ...]
    over_length: int
    dropped: int
    problems: tuple[DataProblem, ...]
    """One per conversation lost: the chat template refused it, or its final turn alone is over max_seq_len."""
    sample: tuple[Segment, ...]
    sample_line: int | None


def _measure(path: str, conversations: tuple[Conversation, ...], tokenizer: Any, max_seq_len: int | None,
             responses_only: bool) -> _Measured:
    """Render every conversation as training will: token lengths, what max_seq_len cuts or drops, the first sample."""
    lengths: list[int] = []
    over = dropped = 0
    problems: list[DataProblem] = []
    sample: tuple[Segment, ...] = ()
    sample_line = None
    for conversation in conversations:
        try:
            rendered = render(tokenizer, conversation, responses_only=responses_only)
        except RenderError as exc:
            problems.append(DataProblem(path, conversation.source_line, None, str(exc)))
            continue
        lengths.append(len(rendered.input_ids))
        if max_seq_len is not None and len(rendered.input_ids) > max_seq_len:
            over += 1
            if fit(rendered, max_seq_len) is None:
                dropped += 1
                problems.append(DataProblem(path, conversation.source_line, None, (
                    f"the final turn alone is {len(rendered.input_ids) - rendered.last_turn_token} tokens, "
                    f"over max_seq_len = {max_seq_len}: dropped"
                )))
                continue
        if not sample:
            sample, sample_line = _segments(rendered.text, rendered.trained_spans), conversation.source_line
    return _Measured(tuple(lengths), over, dropped, tuple(problems), sample, sample_line)


PROMPTS_NOTE = ("prompt rows with no reply: objective = grpo samples the replies and scores them (an 'expected' "
                "field is the answer its rewards compare with); sft, dpo and orpo need replies to train on")
REPLY_FIELDS = ("completion", "chosen", "output", "messages", "conversations", "text")


def _prompt_rows(path: str, split: str) -> bool:
    """Whether every row is a prompt and no reply (a `prompt` text, or `messages` ending with a user
    turn, as engine/data/rl_prompts.py reads them): what GRPO trains on."""
    rows = [item for item in read_rows(path, split) if not isinstance(item, DataProblem)]
    return bool(rows) and all(
        not isinstance(prompt_row(row, path, line), DataProblem)
        and not any(k in row for k in REPLY_FIELDS if k != "messages") for line, row in rows)


def _segments(text: str, spans: tuple[tuple[int, int], ...]) -> tuple[Segment, ...]:
    out: list[Segment] = []
    pos = 0
    for start, end in spans:
        if start > pos:
            out.append(Segment(printable(text[pos:start]), False))
        out.append(Segment(printable(text[start:end]), True))
        pos = end
    if pos < len(text):
        out.append(Segment(printable(text[pos:]), False))
    return tuple(out)


def _percentiles(lengths: list[int]) -> dict[str, int] | None:
    if not lengths:
        return None
    ordered = sorted(lengths)
    # Nearest-rank percentiles: every figure is a length some example really has.
    out = {f"p{p}": ordered[max(0, -(-p * len(ordered) // 100) - 1)] for p in PERCENTILES}
    out["max"] = ordered[-1]
    return out
