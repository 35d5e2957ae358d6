"""Headless runs that outlive the terminal, with real processes on the tiny model: `ftui train
--detach`, `ftui runs`, `ftui attach`, `ftui stop`, a refused second writer, kill -9, and a
foreground `ftui train` that a hangup or SIGTERM stops with a checkpoint (issue 11, issue 12.1
and 12.4)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli.main import main
from engine.runs import complete_checkpoints, read_run
from tests.engine.train.test_train_api import ROOT, api_config

pytestmark = pytest.mark.e2e


def config_file(tmp_path: Path, model_folder: Path, **changes) -> Path:
    # No replay: it would ask the random tiny model for answers first.
    values = dict(max_steps=300, val_split=0.0, save_interval=1000, retention_mix=0.0, **changes)
    path = tmp_path / "run.toml"
    path.write_text(api_config(tmp_path, model_folder, **values).to_toml())
    return path


def wait_for(predicate, timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def steps_logged(run: Path) -> list[int]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["step"] for line in lines if '"StepLogged"' in line]


def test_detach_runs_attach_stop_refuse_a_second_writer_kill_and_resume(tmp_path, model_folder, capsys):
    runs = tmp_path / "runs"
    assert main(["train", "--detach", "--config", str(config_file(tmp_path, model_folder))]) == 0
    out = capsys.readouterr().out
    assert "Training in the background as pid" in out and "ftui attach" in out
    run = next(runs.glob("2*"))
    info = read_run(run)
    assert info.status == "running" and info.pid != os.getpid()
    wait_for(lambda: read_run(run).step >= 2, what="two steps")

    assert main(["runs", "--dir", str(runs)]) == 0
    table = capsys.readouterr().out
    assert "running" in table and str(info.pid) in table

    # One writer per run: a second resume is refused at once, naming the process.
    assert main(["train", "--resume", str(run)]) == 1
    assert f"being trained by process {info.pid}" in capsys.readouterr().err

    assert main(["stop", str(run)]) == 0
    out = capsys.readouterr().out
    assert "waiting for its checkpoint" in out and "saved stop checkpoint" in out and "Stopped" in out
    stopped = read_run(run)
    assert stopped.status == "stopped" and complete_checkpoints(run)
    wait_for(lambda: subprocess.run(["kill", "-0", str(info.pid)], capture_output=True).returncode != 0,
             timeout=20, what="the detached process to exit")

    # attach on an ended run shows it to its end, with the progress line of ftui train.
    assert main(["attach", str(run)]) == 130
    out = capsys.readouterr().out
    assert f"step {stopped.step}/300" in out and "Stopped" in out

    # The resumed run goes on from the checkpoint; kill -9 leaves it interrupted and resumable.
    assert main(["train", "--detach", "--resume", str(run)]) == 0
    capsys.readouterr()
    pid = read_run(run).pid
    assert pid != info.pid
    wait_for(lambda: read_run(run).step >= stopped.step + 2, what="two resumed steps")
    os.kill(pid, signal.SIGKILL)  # this test process launched it: the zombie it leaves counts as dead
    wait_for(lambda: read_run(run).status == "interrupted", timeout=10, what="interrupted")
    assert read_run(run).resumable
    assert main(["attach", str(run)]) == 1
    assert "ended without finishing" in capsys.readouterr().err
    logged = steps_logged(run)
    assert logged == sorted(logged) and logged[:stopped.step] == list(range(1, stopped.step + 1))


def test_a_hangup_or_sigterm_stops_a_foreground_train_with_a_checkpoint(tmp_path, model_folder):
    """Both at once, each in its own process; the terminal that goes away with the hangup is gone
    for writes too (its pipes are closed)."""
    code = "import sys, cli.main; sys.exit(cli.main.main(sys.argv[1:]))"
    procs = {}
    for sig in (signal.SIGHUP, signal.SIGTERM):
        folder = tmp_path / sig.name
        folder.mkdir()
        procs[sig] = subprocess.Popen(
            [sys.executable, "-c", code, "train", "--config", str(config_file(folder, model_folder))],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    for sig, proc in procs.items():
        assert proc.stdout is not None and proc.stderr is not None
        for line in proc.stdout:
            if line.startswith(b"step 2/"):
                proc.send_signal(sig)
                break
    hup, term = procs[signal.SIGHUP], procs[signal.SIGTERM]
    hup.stdout.close()  # type: ignore[union-attr]
    hup.stderr.close()  # type: ignore[union-attr]
    out, err = term.communicate(timeout=120)
    assert term.returncode == 143, err[-2000:]
    assert b"Terminated (SIGTERM): stopping after this step" in out and b"saved stop checkpoint" in out
    assert hup.wait(timeout=120) == 129
    for sig in procs:
        run = next((tmp_path / sig.name / "runs").glob("2*"))
        info = read_run(run)
        assert info.status == "stopped" and info.resumable
        assert complete_checkpoints(run)[-1].name == f"step-{info.step}"
