"""The TUI rings the bell and shows a desktop notification through the terminal when a run ends
(issue 25 item 2)."""

from __future__ import annotations

import pytest

from tui.app import FtuiApp
from tui.desktop_alert import desktop_sequence

SIZE = (80, 24)


@pytest.mark.parametrize(("env", "expected"), [
    ({"TERM_PROGRAM": "iTerm.app"}, "\x1b]9;ftui: r finished: done 3 steps\x07"),
    ({"LC_TERMINAL": "iTerm2", "TERM": "xterm-256color"}, "\x1b]9;ftui: r finished: done 3 steps\x07"),  # over SSH
    ({"TERM": "xterm-kitty"}, "\x1b]9;ftui: r finished: done 3 steps\x07"),
    ({"TERM": "foot"}, "\x1b]777;notify;ftui: r finished;done 3 steps\x07"),
    ({"VTE_VERSION": "7600", "TERM": "xterm-256color"}, "\x1b]777;notify;ftui: r finished;done 3 steps\x07"),
    ({"TERM": "xterm-256color"}, ""),                                       # says nothing: the bell only
    ({"TERM_PROGRAM": "iTerm.app", "TMUX": "/tmp/tmux-0/default,1,0"}, ""),  # the terminal behind tmux is unknown
])
def test_the_sequence_is_the_one_the_terminal_shows(env, expected):
    assert desktop_sequence("ftui: r finished", "done 3 steps", env) == expected


def test_control_characters_cannot_end_the_sequence_early():
    sequence = desktop_sequence("ftui: r failed", "loss\x07 is nan; \x1b[2J", {"TERM": "foot"})
    assert sequence == "\x1b]777;notify;ftui: r failed;loss  is nan,  [2J\x07"


@pytest.mark.parametrize("scenario, title", [(None, "finished"), ("oom", "failed")])
async def test_a_run_that_ends_rings_the_bell_once(tmp_path, monkeypatch, scenario, title):
    from tests.tui.fake_backend import FakeBackend
    from tests.tui.test_flow import settle

    app = FtuiApp(backend=FakeBackend(runs_dir=tmp_path, **({"scenario": scenario} if scenario else {})))
    rings: list[str] = []
    monkeypatch.setattr(app, "bell", lambda: rings.append("bell"))
    sequences: list[str] = []
    monkeypatch.setattr("tui.app.desktop_sequence", lambda t, b, env: sequences.append(t) or "")
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.start_training(app.session.config)
        await settle(app, pilot)
        assert app.session.training.status == title
    assert rings == ["bell"]
    assert len(sequences) == 1 and sequences[0].endswith(f" {title}")
