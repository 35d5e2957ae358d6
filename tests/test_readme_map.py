"""The README's "Where things are" table and the manual's links cannot drift from the tree.

The table has one row per top-level code folder and per engine package, the path in backticks
in the first column. A package added without a row, or a row left behind by a move, fails here;
so does a link in README.md or docs/ (or a `docs/...md#anchor` named by the CLI's or the TUI's
help) that points at no file or no heading.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAP_HEADING = "## Where things are"
NOT_CODE = {"build", "dist", "runs"}
"""Top-level folders that hold no ftui code even when present: build outputs and training runs."""


def _table_paths(readme_text: str) -> list[str] | None:
    """The backticked first cells of the table under MAP_HEADING, or None without the section."""
    lines = readme_text.splitlines()
    if MAP_HEADING not in lines:
        return None
    paths = []
    for line in lines[lines.index(MAP_HEADING) + 1:]:
        if line.startswith("## "):
            break
        first = line.split("|")[1].strip() if line.startswith("|") else ""
        match = re.fullmatch(r"`([^`]+)`", first)
        if match:
            paths.append(match.group(1))
    return paths


def _code_folders(root: Path) -> set[str]:
    """Top-level folders with Python in them, and every package under engine/."""
    folders = {
        f"{path.name}/" for path in root.iterdir()
        if path.is_dir() and not path.name.startswith((".", "_")) and path.name not in NOT_CODE
        and not path.name.endswith(".egg-info") and any(path.rglob("*.py"))
    }
    engine = root / "engine"
    if engine.is_dir():
        folders |= {f"{init.parent.relative_to(root).as_posix()}/" for init in engine.rglob("__init__.py")}
    return folders


def check_map(readme_text: str, root: Path) -> list[str]:
    """Problems with the README's map of `root`: folders without a row, rows naming nothing."""
    paths = _table_paths(readme_text)
    if paths is None:
        return [f"README has no '{MAP_HEADING}' section"]
    if not paths:
        return [f"README's '{MAP_HEADING}' section has no table rows with a `path` first"]
    problems = [f"{path}: two rows" for path in sorted({p for p in paths if paths.count(p) > 1})]
    for path in paths:
        target = root / path.rstrip("/")
        if not (target.is_dir() if path.endswith("/") else target.exists()):
            problems.append(f"{path}: a row for something that is not in {root}")
    for folder in sorted(_code_folders(root) - set(paths)):
        problems.append(f"{folder}: no row in '{MAP_HEADING}'")
    return problems


def _slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _outside_fences(text: str) -> list[str]:
    lines, fenced = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def _anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    anchors = set()
    for line in _outside_fences(path.read_text(encoding="utf-8")):
        match = re.match(r"#{1,6} (.+)", line)
        if match:
            slug = _slug(match.group(1))
            anchors.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
            seen[slug] = seen.get(slug, 0) + 1
    return anchors


def _check_target(source: str, base: Path, target: str, root: Path) -> list[str]:
    file_part, _, anchor = target.partition("#")
    path = (base / file_part).resolve() if file_part else None
    if path is not None and not path.exists():
        return [f"{source}: {target}: no such file"]
    if anchor and (path or Path()).suffix == ".md" and anchor not in _anchors(path):
        return [f"{source}: {target}: no heading with anchor #{anchor}"]
    return []


def check_links(root: Path) -> list[str]:
    """Problems with the manual's links: README.md and docs/*.md to files and headings, every
    docs page reachable from the README, and the docs pages the CLI's and the TUI's help name."""
    readme = root / "README.md"
    pages = sorted((root / "docs").glob("*.md"))
    problems = []
    for page in [readme, *pages]:
        for line in _outside_fences(page.read_text(encoding="utf-8")):
            for target in re.findall(r"\]\(([^)\s]+)\)", line):
                if re.match(r"[a-z]+:", target):
                    continue
                if target.startswith("#"):
                    target = page.name + target
                problems += _check_target(page.relative_to(root).as_posix(), page.parent, target, root)
    readme_text = readme.read_text(encoding="utf-8")
    for page in pages:
        if f"(docs/{page.name}" not in readme_text:
            problems.append(f"docs/{page.name}: not linked from README.md")
    for source in sorted([*root.glob("cli/**/*.py"), *root.glob("tui/**/*.py")]):
        for target in re.findall(r"\b(docs/[\w-]+\.md(?:#[\w-]+)?)", source.read_text(encoding="utf-8")):
            problems += _check_target(source.relative_to(root).as_posix(), root, target, root)
    return problems


def test_the_readme_maps_every_code_folder_and_engine_package():
    assert check_map((ROOT / "README.md").read_text(encoding="utf-8"), ROOT) == []


def test_the_manuals_links_reach_their_pages_and_headings():
    assert check_links(ROOT) == []


def test_ftui_help_names_the_manual():
    from cli.main import build_parser

    assert "docs/commands.md" in build_parser().format_help()


def test_the_map_check_finds_a_missing_row_and_a_stale_one(tmp_path):
    for package in ("engine", "engine/eval", "cli"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "presets").mkdir()
    readme = f"{MAP_HEADING}\n\n| folder | what |\n|---|---|\n| `engine/` | x |\n| `cli/` | x |\n| `engine/old/` | x |\n"
    assert check_map(readme, tmp_path) == [
        f"engine/old/: a row for something that is not in {tmp_path}",
        f"engine/eval/: no row in '{MAP_HEADING}'",
    ]
