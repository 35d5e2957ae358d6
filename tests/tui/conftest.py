"""Fixtures for the TUI tests: the app on a fake engine, at the 80x24 the issue asks for."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.tui.fake_backend import FakeBackend  # noqa: E402


@pytest.fixture(autouse=True)
def _plain_terminal(monkeypatch):
    """Tests see the same environment whether or not they run over SSH or in tmux."""
    for name in ("SSH_CONNECTION", "TMUX", "STY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def backend(tmp_path) -> FakeBackend:
    return FakeBackend(runs_dir=tmp_path)
