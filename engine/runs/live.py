"""A live run: the files through which other processes find, follow and stop the one that trains it.

A run outlives the terminal that started it, so a later `ftui`, `ftui attach` or `ftui stop`
(another SSH login, another machine sharing the folder) reaches it through its directory alone;
no socket is opened:

  lock       flock'ed by the one process that trains the run, for as long as it does, and
             holding its pid and host: a second writer is refused, naming them
  heartbeat  touched every HEARTBEAT_S seconds by that process: a run whose heartbeat is older
             than STALE_S (a frozen process, a reused pid, a machine that went down) is not live
  stop       written by whoever wants the run to stop; the trainer sees it within WATCH_S,
             finishes the step, writes a checkpoint and removes it

The trainer takes the lock when it creates or reopens the run (`acquire`) and runs a `Watcher`
thread for the heartbeat and the stop file; readers ask `writer_alive`.
"""

from __future__ import annotations

import fcntl
import os
import socket
import threading
import time
from pathlib import Path
from shlex import quote

from engine.errors import ActionableError
from engine.files.control import UnsafeFile, check_control, open_control
from engine.files.pids import pid_alive

LOCK_FILE = "lock"
HEARTBEAT_FILE = "heartbeat"
STOP_FILE = "stop"
WRITTEN_FILES = ("metrics.jsonl", "output.log", "heartbeat")
"""What the trainer appends to or touches besides the lock: checked before a run starts."""
HEARTBEAT_S = 2.0
STALE_S = 60.0
"""Thirty missed heartbeats: far above any pause of a healthy trainer (a checkpoint written
with the GIL held), far below the time a user waits before resuming a dead run."""
WATCH_S = 0.5


class RunBusy(ActionableError):
    """Another process trains this run."""

    def __init__(self, run_dir: Path, pid: int | None, host: str, silent_s: float | None = None):
        where = f" on {host}" if host and host != socket.gethostname() else ""
        who = f"process {pid}{where}" if pid else "another process"
        if silent_s is not None:
            # The lock is held, yet nothing beats: a shared filesystem keeping a lost machine's lock
            # (NFS holds it until it notices the client is gone, or for good on an NFSv3 server that never does).
            super().__init__(
                f"{run_dir} is locked by {who}, which has not touched the heartbeat for {_ago(silent_s)}: the "
                "filesystem still holds the lock of a process or machine that is gone",
                f"if {host or 'that machine'} is down or the process is dead, remove {quote(str(run_dir / LOCK_FILE))} and "
                f"resume; otherwise wait, the filesystem releases a lost machine's lock by itself (NFSv4: in about 90 s)")
        else:
            super().__init__(
                f"{run_dir} is being trained by {who}; a run has one writer at a time",
                f"follow it with `ftui attach {quote(str(run_dir))}`, or stop it with `ftui stop {quote(str(run_dir))}` and "
                "resume once it has written its checkpoint")
        self.pid = pid
        self.host = host


class RunLock:
    """The exclusive lock on a run directory, held through an open file until `release`."""

    def __init__(self, fd: int):
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


def acquire(run_dir: str | Path) -> RunLock:
    """Take the run's lock for this process, or raise RunBusy naming the process that has it.

    A stop file left by an earlier session (its process died before reading it) is removed, so
    it does not stop the run that starts now."""
    run_dir = Path(run_dir)
    fd = open_control(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 200).decode("utf-8", "replace").split()
        os.close(fd)
        pid = int(holder[0]) if holder and holder[0].isdigit() else None
        age = heartbeat_age(run_dir)
        raise RunBusy(run_dir, pid, holder[1] if len(holder) > 1 else "",
                      silent_s=age if age is not None and age > STALE_S else None) from None
    try:
        for name in WRITTEN_FILES:
            check_control(run_dir / name)
    except UnsafeFile:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
    (run_dir / STOP_FILE).unlink(missing_ok=True)
    beat(run_dir)
    return RunLock(fd)


def beat(run_dir: str | Path) -> None:
    """Say "still here"; a full disk or a vanished folder must not end the run over it."""
    try:
        fd = open_control(Path(run_dir) / HEARTBEAT_FILE, os.O_WRONLY | os.O_CREAT)
    except (OSError, UnsafeFile):
        return
    try:
        os.utime(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def heartbeat_age(run_dir: str | Path) -> float | None:
    """Seconds since the trainer last touched the heartbeat; None when the run has none (older runs)."""
    try:
        return max(0.0, time.time() - (Path(run_dir) / HEARTBEAT_FILE).stat().st_mtime)
    except OSError:
        return None


def writer_alive(run_dir: str | Path, pid: int | None, host: str) -> bool:
    """Whether the process run.json names is still training (see `not_live_because`)."""
    return not not_live_because(run_dir, pid, host)


def not_live_because(run_dir: str | Path, pid: int | None, host: str) -> str:
    """Why the process run.json names is not training the run now, in words; "" while it is.

    The heartbeat decides wherever the run is opened: a stale one says no on any machine (a
    frozen process, a reused pid, a machine that went down). Without one, another machine's run
    is not live either: every version that records the host beats, so a run.json naming another
    host and no heartbeat file is a folder copied from that machine (or left on a shared one)
    after its trainer ended. On this machine (or with no host recorded, from before hosts were)
    the pid must exist too. Another machine's run with a fresh heartbeat is live: the pid is
    not this machine's to check."""
    here = socket.gethostname()
    who = f"process {pid}" if pid else "its process"
    where = f" on {host}" if host and host != here else ""
    age = heartbeat_age(run_dir)
    if age is not None and age > STALE_S:
        return (f"{who}{where} has not touched the heartbeat for {_ago(age)} "
                "(it froze, or its machine went down)")
    if host and host != here:
        if age is None:
            return (f"run.json names {who}{where}, and no heartbeat file says it still trains "
                    "(a folder copied from that machine, or one it left behind)")
        return ""
    if pid is None:
        return "" if age is not None else "run.json names no process and the run has no heartbeat"
    if not pid_alive(pid):
        return f"{who} is gone (killed, or this machine restarted)"
    return ""


def _ago(seconds: float) -> str:
    minutes = int(seconds // 60)
    if minutes < 120:
        return f"{minutes} min"
    return f"{minutes // 60} h" if minutes < 48 * 60 else f"{minutes // 1440} days"


def request_stop(run_dir: str | Path) -> Path:
    """Ask the run's trainer to stop at the end of its step, with a checkpoint."""
    path = Path(run_dir) / STOP_FILE
    try:
        fd = open_control(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    except FileExistsError:
        return path  # asked already; a link planted here is left alone, never written through
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(f"{os.getpid()} {socket.gethostname()}\n")
    return path


def stop_requested(run_dir: str | Path) -> bool:
    return (Path(run_dir) / STOP_FILE).exists()


class Watcher:
    """The trainer's side while a run is live: a thread that beats the heartbeat and sets `stop`
    when a stop file appears (the training loop already checks `stop` at every step)."""

    def __init__(self, run_dir: str | Path, stop: threading.Event):
        self.run_dir = Path(run_dir)
        self.stop = stop
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="ftui-run-watcher", daemon=True)

    def start(self) -> Watcher:
        self._thread.start()
        return self

    def close(self) -> None:
        self._done.set()
        self._thread.join()
        (self.run_dir / STOP_FILE).unlink(missing_ok=True)

    def _watch(self) -> None:
        last_beat = 0.0
        while not self._done.is_set():
            if stop_requested(self.run_dir):
                self.stop.set()
            now = time.monotonic()
            if now - last_beat >= HEARTBEAT_S:
                beat(self.run_dir)
                last_beat = now
            self._done.wait(WATCH_S)
