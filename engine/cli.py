"""The `ftui` command line: with no subcommand it opens the TUI, otherwise it runs headless.

Each subcommand lives in engine/commands/<name>.py with `register(subparsers)`; this module
only assembles them, so `ftui --help` lists everything without importing torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

COMMAND_MODULES = (
    "engine.commands.hardware_cmd",
    "engine.commands.recommend_cmd",
    "engine.commands.estimate_cmd",
    "engine.commands.presets_cmd",
    "engine.commands.models_cmd",
    "engine.commands.data_cmd",
    "engine.commands.train_cmd",
    "engine.commands.runs_cmd",
    "engine.commands.export_cmd",
    "engine.commands.chat_cmd",
    "engine.commands.eval_cmd",
    "engine.commands.demo_cmd",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ftui",
        description="Fine-tune LLMs on one GPU workstation. Run without a subcommand for the TUI.",
    )
    parser.add_argument("--preset", help="open the TUI with this preset selected")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None, open_tui: Callable[[argparse.Namespace], int] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        if open_tui is None:
            parser.print_help()
            return 0
        return open_tui(args)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("\nInterrupted.", file=sys.stderr)
        return 130
