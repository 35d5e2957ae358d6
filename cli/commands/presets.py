"""`ftui presets`: the preset files with their descriptions, or one preset's resolved config."""

from __future__ import annotations

import argparse

from cli.output import fail, print_json
from engine.config.schema import ConfigError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("presets", help="list presets, or show one resolved")
    p.add_argument("name", nargs="?", help="show this preset's full config")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from engine.config.presets import list_presets, load_preset

    try:
        if args.name:
            config = load_preset(args.name).apply()
            if args.json:
                print_json(config.to_dict())
            else:
                print(config.to_toml(), end="")
            return 0
        presets = list_presets()
    except ConfigError as exc:
        return fail(str(exc))
    if args.json:
        print_json([{"name": p.name, "description": p.description} for p in presets])
    else:
        width = max(len(p.name) for p in presets)
        for p in presets:
            print(f"{p.name:<{width}}  {p.description}")
    return 0
