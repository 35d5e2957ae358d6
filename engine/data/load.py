"""Loading a dataset into conversations: detect the format, skip and report bad rows.

The default is forgiving (skip bad rows, report each with file, line and field) because one
typo in a 50k-row file should not cost a run; `strict` refuses at the first problem, and the
caller refuses when too large a share is bad (`RunConfig.max_bad_share`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, replace

from engine.data.formats import FORMATS, detect, normalise, unknown_format_problem
from engine.data.mapping import DataMapping, recognise, suggest
from engine.data.readers import MAX_ROW_BYTES, TOO_LARGE, DatasetError, read_rows
from engine.data.types import Conversation, DataProblem


@dataclass(frozen=True)
class LoadResult:
    format: str
    """"alpaca", "sharegpt", "messages", "text", or "unknown" when no row was recognised."""
    conversations: tuple[Conversation, ...]
    problems: tuple[DataProblem, ...]
    rows: int
    """Records read, good and bad (blank JSONL lines are not records)."""
    mapping: DataMapping = DataMapping()
    """The column and role mapping used: the caller's, a recognised schema's, or none."""
    notes: tuple[str, ...] = ()
    """What a person should know about how the rows were read (preference data trains on `chosen`)."""
    suggestion: DataMapping | None = None
    """A mapping that makes more rows usable than the one used, when one was found."""
    suggestion_usable: int = 0
    """Rows usable with `suggestion`."""

    @property
    def bad_rows(self) -> int:
        return self.rows - len(self.conversations)

    @property
    def bad_share(self) -> float:
        return self.bad_rows / self.rows if self.rows else 1.0


def load_conversations(path: str, fmt: str = "auto", strict: bool = False,
                       mapping: DataMapping | None = None, split: str = "", pairs: bool = False) -> LoadResult:
    """Read `path` (a file or hub dataset id) in format `fmt` ("auto" detects it per file), its
    columns and roles renamed by `mapping` (a well-known schema is recognised without one);
    `split` names a hub dataset's split ("" picks `train` or the SFT split). With `pairs` (the dpo
    and orpo objectives) a row without a usable rejected reply is a bad row.

    Raises DatasetError when the source cannot be read at all, has no rows, or (strict) on
    the first bad row.
    """
    if fmt != "auto" and fmt not in FORMATS:
        raise DatasetError([DataProblem(path, None, None, f"unknown format {fmt!r}: choose from auto, {', '.join(FORMATS)}")])
    records: list[tuple[int, Mapping] | DataProblem] = []
    for item in read_rows(path, split):
        if not isinstance(item, DataProblem) and not isinstance(item[1], Mapping):
            item = DataProblem(path, item[0], None, f"expected an object (one record per line), got {type(item[1]).__name__}")
        records.append(item)
    if not records:
        raise DatasetError([DataProblem(path, None, None, "has no rows")])
    rows = [r[1] for r in records if not isinstance(r, DataProblem)]
    used = _with_builtin(mapping or DataMapping(), rows[0] if rows else {})
    result = _load_records(records, used, fmt, path, strict, pairs)
    if result.bad_rows and not strict and not mapping:
        suggested = suggest(rows)
        if suggested is not None and suggested != used:
            retry = _load_records(records, suggested, fmt, path, False, pairs)
            if len(retry.conversations) > len(result.conversations):
                return replace(result, suggestion=suggested, suggestion_usable=len(retry.conversations))
    return result


def _with_builtin(mapping: DataMapping, first: Mapping) -> DataMapping:
    """The caller's mapping, or with no columns given, the columns of a schema recognised in the first row."""
    builtin = recognise(mapping.apply(first)) if not mapping.columns else DataMapping()
    if not builtin:
        return mapping
    return DataMapping(builtin.columns, mapping.roles, builtin.schema)


def _load_records(records: list[tuple[int, Mapping] | DataProblem], mapping: DataMapping, fmt: str, path: str,
                  strict: bool, pairs: bool = False) -> LoadResult:
    mapped: list[tuple[int, dict] | DataProblem] = [r if isinstance(r, DataProblem) else (r[0], mapping.apply(r[1]))
                                                     for r in records]
    rows = [r[1] for r in mapped if not isinstance(r, DataProblem)]
    file_format = fmt if fmt != "auto" else _majority(detect(row) for row in rows)

    conversations: list[Conversation] = []
    problems: list[DataProblem] = []
    for record in mapped:
        got = [record] if isinstance(record, DataProblem) else _normalise_row(record[1], file_format, fmt, path, record[0],
                                                                                   pairs)
        if isinstance(got, Conversation):
            conversations.append(got)
            continue
        got = [replace(p, field=mapping.file_field(p.field)) for p in got]
        if strict:
            raise DatasetError(got, "refused (strict): the first bad row")
        problems.extend(got)
    notes = (PREFERENCE_NOTE,) if file_format == "preference" and not pairs else ()
    return LoadResult(file_format or "unknown", tuple(conversations), tuple(problems), len(records), mapping, notes)


PREFERENCE_NOTE = ("preference data (prompt/chosen/rejected): objective = sft trains on the chosen replies "
                   "and leaves the rejected ones out; objective = dpo or orpo trains on both")


def _normalise_row(row: Mapping, file_format: str | None, forced: str, path: str, line: int,
                   pairs: bool = False) -> Conversation | list[DataProblem]:
    own = detect(row)
    if file_format is None:
        return [unknown_format_problem(row, path, line)]
    if own is not None and own != file_format and forced == "auto":
        return [DataProblem(
            path, line, None,
            f"mixed formats: this row is {own} but the file is {file_format}; convert it or split the file",
        )]
    got = normalise(row, file_format, path, line, pairs)
    if isinstance(got, Conversation):
        # JSONL rows were measured as they were read; a JSON array, CSV or Parquet row is measured here.
        size = len(got.raw_text or "") + sum(len(m.content) for m in (*got.messages, *(got.rejected or ())))
        if size > MAX_ROW_BYTES:
            return [DataProblem(
                path, line, None,
                f"row holds {size:,} characters of text, over the {MAX_ROW_BYTES:,} limit for one row ({TOO_LARGE})",
            )]
    return got


def _majority(formats) -> str | None:
    counts = Counter(f for f in formats if f is not None)
    return counts.most_common(1)[0][0] if counts else None
