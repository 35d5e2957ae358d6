"""The `ftui` console script: subcommands run headless from engine/, no subcommand opens the app."""

from __future__ import annotations

import argparse
import sys

from engine.cli import main as cli_main


def _open_tui(args: argparse.Namespace) -> int:
    from tui.app import run_app

    return run_app(preset=args.preset)


def main() -> int:
    return cli_main(sys.argv[1:], open_tui=_open_tui)


if __name__ == "__main__":
    sys.exit(main())
