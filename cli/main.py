"""The `ftui` console script: with no subcommand it opens the TUI, otherwise it runs headless.

This is the one place where the two faces meet: the TUI is imported only when it is opened.
Each subcommand lives in cli/commands/<name>.py with `register(subparsers)`; this module only
assembles them, so `ftui --help` lists everything without importing torch.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence

COMMAND_MODULES = (
    "cli.commands.hardware",
    "cli.commands.doctor",
    "cli.commands.recommend",
    "cli.commands.estimate",
    "cli.commands.presets",
    "cli.commands.models",
    "cli.commands.data",
    "cli.commands.train",
    "cli.commands.sweep",
    "cli.commands.queue",
    "cli.commands.runs",
    "cli.commands.attach",
    "cli.commands.stop",
    "cli.commands.export",
    "cli.commands.chat",
    "cli.commands.eval",
    "cli.commands.push",
    "cli.commands.demo",
)

COMMAND_DOCS = {
    "hardware": "docs/hardware.md",
    "recommend": "docs/hardware.md#recommendation",
    "estimate": "docs/hardware.md#memory-estimate",
    "presets": "docs/training.md#presets-and-settings",
    "models": "docs/setup.md#the-model-loader",
    "data": "docs/datasets.md",
    "train": "docs/training.md",
    "sweep": "docs/training.md#sweeps",
    "queue": "docs/training.md#the-queue",
    "runs": "docs/training.md#the-run-directory",
    "attach": "docs/training.md#runs-that-outlive-the-terminal",
    "stop": "docs/training.md#runs-that-outlive-the-terminal",
    "export": "docs/export-chat-eval.md",
    "chat": "docs/export-chat-eval.md#chat-and-evaluation",
    "eval": "docs/export-chat-eval.md#chat-and-evaluation",
    "push": "docs/trackers-and-hub.md#the-hub",
    "demo": "docs/export-chat-eval.md#ftui-demo",
}
"""The manual's page for each subcommand, named at the foot of its --help."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ftui",
        description="Fine-tune LLMs on one GPU workstation. Run without a subcommand for the TUI.",
        epilog="The manual is docs/ in ftui's source tree: docs/commands.md lists every command, "
               "docs/tui.md every screen, and README.md links every page.",
    )
    parser.add_argument("--preset", help="open the TUI with this preset selected")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    for command, page in COMMAND_DOCS.items():
        subparsers.choices[command].epilog = f"Manual: {page}"
    return parser


def main(argv: Sequence[str] | None = None, open_tui: Callable[[argparse.Namespace], int] | None = None) -> int:
    """Run one command; `argv` None reads the process's arguments, as the console script does."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.command is None:
        return (open_tui or _open_tui)(args)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("\nInterrupted.", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `ftui runs | head` closed the pipe: the reader has what it wanted. Python's own exit would
        # flush stdout into the closed pipe again and print a traceback, so stdout goes to devnull.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # as a shell reports a process ended by SIGPIPE


def _open_tui(args: argparse.Namespace) -> int:
    from tui.app import run_app

    return run_app(preset=args.preset)


if __name__ == "__main__":
    sys.exit(main())
