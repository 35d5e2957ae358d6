"""`ftui data check|preview`: see what a dataset holds and what the model will be trained on."""

from __future__ import annotations

import argparse
import sys
from typing import Any, get_args

from cli.output import fail, print_json
from engine.config.schema import DatasetFormat, RunConfig

_FORMATS = get_args(DatasetFormat)
_MARK_START, _MARK_END = "«", "»"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("data", help="check or preview a dataset")
    sub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    c = sub.add_parser("check", help="validate a dataset: format, problems with file:line, token lengths, a sample")
    _common(c)
    c.add_argument("--max-seq-len", type=int, default=RunConfig.max_seq_len, help="count examples longer than this")
    c.add_argument("--strict", action="store_true", help="refuse at the first bad row")
    c.add_argument("--no-tokenizer", action="store_true", help="skip lengths and the sample (no model needed)")
    c.add_argument("--json", action="store_true", help="machine-readable output")
    c.set_defaults(func=run_check)

    v = sub.add_parser("preview", help="show the first conversations exactly as the model will see them")
    _common(v)
    v.add_argument("-n", type=_count, default=3, help="how many conversations (default 3)")
    v.add_argument("--system-prompt", default="", help="add this system turn where a conversation has none")
    v.set_defaults(func=run_preview)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="a .jsonl/.json/.csv/.parquet file or a hub dataset id")
    p.add_argument("--format", choices=_FORMATS, default="auto", help="force the format when detection is ambiguous")
    p.add_argument("--model", default=RunConfig.model, help="whose chat template and tokenizer to use")
    p.add_argument("--columns", default="", metavar="FIELD=COLUMN,...",
                   help="read the file's columns as ftui's fields, e.g. output=response,input=context")
    p.add_argument("--roles", default="", metavar="ROLE=NAME,...",
                   help="read the file's role names as ftui's roles, e.g. user=prompter,assistant=bot")
    p.add_argument("--messages-field", default="", metavar="COLUMN", help="the column holding the list of turns")
    p.add_argument("--split", default="", help="a hub dataset's split (default: train, or the one SFT split)")


def _mapping(args: argparse.Namespace) -> Any:
    from engine.data.mapping import DataMapping, MappingError

    try:
        return DataMapping.parse(_entries(args.columns), _entries(args.roles), args.messages_field)
    except MappingError as exc:
        raise SystemExit(fail(str(exc))) from None


def _entries(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _tokenizer(model: str) -> Any:
    from engine.models import ModelLoadError, load_tokenizer, resolve_model

    try:
        return load_tokenizer(resolve_model(model))
    except ModelLoadError as exc:
        raise SystemExit(fail(f"cannot load the tokenizer of {model!r}: {exc.reason}. {exc.advice}")) from None


def run_check(args: argparse.Namespace) -> int:
    from engine.data import check

    mapping = _mapping(args)
    tokenizer = None if args.no_tokenizer else _tokenizer(args.model)
    report = check(args.file, args.format, tokenizer, args.max_seq_len, strict=args.strict, mapping=mapping,
                   split=args.split)
    if args.json:
        print_json(report.to_dict())
    else:
        _print_report(report, args.model if tokenizer is not None else None)
    return 0 if report.refusal is None else 1


def _print_report(report: Any, model: str | None) -> None:
    print(f"{report.path}: {report.format} format, {report.rows} rows, {report.usable_rows} usable")
    print(f"Mapping: {report.mapping or 'none (the file uses ftui names)'}")
    for note in report.notes:
        print(f"Note: {note}")
    if report.objectives:
        print(f"Objectives it can feed: {', '.join(report.objectives)}")
    if report.problems:
        print(f"\n{len(report.problems)} problem(s):")
        for problem in report.problems[:50]:
            print(f"  {problem}")
        if len(report.problems) > 50:
            print(f"  ... and {len(report.problems) - 50} more (see --json)")
    if report.suggestion:
        s = report.suggestion
        print(f"\nSuggested mapping ({s['usable_rows']} of {report.rows} rows usable with it): {s['flags']}\n"
              f"  or in the config file:\n    " + s["toml"].replace("\n", "\n    "))
    if report.percentiles:
        figures = ", ".join(f"{k} {v}" for k, v in report.percentiles.items())
        print(f"\nTokens per example ({model}): {figures}")
        if report.max_seq_len is not None:
            print(f"Over max_seq_len {report.max_seq_len}: {report.over_length} "
                  f"(prompt cut from the left; {report.dropped} dropped: final turn alone too long)")
    if report.sample:
        print(f"\nSample (line {report.sample_line}); {_MARK_START}...{_MARK_END} is trained:\n")
        print("".join(f"{_MARK_START}{s.text}{_MARK_END}" if s.trained else s.text for s in report.sample))
    print(f"\nUnusable: {report.refusal}" if report.refusal else "\nUsable for training.")


def _count(text: str) -> int:
    """-n for preview: 0 printed nothing at all and said nothing about it."""
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"{n} shows no conversation; give 1 or more")
    return n


def run_preview(args: argparse.Namespace) -> int:
    from engine.data import DatasetError, load_conversations
    from engine.data.render import RenderError, render_text, with_system_prompt
    from engine.display import printable
    from engine.files.paths import resolve_project_path

    try:
        loaded = load_conversations(resolve_project_path(args.file), args.format, mapping=_mapping(args),
                                    split=args.split)
    except DatasetError as exc:
        return fail(str(exc))
    if not loaded.conversations:
        return fail(f"{args.file}: no usable rows; run `ftui data check {args.file}` to see why")
    tokenizer = _tokenizer(args.model)
    for conversation in loaded.conversations[: max(args.n, 0)]:
        print(f"──── line {conversation.source_line} ────")
        try:
            sys.stdout.write(printable(render_text(tokenizer, with_system_prompt(conversation, args.system_prompt))))
        except RenderError as exc:
            print(f"(not rendered: {exc})")
        print()
    return 0
