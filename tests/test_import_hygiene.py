"""The engine stays headless and the first screen paints before any heavy library loads."""

import json
import subprocess
import sys

HEAVY = ["torch", "transformers", "peft", "datasets", "llama_cpp", "bitsandbytes"]


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
        capture_output=True, text=True, check=True,
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_engine_never_imports_textual():
    mods = _modules_after(
        "import cli.main, engine.config.schema, engine.hardware.catalog, engine.config.presets, engine.events\n"
        "import pkgutil, importlib, engine\n"
        "for m in pkgutil.walk_packages(engine.__path__, 'engine.'): importlib.import_module(m.name)"
    )
    assert not any(m == "textual" or m.startswith(("textual.", "tui")) for m in mods)


def test_cli_help_does_not_load_heavy_libraries():
    mods = _modules_after("import cli.main; cli.main.build_parser().format_help()")
    assert not [m for m in HEAVY if m in mods]
