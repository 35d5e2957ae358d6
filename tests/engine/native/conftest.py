import importlib
import sys

import pytest

CRASHER = '''
import ctypes


def crash(*args, **kwargs):
    """Dies from a real SIGSEGV, as llama.cpp's AMX path did."""
    ctypes.string_at(0)
'''


@pytest.fixture
def crash(tmp_path, monkeypatch):
    """A function that segfaults, importable by name in ftui's child processes (they get this
    process's sys.path), to put where native work would run."""
    folder = tmp_path / "crasher"
    folder.mkdir()
    (folder / "ftui_test_crasher.py").write_text(CRASHER)
    monkeypatch.syspath_prepend(str(folder))
    sys.modules.pop("ftui_test_crasher", None)
    return importlib.import_module("ftui_test_crasher").crash


from tests.engine.export.conftest import embedded_dir, tokenizer_dir  # noqa: E402,F401 - exports that crash
