"""Reading a data source into numbered rows: local JSONL/JSON/CSV/Parquet files or a hub dataset.

JSON and JSONL are read here line by line rather than through `datasets`: its Arrow-based JSON
reader fails the whole file on one bad line without saying which, and unifies the schema
across rows, so one row with a wrong-typed field is a crash instead of one reported row.
CSV is read here too, with the csv module: `datasets` (pandas) numbers CSV rows by record, so a
quoted newline shifts every line number after it, refuses the whole file over one row with an
extra field, and turns cells such as "42" or "N/A" into numbers and nulls. Parquet and hub
datasets go through `datasets`, which reads them well.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import errno
import json
import os
import re
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from engine.data.types import DataProblem

EXTENSIONS = (".jsonl", ".json", ".csv", ".parquet")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")

Row = tuple[int, Any]
"""(line, value): the line in JSONL, record index + 1 in a JSON array, the file line a CSV row
starts on, row index + 1 for Parquet and hub datasets."""


class DatasetError(Exception):
    """The data cannot be used; carries every problem found so a form or CLI can list them."""

    def __init__(self, problems: list[DataProblem] | tuple[DataProblem, ...], summary: str = ""):
        self.problems = tuple(problems)
        self.summary = summary
        shown = "\n".join(f"  {p}" for p in self.problems[:10])
        more = f"\n  ... and {len(self.problems) - 10} more" if len(self.problems) > 10 else ""
        head = f"{summary}\n" if summary else ""
        super().__init__(f"{head}{shown}{more}".rstrip())


def read_rows(source: str, split: str = "") -> Iterator[Row | DataProblem]:
    """Rows of a file or hub dataset (its `split`, see `pick_split`), with unreadable lines
    yielded as problems in their place.

    Raises DatasetError when the source as a whole cannot be read.
    """
    path = Path(source)
    info = _stat(source)
    if info is None:
        if os.path.islink(source):
            raise DatasetError([DataProblem(source, None, None, f"is a link to {os.readlink(source)}, which does not exist")])
        if path.suffix.lower() in EXTENSIONS or source.startswith((".", "/", "~")) or not _HUB_ID.match(source):
            raise DatasetError([DataProblem(source, None, None, "file does not exist")])
        return _hub(source, split)
    if stat.S_ISDIR(info.st_mode):
        raise DatasetError([DataProblem(source, None, None, "is a folder: give a .jsonl, .json, .csv or .parquet file")])
    if not stat.S_ISREG(info.st_mode):
        # Checked before any open(): opening a FIFO with no writer blocks for ever, and a device
        # such as /dev/zero reports size 0 but never ends.
        kind = _FILE_KINDS.get(stat.S_IFMT(info.st_mode), "not a file")
        what = f"it links to {os.readlink(source)}, {kind}" if os.path.islink(source) else f"it is {kind}"
        raise DatasetError([DataProblem(source, None, None, f"is not a regular file: {what}")])
    suffix = path.suffix.lower()
    if suffix not in EXTENSIONS:
        raise DatasetError([DataProblem(
            source, None, None, f"unsupported file type {suffix or '(none)'!r}: use .jsonl, .json, .csv or .parquet"
        )])
    if info.st_size == 0:
        raise DatasetError([DataProblem(source, None, None, "file is empty")])
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError as exc:
        raise DatasetError([_os_problem(source, exc)]) from None
    encoding = _wide_encoding(head) if suffix != ".parquet" else None
    if encoding:
        # Decoded as UTF-8 it would be "not UTF-8" on line 1 and "malformed JSON" on every other.
        raise DatasetError([DataProblem(source, None, None, f"this file is {encoding}; save it as UTF-8")])
    reader = {".jsonl": _jsonl, ".json": _json, ".csv": _csv, ".parquet": _parquet}[suffix]
    return reader(path)


_FILE_KINDS = {
    stat.S_IFIFO: "a named pipe (FIFO)", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def _stat(source: str) -> os.stat_result | None:
    """The file's status through any links; None when there is no such file."""
    try:
        return os.stat(source)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise DatasetError([DataProblem(
                source, None, None, "is a symlink loop (it leads back to itself): link it to the real file"
            )]) from None
        raise DatasetError([_os_problem(source, exc)]) from None


def _os_problem(source: str, exc: OSError) -> DataProblem:
    if isinstance(exc, PermissionError):
        return DataProblem(source, None, None, "cannot be read: permission denied (see its owner and mode with `ls -l`)")
    return DataProblem(source, None, None, f"cannot be read: {exc.strerror or exc}")


def _wide_encoding(head: bytes) -> str | None:
    """"UTF-16" or "UTF-32" when the first bytes of a text file say so, else None.

    Without a byte-order mark, the zero bytes give it away: in UTF-16 every ASCII character
    (all of JSON's and CSV's punctuation and keys) has one, at odd offsets (little-endian) or
    even ones (big-endian); UTF-8 text has none.
    """
    if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        return "UTF-32"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "UTF-16"
    zeros = sorted((head[0::2].count(0), head[1::2].count(0)))
    many = len(head) // 8  # a quarter of one parity's bytes
    if not many or zeros[1] < many:
        return None
    if zeros[0] >= many:
        return "UTF-32"  # ASCII in UTF-32 has three zero bytes in four
    return "UTF-16" if zeros[0] <= zeros[1] // 8 else None


MAX_ROW_BYTES = 4_000_000
"""The most text one row may hold. The longest context in the model catalog is 131072 tokens,
about 0.5 MB of English; 4 MB leaves room for scripts and escapes that take more bytes per
token, so nothing that could train is refused, while tokenising a larger row only to drop it
as over max_seq_len costs seconds to minutes and gigabytes (a 50 MB row: about a minute, 6.6 GB)."""

TOO_LARGE = "more text than any model's context holds"


def _jsonl(path: Path) -> Iterator[Row | DataProblem]:
    name = str(path)
    with open(path, "rb") as fh:
        number = 0
        # readline with a limit, so an enormous line is measured in pieces, never held whole.
        while raw := fh.readline(MAX_ROW_BYTES + 2):
            number += 1
            size = len(raw.rstrip(b"\r\n"))
            if size > MAX_ROW_BYTES:
                size += 0 if raw.endswith(b"\n") else _skip_line(fh)
                yield DataProblem(name, number, None, f"row is {size:,} bytes, over the {MAX_ROW_BYTES:,}-byte limit "
                                  f"for one row ({TOO_LARGE})")
                continue
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


def _skip_line(fh: Any) -> int:
    """Read on to the end of the current line; the bytes read, less the line ending."""
    size = 0
    while chunk := fh.readline(1 << 20):
        size += len(chunk)
        if chunk.endswith(b"\n"):
            return size - len(chunk) + len(chunk.rstrip(b"\r\n"))
    return size


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


MAX_JSON_BYTES = 512 * 1024**2
"""A .json array is parsed whole (several times its size in memory); JSON Lines are streamed."""
MAX_DATASET_BYTES = 20 * 1024**3
"""Parquet files and hub datasets over this are refused before they are read or downloaded."""


def _json(path: Path) -> Iterator[Row | DataProblem]:
    name = str(path)
    size = path.stat().st_size
    if size > MAX_JSON_BYTES:
        raise DatasetError([DataProblem(name, None, None, (
            f"is {_gib(size)} of JSON, over the {_gib(MAX_JSON_BYTES)} ftui parses whole: write it as JSON Lines "
            "(one record per line, .jsonl), which ftui reads a line at a time"))])
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
        where = exc.lineno if isinstance(exc, json.JSONDecodeError) else None
        raise DatasetError([DataProblem(name, where, None, f"malformed JSON: {_json_error(exc, text)}")]) from None
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
    # The csv module refuses cells over 128 KB; rows over MAX_ROW_BYTES are refused after
    # reading (load.py), by size, with their line. The setting is process-wide and only raised.
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))
    with open(path, "rb") as fh:
        # strict: a quote left open would otherwise swallow the rest of the file into one cell.
        records = csv.reader(_utf8_lines(fh, name), strict=True)
        header: list[str] | None = None
        start = 1
        while True:
            try:
                record = next(records)
            except StopIteration:
                return
            except csv.Error as exc:
                yield DataProblem(name, start, None, _CSV_ERRORS.get(str(exc), f"malformed CSV: {exc}"))
                record = []
            if not record:
                pass  # a blank line, or a row already reported
            elif header is None:
                header = record
            elif len(record) > len(header):
                yield DataProblem(name, start, None, (
                    f"{len(record)} fields where the header has {len(header)} (quote a cell that holds a comma)"
                ))
            else:
                # An empty or absent cell is null, as a missing value is in JSON.
                cells = [cell or None for cell in record] + [None] * (len(header) - len(record))
                yield start, _decode_nested(dict(zip(header, cells, strict=True)))
            start = records.line_num + 1


_CSV_ERRORS = {
    "unexpected end of data": "malformed CSV: a quoted cell that starts in this row is never closed",
    "',' expected after '\"'": "malformed CSV: text after a cell's closing quote (inside a quoted cell, write a quote as \"\")",
}


def _utf8_lines(fh: Any, name: str) -> Iterator[str]:
    """Lines ended by \\n, \\r\\n or a lone \\r (old Mac files); csv.reader wants each as its own item."""
    number = 0
    for chunk in fh:
        for raw in chunk.splitlines(keepends=True):
            number += 1
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DatasetError([DataProblem(name, number, None, f"not UTF-8: byte 0x{raw[exc.start]:02x}")]) from None
            yield text.removeprefix("\ufeff") if number == 1 else text


def _parquet(path: Path) -> Iterator[Row | DataProblem]:
    _refuse_over(str(path), path.stat().st_size, "this Parquet file")
    rows = _load_with_datasets(str(path), "parquet", data_files=str(path))
    return ((i + 1, row) for i, row in enumerate(rows))


def _hub(dataset_id: str, split: str) -> Iterator[Row | DataProblem]:
    import datasets

    _ask_hub_first(dataset_id)
    try:
        names = datasets.get_dataset_split_names(dataset_id)
    except Exception:  # noqa: BLE001 - offline with a cached copy, or an error load_dataset reports below
        names = None
    chosen = pick_split(dataset_id, names, split) if names else (split or "train")
    rows = _load_with_datasets(dataset_id, dataset_id, split=chosen)
    return ((i + 1, row) for i, row in enumerate(rows))


HUB_PROBE_TIMEOUT_S = 10.0
_SFT_SPLIT = re.compile(r"^(train[_-]?sft|sft[_-]?train|sft)$", re.I)


def pick_split(dataset_id: str, names: list[str], asked: str = "") -> str:
    """The split asked for; without one `train`, else the one SFT split (`train_sft`, as in
    UltraChat and UltraFeedback), else a dataset's only split. DatasetError lists the splits."""
    if asked:
        if asked in names:
            return asked
        close = difflib.get_close_matches(asked, names, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise DatasetError([DataProblem(dataset_id, None, None,
                                        f"has no split {asked!r}{hint}; its splits: {', '.join(names)}")])
    if "train" in names:
        return "train"
    sft = [n for n in names if _SFT_SPLIT.match(n)]
    if len(sft) == 1 or len(names) == 1:
        return (sft or names)[0]
    raise DatasetError([DataProblem(dataset_id, None, None, (
        f"has no 'train' split and no single SFT split; its splits: {', '.join(names)}: "
        "choose one with dataset_split (--split)"))])


def _ask_hub_first(dataset_id: str) -> None:
    """One quick question to the hub before `datasets` asks: unreachable, `datasets` retries each
    request five times with backoff, a line of noise per try, 69 s in all before its own error."""
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    from engine.models.hub import network_errors

    if constants.HF_HUB_OFFLINE:
        return  # the cache is all there is, and datasets reads it without asking
    try:
        info = HfApi().dataset_info(dataset_id, timeout=HUB_PROBE_TIMEOUT_S, files_metadata=True)
    except GatedRepoError:
        raise DatasetError([DataProblem(dataset_id, None, None, (
            f"is gated: accept its terms at https://huggingface.co/datasets/{dataset_id} and log in "
            "with `hf auth login` (or export HF_TOKEN)"))]) from None
    except RepositoryNotFoundError:
        raise DatasetError([DataProblem(dataset_id, None, None, (
            "no such local file, and no such dataset on the Hugging Face hub "
            "(if it is private, log in with `hf auth login`)"))]) from None
    except network_errors():
        raise DatasetError([DataProblem(dataset_id, None, None, (
            "no such local file, and cannot reach the Hugging Face hub (offline?): download the dataset "
            "elsewhere and give the file path, or use a copy already in the datasets cache with HF_HUB_OFFLINE=1"
        ))]) from None
    except Exception:  # noqa: BLE001,S110 - any other answer (a 5xx, a changed API): datasets reports it
        return
    sizes = [getattr(f, "size", None) for f in getattr(info, "siblings", None) or ()]
    _refuse_over(dataset_id, sum(s for s in sizes if isinstance(s, int)), "this hub dataset's files")


def _refuse_over(name: str, size: int, what: str) -> None:
    if size > MAX_DATASET_BYTES:
        raise DatasetError([DataProblem(name, None, None, (
            f"{what} come to {_gib(size)}, over the {_gib(MAX_DATASET_BYTES)} ftui reads: fine-tuning "
            "sets are far smaller; take a sample (a .jsonl of the rows you want) and train on that"))])


def _gib(size: int) -> str:
    return f"{size / 1024**3:.1f} GiB" if size >= 1024**3 else f"{size / 1024**2:.0f} MiB"


def _load_with_datasets(name: str, builder: str, split: str = "train", **kwargs: Any) -> Any:
    import datasets
    from datasets.exceptions import DatasetNotFoundError

    try:
        return datasets.load_dataset(builder, split=split, **kwargs)
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
            raise DatasetError([DataProblem(name, None, None, f"has no {split!r} split: {exc}")]) from None
        raise DatasetError([DataProblem(name, None, None, f"cannot be read: {exc}")]) from None
    except Exception as exc:  # pyarrow/pandas raise many unrelated types for a corrupt file
        raise DatasetError([DataProblem(name, None, None, f"cannot be read: {type(exc).__name__}: {exc}")]) from None


def _decode_nested(row: dict[str, Any]) -> dict[str, Any]:
    """CSV cells cannot hold lists, so a chat column arrives as JSON text."""
    out = dict(row)
    for key in ("messages", "conversations"):
        value = out.get(key)
        if isinstance(value, str) and value.lstrip().startswith("["):
            try:
                out[key] = json.loads(value)
            except (ValueError, RecursionError):
                pass  # left as text: the row is then reported as having the wrong type
    return out
