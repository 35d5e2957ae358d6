"""The real app in tmux at 80x24, as a person over SSH meets it: start a run, lose the terminal
(kill the tmux session: ftui gets SIGHUP), see the run keep training, open ftui again in a new
session onto its training screen, stop it with x (a checkpoint), resume it from the runs screen
and see the curve go on. The tiny model keeps it short."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.runs import complete_checkpoints, read_run
from tests.engine.train.test_outlive import wait_for as wait_until

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")]

ROOT = Path(__file__).resolve().parents[2]


class Tmux:
    def __init__(self, env: dict[str, str]):
        self.socket = f"ftui-test-{os.getpid()}"
        self.env = env

    def tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True).stdout

    def open_ftui(self, name: str) -> None:
        env = " ".join(f"{k}={v}" for k, v in self.env.items())
        self.tmux("new-session", "-d", "-s", name, "-x", "80", "-y", "24",
                  f"cd {ROOT} && env {env} {sys.executable} -m cli.main --preset tiny")

    def screen(self, name: str) -> str:
        return self.tmux("capture-pane", "-p", "-t", name)

    def keys(self, name: str, *keys: str) -> None:
        for key in keys:
            self.tmux("send-keys", "-t", name, key)
            time.sleep(0.3)

    def wait_for(self, name: str, text: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            shown = self.screen(name)
            if "".join(text.split()) in "".join(shown.split()):  # the log wraps long lines anywhere
                return shown
            time.sleep(0.2)
        raise AssertionError(f"{text!r} never showed; the screen:\n{self.screen(name)}")


@pytest.fixture
def tiny_preset(tmp_path) -> Path:
    from tests.engine.train.test_train_api import write_jsonl
    from tests.engine.train.tiny import make_model_folder

    model = make_model_folder(tmp_path / "model")
    presets = tmp_path / "presets"
    presets.mkdir()
    (presets / "tiny.toml").write_text(
        f'description = "tiny"\nname = "tiny"\nmodel = "{model}"\n'
        f'dataset = "{write_jsonl(tmp_path / "data.jsonl")}"\noutput_dir = "{tmp_path / "runs"}"\n'
        "lora_r = 4\nlora_alpha = 8\nmax_steps = 100000\nbatch_size = 4\ngrad_accum = 1\nmax_seq_len = 64\n"
        "eval_interval = 500\nsave_interval = 5000\nval_split = 0.1\nretention_mix = 0.0\n")
    return presets


def test_a_run_started_in_tmux_outlives_the_session_and_the_next_ftui_stops_and_resumes_it(tmp_path, tiny_preset):
    term = Tmux({"FTUI_PRESETS": str(tiny_preset)})
    runs = tmp_path / "runs"
    try:
        term.open_ftui("first")
        term.wait_for("first", "Home")
        term.keys("first", "t", "s")
        term.wait_for("first", "RUNNING step")
        run = next(runs.glob("2*"))
        wait_until(lambda: read_run(run).step >= 3, what="three steps")
        trainer = read_run(run).pid
        assert trainer is not None

        term.tmux("kill-session", "-t", "first")  # the terminal goes away: SIGHUP
        left_at = read_run(run).step
        wait_until(lambda: "--preset tiny" not in subprocess.run(["ps", "-eo", "args"], capture_output=True,
                                                                 text=True).stdout, what="the app to exit")
        wait_until(lambda: read_run(run).step >= left_at + 5, what="the run to go on without its terminal")
        assert read_run(run).status == "running" and read_run(run).pid == trainer

        term.open_ftui("second")
        term.wait_for("second", "Training in the background")  # found at start, shown without a key
        shown = term.wait_for("second", "RUNNING step")
        step_shown = int(shown.split("RUNNING step ")[1].split("/")[0])
        assert step_shown >= left_at
        term.keys("second", "x", "y")
        wait_until(lambda: read_run(run).status == "stopped", what="the stop")
        stopped = read_run(run).step
        assert complete_checkpoints(run)[-1].name == f"step-{stopped}"
        term.wait_for("second", "STOPPED")

        term.keys("second", "r", "u")
        # Seen before the run goes on: on a fast machine its log lines push the start line out of view.
        term.wait_for("second", f"resumed at step {stopped}")
        wait_until(lambda: read_run(run).status == "running" and read_run(run).step > stopped + 2, what="the resume")
        lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        steps = [r["step"] for r in lines if r["event"] == "StepLogged"]
        assert steps == list(range(1, len(steps) + 1)), "the curve did not go on from the checkpoint"
        term.keys("second", "x", "y")
        wait_until(lambda: read_run(run).status == "stopped", what="the second stop")
    finally:
        term.tmux("kill-server")
        for run in runs.glob("2*"):
            info = read_run(run)
            if info.status == "running" and info.pid:
                os.kill(info.pid, signal.SIGKILL)
