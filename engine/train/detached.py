"""A training run in a process of its own, so that it outlives the terminal that started it.

Every run the TUI starts and every `ftui train --detach` is launched here: the child is
`python -m engine.train.detached`, in a new session (no controlling terminal, so a dropped SSH
connection sends it no SIGHUP and a closed pty no EIO), stdin from /dev/null, stdout and stderr to
a log. It calls the same `train()` as a foreground run and writes every event it emits, those of
loading the model and data included, to an events file; once the run directory exists its own
files take over (run.json, metrics.jsonl, heartbeat, lock, stop; see engine.runs.live).

The starter follows the events file (`follow_launch`); anyone later follows metrics.jsonl
(`attach`). Both feed the usual `on_event`, and a set `stop` becomes a stop request the trainer
answers with a checkpoint. Leaving a follower (`leave`) leaves the run going.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from shlex import quote

from engine.config.schema import RunConfig, load_toml
from engine.events import Event, EventSink, TrainFailed, TrainStarted, to_record
from engine.files.control import UnsafeFile, open_control
from engine.files.paths import child_env
from engine.runs import read_record, run_dir_of
from engine.runs.follow import follow
from engine.runs.listing import is_live
from engine.runs.live import request_stop
from engine.runs.writer import METRICS_FILE
from engine.train.loop import RunResult, result_of

LAUNCH_DIR = ".launches"
"""Under the output folder: each launch's events file and, until the run directory exists, its log."""
OUTPUT_LOG = "output.log"
"""In the run directory: what the detached process printed (warnings, a crash's traceback)."""
KEEP_LAUNCH_S = 7 * 24 * 3600
LOG_TAIL_LINES = 8


@dataclass
class Launch:
    """A started training process and the file its events go to."""

    process: subprocess.Popen[bytes]
    events: Path
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None


def launch(config: RunConfig | None, resume: str | None = None, gpus: str | None = None,
           trust_remote_code: bool = False) -> Launch:
    """Start a run (or the resume of `resume`, on `gpus` when given) in a detached process and return at once."""
    if resume:
        folder = run_dir_of(resume).parent / LAUNCH_DIR
    else:
        folder = Path((config or RunConfig()).output_dir) / LAUNCH_DIR
    folder.mkdir(parents=True, exist_ok=True)
    _prune(folder)
    stem = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
    events, log = folder / f"{stem}.events.jsonl", folder / f"{stem}.log"
    events.touch()
    args = [sys.executable, "-m", "engine.train.detached", "--events", str(events)]
    if resume:
        args += ["--resume", str(resume)] + (["--gpus", gpus] if gpus is not None else [])
        args += ["--trust-remote-code"] if trust_remote_code else []
    else:
        config_file = folder / f"{stem}.toml"
        config_file.write_text((config or RunConfig()).to_toml(), encoding="utf-8")
        args += ["--config", str(config_file)]
    with open(log, "ab") as out, open(os.devnull, "rb") as nothing:
        process = subprocess.Popen(args, stdin=nothing, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True, env=child_env())
    return Launch(process, events, log)


def follow_launch(started: Launch, on_event: EventSink, stop: threading.Event,
                  leave: threading.Event | None = None) -> RunResult | None:
    """Show a launched run from its first event to its last; None when `leave` was set first."""
    run_dir: list[str] = []
    asked = threading.Event()

    def seen(event: Event) -> None:
        if isinstance(event, TrainStarted):
            run_dir[:] = [event.run_dir]
        on_event(event)

    def tick() -> None:
        if stop.is_set() and not asked.is_set():
            asked.set()
            if run_dir:
                request_stop(run_dir[0])
            elif started.running():
                started.process.send_signal(signal.SIGTERM)  # still loading: stops at its first step

    end = follow(started.events, seen, started.running, leave, tick)
    if end is None and not (leave is not None and leave.is_set()):
        folder = Path(run_dir[0]) if run_dir else None
        log = folder / OUTPUT_LOG if folder is not None and (folder / OUTPUT_LOG).exists() else started.log
        end = _died(started.pid, folder, log, before_start=not run_dir)
        on_event(end)
    return result_of(end, run_dir[0] if run_dir else None)


def attach(run_dir: str | Path, on_event: EventSink, stop: threading.Event, leave: threading.Event | None = None,
           since_end: bool = False, on_backlog: Callable[[list[Event]], None] | None = None) -> RunResult | None:
    """Show a run trained by another process: everything it logged so far (or, with `since_end`,
    nothing of it; with `on_backlog`, in one list), then what it logs until it ends. A run that is not live is shown to its end,
    or to where its process died."""
    run_dir = Path(run_dir)
    asked = threading.Event()

    def tick() -> None:
        if stop.is_set() and not asked.is_set():
            asked.set()
            if is_live(run_dir):
                request_stop(run_dir)

    end = follow(run_dir / METRICS_FILE, on_event, lambda: is_live(run_dir), leave, tick, since_end, on_backlog)
    if end is None and not (leave is not None and leave.is_set()):
        end = _died(read_record(run_dir).pid, run_dir, run_dir / OUTPUT_LOG, before_start=False)
        on_event(end)
    return result_of(end, str(run_dir))


def _died(pid: int | None, run_dir: Path | None, log: Path, before_start: bool) -> TrainFailed:
    """What to say when the training process is gone without a last event (killed, crashed)."""
    tail = _tail(log)
    said = f"; its last output:\n{tail}" if tail else ""
    who = f"the training process (pid {pid})" if pid else "the training process"
    if before_start or run_dir is None:
        return TrainFailed(f"{who} ended before training began{said}",
                           "start the run again; the log above says why it ended")
    return TrainFailed(f"{who} ended without finishing (killed, or the machine went down){said}",
                       f"resume it from its last complete checkpoint: ftui train --resume {quote(str(run_dir))}, or u on "
                       "the runs screen")


def _tail(log: Path) -> str:
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(line for line in lines[-LOG_TAIL_LINES:] if line.strip())


def _prune(folder: Path) -> None:
    """Launch files of runs long finished: the run directories hold everything that matters."""
    old = time.time() - KEEP_LAUNCH_S
    for path in folder.iterdir():
        try:
            if path.is_file() and path.stat().st_mtime < old:
                path.unlink()
        except OSError:
            pass


# The detached process ----------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """The child: train with every event written to the events file."""
    parser = argparse.ArgumentParser(prog="python -m engine.train.detached")
    parser.add_argument("--events", required=True)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config")
    source.add_argument("--resume")
    parser.add_argument("--gpus")
    parser.add_argument("--trust-remote-code", action="store_true")
    args = parser.parse_args(argv)

    stop = threading.Event()
    # No terminal to lose: a hangup is ignored, as nohup does. SIGTERM and SIGINT stop the run at
    # the end of its step, with a checkpoint, as they do a foreground `ftui train`.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    from engine.train import train

    sink = open(args.events, "a", encoding="utf-8")  # noqa: SIM115 - open for the whole run

    def on_event(event: Event) -> None:
        sink.write(json.dumps({"time": round(time.time(), 3), **to_record(event)}) + "\n")
        sink.flush()
        if isinstance(event, TrainStarted):
            _log_to(Path(event.run_dir) / OUTPUT_LOG, Path(args.events).with_name(
                Path(args.events).name.replace(".events.jsonl", ".log")))

    if args.config:
        config = RunConfig.from_dict(load_toml(Path(args.config)), source=args.config)
        Path(args.config).unlink(missing_ok=True)
    else:
        config = RunConfig()
    try:
        result = train(config, on_event, stop, resume=args.resume, gpus=args.gpus,
                       trust_remote_code=args.trust_remote_code)
    finally:
        sink.close()
    return 1 if result.status == "failed" else 0


def _log_to(target: Path, launch_log: Path) -> None:
    """From now on this process's output goes to the run directory's log (appended to across
    resumes), starting with what it printed while loading."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        fd = open_control(target, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            os.write(fd, launch_log.read_bytes())
        except OSError:
            pass
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        launch_log.unlink(missing_ok=True)
    except UnsafeFile as exc:
        print(f"{exc.reason}: this run's output stays in {launch_log}", file=sys.stderr, flush=True)
    except OSError:
        pass  # the launch log keeps it


if __name__ == "__main__":
    sys.exit(main())
