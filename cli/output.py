"""Shared helpers for subcommands: JSON output and errors a person can act on."""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import Any


def print_json(obj: Any) -> None:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = dataclasses.asdict(obj)
    print(json.dumps(obj, indent=2, default=str))


def fail(message: str, code: int = 2) -> int:
    print(f"ftui: {message}", file=sys.stderr)
    return code
