"""Reading a data source into numbered rows: local JSONL/JSON/CSV/Parquet files or a hub dataset.

JSON and JSONL are read here line by line rather than through `datasets`: its Arrow-based JSON
reader fails the whole file on one bad line without saying which, and unifies the schema
across rows, so one row with a wrong-typed field is a crash instead of one reported row.
CSV, Parquet and hub datasets go through `datasets`, which reads them well; a byte scan first
gives CSV's encoding errors a line number.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from engine.data.types import DataProblem

EXTENSIONS = (".jsonl", ".json", ".csv", ".parquet")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")

Row = tuple[int, Any]
"""(line, value): the line in JSONL, record index + 1 in a JSON array, the file line for CSV
(row + 1 after the header), row index + 1 for Parquet and hub datasets."""


class DatasetError(Exception):
    """The data cannot be used; carries every problem found so a form or CLI can list them."""

    def __init__(self, problems: list[DataProblem] | tuple[DataProblem, ...], summary: str = ""):
        self.problems = tuple(problems)
        self.summary = summary
        shown = "\n".join(f"  {p}" for p in self.problems[:10])
        more = f"\n  ... and {len(self.problems) - 10} more" if len(self.problems) > 10 else ""
        head = f"{summary}\n" if summary else ""
        super().__init__(f"{head}{shown}{more}".rstrip())


def read_rows(source: str) -> Iterator[Row | DataProblem]:
    """Rows of a file or hub dataset, with unreadable lines yielded as problems in their place.

    Raises DatasetError when the source as a whole cannot be read.
    """
    path = Path(source)
    if path.is_dir():
        raise DatasetError([DataProblem(source, None, None, "is a folder: give a .jsonl, .json, .csv or .parquet file")])
    if path.exists():
        suffix = path.suffix.lower()
        if suffix not in EXTENSIONS:
            raise DatasetError([DataProblem(
                source, None, None, f"unsupported file type {suffix or '(none)'!r}: use .jsonl, .json, .csv or .parquet"
            )])
        if path.stat().st_size == 0:
            raise DatasetError([DataProblem(source, None, None, "file is empty")])
        reader = {".jsonl": _jsonl, ".json": _json, ".csv": _csv, ".parquet": _parquet}[suffix]
        return reader(path)
    if path.suffix.lower() in EXTENSIONS or source.startswith((".", "/", "~")) or not _HUB_ID.match(source):
        raise DatasetError([DataProblem(source, None, None, "file does not exist")])
    return _hub(source)


def _jsonl(path: Path) -> Iterator[Row | DataProblem]:
    name = str(path)
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield DataProblem(name, number, None, f"not UTF-8: byte 0x{raw[exc.start]:02x} at column {exc.start + 1}")
                continue
            if number == 1:
                text = text.removeprefix("\ufeff")
            text = text.rstrip("\r\n")
            if not text.strip():
                continue
            try:
                value = json.loads(text)
            except (ValueError, RecursionError) as exc:
                yield DataProblem(name, number, None, f"malformed JSON: {_json_error(exc, text)}")
                continue
            yield number, value


def _json_error(exc: ValueError | RecursionError, text: str) -> str:
    """What is wrong with `text`, and where on its line (for JSONL) when the parser says."""
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    if not isinstance(exc, json.JSONDecodeError):
        # Python refuses to turn a number of over 4300 digits into an int (CVE-2020-10735).
        return f"a number over {sys.get_int_max_str_digits()} digits long" if "digits" in str(exc) else str(exc)
    # Some of json's messages end in "at" ("Unterminated string starting at").
    msg = exc.msg.removesuffix(" at")
    if "\n" in text:
        return f"{msg} at column {exc.colno}"
    return f"{msg} at end of line" if exc.pos >= len(text.rstrip()) else f"{msg} at column {exc.pos + 1}"


def _json(path: Path) -> Iterator[Row | DataProblem]:
    name = str(path)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DatasetError([DataProblem(name, line, None, f"not UTF-8: byte 0x{raw[exc.start]:02x}")]) from None
    if not text.strip():
        raise DatasetError([DataProblem(name, None, None, "file is empty")])
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        if isinstance(exc, json.JSONDecodeError) and exc.msg == "Extra data":
            # Many published ".json" datasets are JSON Lines under the wrong extension.
            return _jsonl(path)
        line = exc.lineno if isinstance(exc, json.JSONDecodeError) else None
        raise DatasetError([DataProblem(name, line, None, f"malformed JSON: {_json_error(exc, text)}")]) from None
    if isinstance(data, dict):
        lists = [k for k, v in data.items() if isinstance(v, list)]
        if len(lists) != 1:
            raise DatasetError([DataProblem(
                name, None, None, "expected a JSON array of records (or one object holding a single array)"
            )])
        data = data[lists[0]]
    if not isinstance(data, list):
        raise DatasetError([DataProblem(name, None, None, f"expected a JSON array of records, got {type(data).__name__}")])
    if not data:
        raise DatasetError([DataProblem(name, None, None, "the JSON array is empty")])
    return iter(list(enumerate(data, start=1)))


def _csv(path: Path) -> Iterator[Row | DataProblem]:
    name = str(path)
    for number, raw in enumerate(path.read_bytes().splitlines(), start=1):
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DatasetError([DataProblem(name, number, None, f"not UTF-8: byte 0x{raw[exc.start]:02x}")]) from None
    rows = _load_with_datasets(name, "csv", data_files=str(path))
    # CSV cells cannot hold lists, so a chat column arrives as JSON text.
    return ((i + 2, _decode_nested(row)) for i, row in enumerate(rows))


def _parquet(path: Path) -> Iterator[Row | DataProblem]:
    rows = _load_with_datasets(str(path), "parquet", data_files=str(path))
    return ((i + 1, row) for i, row in enumerate(rows))


def _hub(dataset_id: str) -> Iterator[Row | DataProblem]:
    rows = _load_with_datasets(dataset_id, dataset_id)
    return ((i + 1, row) for i, row in enumerate(rows))


def _load_with_datasets(name: str, builder: str, **kwargs: Any) -> Any:
    import datasets
    from datasets.exceptions import DatasetNotFoundError

    try:
        return datasets.load_dataset(builder, split="train", **kwargs)
    except DatasetNotFoundError:
        raise DatasetError([DataProblem(
            name, None, None, "no such local file, and no such dataset on the Hugging Face hub "
            "(if it is private or gated, log in with `hf auth login`)"
        )]) from None
    except ConnectionError:
        raise DatasetError([DataProblem(
            name, None, None, "no such local file, and cannot reach the Hugging Face hub (offline?): download the "
            "dataset elsewhere and give the file path, or use a copy already in the datasets cache with HF_HUB_OFFLINE=1"
        )]) from None
    except ValueError as exc:
        if "split" in str(exc).lower():
            raise DatasetError([DataProblem(name, None, None, f"has no 'train' split: {exc}")]) from None
        raise DatasetError([DataProblem(name, None, None, f"cannot be read: {exc}")]) from None
    except Exception as exc:  # pyarrow/pandas raise many unrelated types for a corrupt file
        raise DatasetError([DataProblem(name, None, None, f"cannot be read: {type(exc).__name__}: {exc}")]) from None


def _decode_nested(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for key in ("messages", "conversations"):
        value = out.get(key)
        if isinstance(value, str) and value.lstrip().startswith("["):
            try:
                out[key] = json.loads(value)
            except (ValueError, RecursionError):
                pass  # left as text: the row is then reported as having the wrong type
    return out
