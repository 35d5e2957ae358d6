"""Where ftui's folders install; everything else about the package is in pyproject.toml.

A wheel (what `pip install`, `pipx install` and `uv tool install` build) nests the checkout's
top-level engine/, tui/, cli/ and presets/ inside one ftui/ folder beside the launcher in ftui/:
site-packages then holds the single import name `ftui`, never the generic `engine`, `tui` and `cli`
that other distributions also use, and the presets and demo data travel beside the code that
reads them (engine.files.paths.PROJECT_ROOT is that folder). The `ftui` command puts the folder on
sys.path (ftui/__init__.py).

An editable install (`make`, `pip install -e .`) keeps the checkout's layout: `engine`, `tui`,
`cli` and `ftui` import from the checkout, as the tests and `.venv/bin/ftui` expect.
"""

from setuptools import find_packages, setup
from setuptools.command.editable_wheel import editable_wheel

CODE = ("engine", "tui", "cli")
DATA = {"tui": ["*.tcss"], "presets": ["*.toml"], "presets.data": ["*.jsonl"]}
"""Non-Python files each folder ships, by package name as in the checkout."""


def _checkout_packages() -> list[str]:
    return find_packages(include=[f"{top}*" for top in (*CODE, "ftui")])


def nested_layout() -> dict:
    """setup() arguments that install every folder under ftui/ (the wheel)."""
    packages = ["ftui", "ftui.presets", "ftui.presets.data"]
    packages += [f"ftui.{p}" for p in _checkout_packages() if p.split(".")[0] in CODE]
    package_dir = {"ftui": "ftui", "ftui.presets": "presets", **{f"ftui.{top}": top for top in CODE}}
    package_data = {f"ftui.{name}": files for name, files in DATA.items()}
    return {"packages": packages, "package_dir": package_dir, "package_data": package_data}


def checkout_layout() -> dict:
    """setup() arguments for the layout of the checkout itself (the editable install)."""
    return {"packages": _checkout_packages(), "package_dir": {}, "package_data": {"tui": DATA["tui"]}}


class EditableCheckout(editable_wheel):
    """`pip install -e .`: the checkout's own layout, so `import engine` keeps working in it."""

    def finalize_options(self) -> None:
        dist = self.distribution
        for key, value in checkout_layout().items():
            setattr(dist, key, value)
        super().finalize_options()


setup(cmdclass={"editable_wheel": EditableCheckout}, **nested_layout())
