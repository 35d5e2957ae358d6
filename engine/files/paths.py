"""Where ftui's own files live: the data files in presets/, the user cache, the runs."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
"""The folder holding engine/, tui/, cli/ and presets/: the checkout, or in an installed ftui the
ftui/ folder in site-packages (setup.py nests them there), so presets ship beside the code."""


def presets_dir() -> Path:
    """Where the user's preset files are listed first and saved (FTUI_PRESETS moves it)."""
    return Path(os.environ.get("FTUI_PRESETS", shipped_presets_dir()))


def shipped_presets_dir() -> Path:
    """ftui's own presets, which stay available wherever the user keeps theirs: the CPU plan, `ftui
    demo` and `demo --rl` train the demo and grpo presets by name."""
    return PROJECT_ROOT / "presets"


def catalog_file() -> Path:
    """The model catalog: ftui's own data, wherever the user keeps their presets."""
    return PROJECT_ROOT / "presets" / "models.toml"


def cache_dir() -> Path:
    """The XDG cache folder for converted models and built artefacts (FTUI_CACHE overrides)."""
    override = os.environ.get("FTUI_CACHE")
    if override:
        return Path(override)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("ftui"))


def child_env() -> dict[str, str]:
    """The environment for a Python child that runs ftui's modules (`python -m engine...`): this
    process's, with PROJECT_ROOT first on PYTHONPATH, since an installed ftui's packages are not
    on sys.path by default (ftui/__init__.py)."""
    path = os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


def resolve_project_path(path: str) -> str:
    """Paths written in preset files as `presets/...` name files of the project itself."""
    p = Path(path)
    if p.parts[:1] == ("presets",) and not p.exists():
        return str(PROJECT_ROOT / p)
    return path
