"""The `ftui` command, and the one import name an installed ftui claims.

A wheel (`pipx install`, `uv tool install`, `pip install`) puts ftui's code and data in one folder,
site-packages/ftui/: engine/, tui/, cli/ and presets/ beside this file. Their own imports are
`engine...`, `tui...`, `cli...`, names other distributions use too, so that folder is not on
sys.path for everyone: `activate()` puts it there for this process, as the `ftui` command does
first; children started with engine.files.paths.child_env() and multiprocessing spawns get it too. In a
checkout (`make`, `pip install -e .`) the three packages are importable as they are and
`activate()` does nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path

HOME = Path(__file__).resolve().parent
"""In an installed ftui, the folder holding engine/, tui/, cli/ and presets/."""


def activate() -> None:
    """Make `engine`, `tui` and `cli` importable in this process when they live inside HOME."""
    if (HOME / "engine" / "__init__.py").is_file() and str(HOME) not in sys.path:
        sys.path.insert(0, str(HOME))


def main() -> int:
    """The `ftui` console script."""
    activate()
    from cli.main import main as cli_main

    return cli_main()
