"""ftui installed as a tool (`pipx install`, `uv tool install`: a built wheel in a venv of its own)
works outside the checkout: presets and demo data ship with it, and it claims no generic import
names (engine, tui, cli) in site-packages.

The wheel is built offline from a copy of the build inputs (no build/ or egg-info left in the
checkout) and installed without dependencies into a fresh venv whose one .pth line reaches the
project venv's site-packages for them; the commands run from an empty folder with no PYTHONPATH.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILD_INPUTS = ("pyproject.toml", "setup.py", "README.md", "ftui", "engine", "tui", "cli", "presets")

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(the tool venv's bin folder, an environment to run it in, an empty folder to run it from)."""
    pytest.importorskip("setuptools", reason="the offline build uses the venv's setuptools (Python 3.12+ venvs lack it)")
    tmp = tmp_path_factory.mktemp("install")
    source = tmp / "source"
    for name in BUILD_INPUTS:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif (ROOT / name).exists():
            source.mkdir(exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    wheels = tmp / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
          "-w", str(wheels), str(source)])
    (wheel,) = wheels.glob("ftui-*.whl")

    tool = tmp / "tool"
    venv.EnvBuilder(with_pip=False).create(tool)
    python = tool / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index", str(wheel)])
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]).strip())
    # The dependencies: the project venv's packages, as one path line (its own .pth files, the
    # editable install of this checkout among them, are not read from there).
    (site / "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update(HOME=str(tmp / "home"), FTUI_CACHE=str(tmp / "cache"), PYTHONDONTWRITEBYTECODE="1")
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir()
    return tool / "bin", env, elsewhere


def _run(args: list[str], **kwargs) -> str:
    out = subprocess.run(args, capture_output=True, text=True, timeout=120, **kwargs)
    assert out.returncode == 0, f"{args}\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
    return out.stdout


def test_installed_ftui_has_its_presets_and_demo_data(installed):
    bin_dir, env, elsewhere = installed
    ftui = str(bin_dir / "ftui")
    presets = _run([ftui, "presets"], cwd=elsewhere, env=env)
    for name in ("balanced", "demo", "full", "low-vram", "quality", "quick-test"):
        assert name in presets
    # The demo preset names its data as presets/data/...; it resolves inside the installed ftui.
    check = _run([ftui, "data", "check", "presets/data/docker_train.jsonl"], cwd=elsewhere, env=env)
    assert "Usable for training." in check
    rec = _run([ftui, "recommend", "--vram", "12"], cwd=elsewhere, env=env)
    assert "Llama 3.1 8B Instruct with QLoRA" in rec and "12 GiB card" in rec


def test_installed_ftui_claims_no_generic_import_names(installed):
    """Another program in the same environment sees no `engine`, `tui` or `cli` (nor `presets`):
    they live in the ftui folder, which only the ftui command (or `ftui.activate()`) puts on sys.path."""
    bin_dir, env, elsewhere = installed
    code = ("import importlib.util, os\n"
            "print([n for n in ('engine', 'tui', 'cli', 'presets') if importlib.util.find_spec(n)])\n"
            "import ftui\n"
            "ftui.activate()\n"
            "import engine\n"
            "print(os.path.dirname(ftui.__file__))\n"
            "print(engine.__file__)\n")
    before, home, engine = _run([str(bin_dir / "python"), "-c", code], cwd=elsewhere, env=env).splitlines()
    assert before == "[]"
    assert Path(home).is_relative_to(bin_dir.parent) and Path(engine).parent.parent == Path(home)


def test_child_processes_of_an_installed_ftui_find_its_code(installed):
    """A detached run is `python -m engine.train.detached` with the environment engine.files.paths gives
    children; the processes of a run on several GPUs are multiprocessing spawns."""
    bin_dir, env, elsewhere = installed
    code = ("import ftui, subprocess, sys, multiprocessing\n"
            "ftui.activate()\n"
            "from engine.files.paths import child_env, presets_dir\n"
            "done = subprocess.run([sys.executable, '-m', 'engine.train.detached', '--help'], env=child_env(),\n"
            "                      capture_output=True, text=True)\n"
            "print(done.returncode, 'detached' in done.stdout)\n"
            "with multiprocessing.get_context('spawn').Pool(1) as pool:\n"
            "    print(pool.apply(presets_dir) == presets_dir())\n")
    detached, spawned = _run([str(bin_dir / "python"), "-c", code], cwd=elsewhere, env=env).splitlines()
    assert detached == "0 True"
    assert spawned == "True"
