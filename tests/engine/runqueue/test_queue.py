"""The run queue with real processes on the tiny model (issue 25 item 3): runs queued from the CLI
train one after another in processes of their own, started by a runner that is not in this
terminal's session; a failed run does not stop the rest unless it was queued to; reordering,
cancelling, a sweep queued as one group, and `ftui runs` showing what waits."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from shlex import quote

import pytest

from cli.main import main
from engine.runqueue.store import read_queue, runner_alive
from engine.runs import list_runs, read_run
from tests.engine.train.test_notify import inbox  # noqa: F401 - the local webhook fixture
from tests.engine.train.test_outlive import wait_for
from tests.engine.train.test_train_api import ROOT, api_config

pytestmark = pytest.mark.e2e


def queued(tmp_path: Path, model_folder: Path, name: str, **changes) -> list[str]:
    path = tmp_path / f"{name}.toml"
    values = {"name": name, "max_steps": 3, "val_split": 0.0, "save_interval": 1000, "retention_mix": 0.0, **changes}
    path.write_text(api_config(tmp_path, model_folder, **values).to_toml())
    return ["queue", "add", "--config", str(path), "--no-start"]


def ids(runs: Path) -> dict[str, str]:
    return {e.label: e.id for e in read_queue(runs).entries}


def runner_done(runs: Path) -> bool:
    queue = read_queue(runs)
    return queue.runner_pid is None and not queue.running


def test_queued_runs_train_in_order_after_a_failure_and_runs_lists_what_waits(tmp_path, model_folder, capsys):
    runs = tmp_path / "runs"
    assert main(queued(tmp_path, model_folder, "first")) == 0
    assert main(queued(tmp_path, model_folder, "broken", dataset=str(tmp_path / "missing.jsonl"))) == 0
    assert main(queued(tmp_path, model_folder, "last")) == 0
    assert main(queued(tmp_path, model_folder, "dropped")) == 0
    capsys.readouterr()
    named = ids(runs)

    assert main(["queue", "move", named["last"], "1", "--dir", str(runs)]) == 0
    assert main(["queue", "move", named["broken"], "2", "--dir", str(runs)]) == 0
    assert main(["queue", "cancel", named["dropped"], "--dir", str(runs)]) == 0
    assert main(["runs", "--dir", str(runs)]) == 0
    listed = capsys.readouterr().out
    assert "queued" in listed and "last" in listed and "ftui queue start" in listed

    assert main(["queue", "start", "--dir", str(runs)]) == 0
    pid = read_queue(runs).runner_pid
    assert pid is not None and os.getsid(pid) != os.getsid(0), "the runner leaves this terminal's session"
    wait_for(lambda: runner_done(runs), timeout=240, what="the queue to empty")

    entries = {e.label: e for e in read_queue(runs).entries}
    assert [entries[n].status for n in ("last", "broken", "first", "dropped")] == \
        ["finished", "failed", "finished", "cancelled"]
    assert entries["last"].ended <= entries["broken"].started <= entries["first"].started
    assert "missing.jsonl" in entries["broken"].reason
    assert read_run(entries["first"].run_dir).step == 3
    assert {Path(r.path) for r in list_runs(runs) if r.status == "finished"} == \
        {Path(entries["last"].run_dir), Path(entries["first"].run_dir)}

    assert main(["queue", "--dir", str(runs)]) == 0
    table = capsys.readouterr().out
    assert "cancelled before it started" in table and "finished" in table
    assert not runner_alive(read_queue(runs))


def test_a_failure_queued_to_stop_the_queue_pauses_it_and_start_goes_on(tmp_path, model_folder, capsys):
    runs = tmp_path / "runs"
    assert main([*queued(tmp_path, model_folder, "broken", dataset=str(tmp_path / "missing.jsonl")),
                 "--stop-on-failure"]) == 0
    assert main(queued(tmp_path, model_folder, "after")) == 0
    assert main(["queue", "start", "--dir", str(runs)]) == 0
    wait_for(lambda: runner_done(runs), timeout=120, what="the runner to stop at the failure")
    queue = read_queue(runs)
    assert [e.status for e in queue.entries] == ["failed", "queued"]
    assert "broken failed" in queue.paused
    capsys.readouterr()
    assert main(["queue", "--dir", str(runs)]) == 0
    assert "Paused: broken failed" in capsys.readouterr().out

    assert main(["queue", "start", "--dir", str(runs)]) == 0
    wait_for(lambda: runner_done(runs), timeout=120, what="the rest of the queue")
    assert [e.status for e in read_queue(runs).entries] == ["failed", "finished"]


def test_a_sweep_queued_as_a_group_trains_into_its_sweep_folder_and_picks_the_best(tmp_path, model_folder, capsys):
    runs = tmp_path / "runs"
    args = queued(tmp_path, model_folder, "lr", val_split=0.1, eval_interval=3)
    assert main([*args[:-1], "--set", "learning_rate=1e-3,1e-4"]) == 0
    assert "Queued a sweep of 2 runs" in capsys.readouterr().out
    wait_for(lambda: runner_done(runs), timeout=180, what="the sweep")

    entries = read_queue(runs).entries
    assert [e.status for e in entries] == ["finished", "finished"]
    sweep = Path(entries[0].group)
    table = json.loads((sweep / "sweep.json").read_text())
    assert [v["label"] for v in table["variants"]] == ["learning_rate=0.001", "learning_rate=0.0001"]
    assert table["best"] in ("learning_rate=0.001", "learning_rate=0.0001")
    assert {r.group for r in list_runs(runs)} == {sweep.name}


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
def test_a_queued_run_finishes_after_the_tmux_session_that_queued_it_is_gone_and_posts_its_summary(
        tmp_path, model_folder, inbox):  # noqa: F811 - the fixture imported above
    runs = tmp_path / "runs"
    args = queued(tmp_path, model_folder, "unattended", max_steps=40, notify_url=inbox.url)
    socket_name = f"ftui-queue-test-{os.getpid()}"
    command = f"cd {quote(str(ROOT))} && {quote(sys.executable)} -m cli.main {' '.join(map(quote, args[:-1]))}; sleep 600"
    tmux = ["tmux", "-L", socket_name]
    subprocess.run([*tmux, "new-session", "-d", "-s", "q", "-x", "80", "-y", "24", command], check=True)
    try:
        wait_for(lambda: (e := read_queue(runs).running) is not None and bool(e.run_dir) and read_run(e.run_dir).step >= 2,
                 timeout=120, what="the queued run to train two steps")
        subprocess.run([*tmux, "kill-server"], check=True)  # the terminal is gone: a hangup to all in it
        wait_for(lambda: runner_done(runs), timeout=240, what="the queue to end without its terminal")
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
    [entry] = read_queue(runs).entries
    assert entry.status == "finished" and read_run(entry.run_dir).step == 40
    [(_, body)] = inbox.wait_for(1)
    assert body["event"] == "finished" and body["run_dir"] == entry.run_dir


def test_a_killed_runner_is_replaced_and_cancel_stops_the_run_training_and_the_queue_goes_on(
        tmp_path, model_folder, capsys):
    runs = tmp_path / "runs"
    assert main(queued(tmp_path, model_folder, "long", max_steps=300)) == 0
    assert main(queued(tmp_path, model_folder, "next")) == 0
    assert main(["queue", "start", "--dir", str(runs)]) == 0
    wait_for(lambda: (e := read_queue(runs).running) is not None and bool(e.run_dir) and read_run(e.run_dir).step >= 2,
             timeout=120, what="the first run to train")
    first = read_queue(runs).runner_pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: not runner_alive(read_queue(runs)), what="the runner to be gone")

    assert main(["queue", "start", "--dir", str(runs)]) == 0  # the new runner waits for the run the old one started
    assert read_queue(runs).runner_pid != first
    long_id = ids(runs)["long"]
    assert main(["queue", "cancel", long_id, "--dir", str(runs)]) == 0
    assert "stop after its current step" in capsys.readouterr().out
    wait_for(lambda: runner_done(runs), timeout=180, what="the queue to go on and end")
    entries = {e.label: e for e in read_queue(runs).entries}
    assert entries["long"].status == "stopped" and 2 <= read_run(entries["long"].run_dir).step < 300
    assert entries["next"].status == "finished"


def test_the_runner_waits_for_a_run_started_by_hand_in_its_folder_before_starting_the_next(
        tmp_path, model_folder, capsys):
    runs = tmp_path / "runs"
    by_hand = queued(tmp_path, model_folder, "by-hand", max_steps=300)
    assert main(["train", "--detach", "--config", by_hand[3]]) == 0
    manual = next(runs.glob("2*-by-hand"))
    wait_for(lambda: read_run(manual).step >= 1, timeout=120, what="the run started by hand to train")

    assert main(queued(tmp_path, model_folder, "waits")[:-1]) == 0
    wait_for(lambda: "waiting for" in (runs / ".launches" / "queue.log").read_text(), what="the runner to say it waits")
    assert [e.status for e in read_queue(runs).entries] == ["queued"], "no second run on the GPU"
    assert runner_alive(read_queue(runs))

    assert main(["stop", str(manual)]) == 0
    wait_for(lambda: runner_done(runs), timeout=180, what="the queued run after the one by hand")
    [entry] = read_queue(runs).entries
    assert entry.status == "finished" and entry.started >= read_run(manual).updated


def test_a_damaged_queue_file_is_named_and_the_runs_are_still_listed(tmp_path, capsys):
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "queue.json").write_text('{"entries": [{"id": "x"}]')
    assert main(["queue", "--dir", str(runs)]) == 1
    said = capsys.readouterr().err
    assert f"{runs / 'queue.json'} is damaged" in said and "move it aside" in said
    assert main(["runs", "--dir", str(runs)]) == 0
    assert "queue.json is damaged" in capsys.readouterr().out
