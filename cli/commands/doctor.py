"""`ftui doctor`: the install's checks (engine/hardware/doctor.py), one line each as it finishes, with its fix.

Exit status: 0 when nothing is broken (warnings allowed: ftui works, slower or with less than the
machine could give), 1 when a check found an error (something ftui needs fails here).
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import textwrap

from cli.output import print_json

LABELS = {"ok": "ok", "warn": "WARN", "error": "ERROR"}
NAME_WIDTH = 18


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("doctor", help="check this install: GPU driver, torch and bitsandbytes builds, llama.cpp "
                              "(a real decode), disk space, write access, hub token; exit 1 when something is broken")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--no-decode", action="store_true",
                   help="leave out the llama.cpp decode of the embedded model (a few seconds)")
    p.add_argument("--output-dir", metavar="DIR", default=None,
                   help="where runs go, for the disk and write checks (default: the config's, runs)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from engine.config.schema import RunConfig
    from engine.hardware.doctor import check_install

    output_dir = args.output_dir or RunConfig().output_dir
    report = check_install(output_dir, decode=not args.no_decode, on_check=None if args.json else print_check)
    code = 1 if report.errors else 0
    if args.json:
        print_json({"summary": report.summary(), "errors": len(report.errors), "warnings": len(report.warnings),
                    "exit_code": code, "checks": [dataclasses.asdict(c) for c in report.checks]})
        return code
    print(f"\ndoctor: {report.summary()}" + (" (an error means something ftui needs fails here)" if code else ""))
    return code


def print_check(check) -> None:
    """`ERROR  write access      ...` and its fix below, wrapped to the terminal."""
    width = max(60, shutil.get_terminal_size().columns - 1)
    indent = " " * (7 + NAME_WIDTH)
    print(textwrap.fill(check.detail, width, initial_indent=f"{LABELS[check.status]:<6} {check.name:<{NAME_WIDTH}}",
                        subsequent_indent=indent), flush=True)
    if check.fix:
        print(textwrap.fill(f"fix: {check.fix}", width, initial_indent=indent, subsequent_indent=indent + "     "),
              flush=True)
