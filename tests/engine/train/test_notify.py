"""Notifications when a run nobody watches ends or stalls (issue 25 item 2): a POST to a local
HTTP server on 127.0.0.1, a command run without a shell, and failures that cost the run nothing."""

from __future__ import annotations

import http.server
import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.config.schema import RunConfig
from engine.events import StepLogged, TrainFailed, TrainStarted
from engine.train.notify import Notifier, notifying
from tests.engine.train.tiny import run_tiny, tiny_config


class Inbox:
    """What a local webhook received: (headers, JSON body) per POST."""

    def __init__(self, url: str):
        self.url = url
        self.posts: list[tuple[dict[str, str], dict]] = []

    def wait_for(self, count: int, timeout: float = 10.0) -> list[tuple[dict[str, str], dict]]:
        deadline = time.monotonic() + timeout
        while len(self.posts) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.posts


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    """An HTTP server on 127.0.0.1 for this test alone; it stops at the test's end, or by itself after 120 s."""
    received: list[tuple[dict[str, str], dict]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((dict(self.headers), json.loads(body)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    server.timeout = 0.1
    done = threading.Event()
    deadline = time.monotonic() + 120

    def serve() -> None:
        while not done.is_set() and time.monotonic() < deadline:
            server.handle_request()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    box = Inbox(f"http://127.0.0.1:{server.server_address[1]}/ftui-runs")
    box.posts = received
    try:
        yield box
    finally:
        done.set()
        thread.join(5)
        server.server_close()


def closed_port_url() -> str:
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    port = server.server_address[1]
    server.server_close()
    return f"http://127.0.0.1:{port}/nobody-listens"


@pytest.mark.slow
def test_a_finished_run_posts_its_summary_once(tmp_path, model_folder, inbox):
    result, _ = run_tiny(tiny_config(tmp_path, max_steps=3, notify_url=inbox.url), model_folder)
    assert result.status == "finished"
    [(headers, body)] = inbox.wait_for(1)
    assert body["event"] == "finished" and body["step"] == 3 and body["total_steps"] == 3
    assert body["run_dir"] == result.run_dir and body["reason"] == "finished 3 steps"
    assert body["message"].startswith(f"{Path(result.run_dir).name} finished at step 3/3 on ")
    assert headers["X-Title"] == f"ftui: {Path(result.run_dir).name} finished"


@pytest.mark.slow
def test_a_stopped_run_runs_the_command_with_the_summary_in_its_environment(tmp_path, model_folder, monkeypatch):
    monkeypatch.delenv("FTUI_NOTIFY_URL", raising=False)
    said = tmp_path / "said.json"
    script = ("import json, os, sys; json.dump({k: v for k, v in os.environ.items() if k.startswith('FTUI_NOTIFY_')}, "
              "open(sys.argv[1], 'w'))")
    command = f"{sys.executable} -c \"{script}\" '{said}; not a shell'"
    said = Path(f"{said}; not a shell")  # one argument: no shell split it at the semicolon

    def stop_at_2(event, stop):
        if isinstance(event, StepLogged) and event.step == 2:
            stop.set()

    result, _ = run_tiny(tiny_config(tmp_path, max_steps=5, save_interval=100, notify_command=command), model_folder,
                         on_step=stop_at_2)
    assert result.status == "stopped"
    env = json.loads(said.read_text())
    assert env["FTUI_NOTIFY_EVENT"] == "stopped" and env["FTUI_NOTIFY_STEP"] == "2"
    assert env["FTUI_NOTIFY_REASON"] == "stopped on request at step 2"
    assert env["FTUI_NOTIFY_RUN_DIR"] == result.run_dir


@pytest.mark.slow
def test_a_notification_that_fails_costs_the_run_nothing_and_says_so(tmp_path, model_folder, capsys):
    url = closed_port_url()
    config = tiny_config(tmp_path, max_steps=2, notify_url=url, notify_command="/nonexistent/ftui-notify-hook")
    result, _ = run_tiny(config, model_folder)
    assert result.status == "finished"
    err = capsys.readouterr().err
    assert f"the finished notification to {url} failed" in err and "check notify_url" in err
    assert "notify_command '/nonexistent/ftui-notify-hook' could not run" in err and "the run is unaffected" in err


def test_a_run_without_a_step_for_many_median_step_times_is_reported_stalled_once(tmp_path, inbox):
    notifier = Notifier(inbox.url, "", tmp_path / "run", print, stall_factor=5, stall_floor_s=0.2).start()
    try:
        notifier.saw(TrainStarted(str(tmp_path / "run"), 10, 1.0, 10, 1, 1, 1, "cpu", 0.0))
        for step in range(1, 4):
            notifier.saw(StepLogged(step, 10, 0.1, 1.0, 1e-3, 1.0, 100.0, 0.1, 0.0, 0.1))
            time.sleep(0.02)
        assert notifier.stall_after_s() == 0.2  # the floor: 5 x 0.02 s is less
        [(_, body)] = inbox.wait_for(1)
        assert body["event"] == "stalled" and body["step"] == 3 and "no step for" in body["reason"]
        time.sleep(0.5)
        assert len(inbox.posts) == 1  # once per stall, not at every look
        notifier.saw(TrainFailed("loss is nan", "lower the learning rate", 4))
        [_, (_, failed)] = inbox.wait_for(2)
        assert failed["event"] == "failed" and failed["step"] == 4 and "loss is nan" in failed["reason"]
    finally:
        notifier.close()


def test_the_environment_names_the_url_when_the_config_does_not(tmp_path, inbox, monkeypatch):
    monkeypatch.setenv("FTUI_NOTIFY_URL", inbox.url)
    with notifying(RunConfig(), tmp_path / "run") as notifier:
        assert notifier is not None and notifier.url == inbox.url
    monkeypatch.delenv("FTUI_NOTIFY_URL")
    with notifying(RunConfig(), tmp_path / "run") as notifier:
        assert notifier is None


@pytest.mark.parametrize(("changes", "field", "fragment"), [
    ({"notify_url": "ntfy.sh/my-topic"}, "notify_url", "is not an http:// or https:// URL"),
    ({"notify_command": "notify-send 'unclosed"}, "notify_command", "close its quotes"),
])
def test_notification_settings_that_cannot_work_are_refused(changes, field, fragment):
    problems = {p.field: p.message for p in RunConfig(**changes).check()}
    assert fragment in problems[field]
