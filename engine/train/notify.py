"""Telling someone that a run nobody watches has ended or stalled.

A run over SSH is left alone for hours; its end (finished, stopped, failed) and a stall (no step
for STALL_FACTOR times the median time between steps, and at least STALL_FLOOR_S) are worth a
message. The training process sends it, so a detached run and a headless `ftui train` alike do:

  notify_url      (or FTUI_NOTIFY_URL) gets a POST of the summary as JSON. Headers ask ntfy
                  (2.10+) to render it as a titled message, so an ntfy topic URL works as is;
                  any other webhook gets the JSON and ignores them.
  notify_command  runs with the summary in FTUI_NOTIFY_* environment variables, never through a
                  shell (split as a shell would, then run directly).

A notification that fails costs the run nothing: one line on the process's output (output.log
for a detached run) says what failed and what to check, and nothing is raised. A NaN loss ends
the run as failed (engine.train.diagnose), so its notification is the failure's.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from engine.config.schema import RunConfig
from engine.events import StepLogged, TrainFailed, TrainFinished, TrainStarted

URL_ENV = "FTUI_NOTIFY_URL"
SEND_TIMEOUT_S = 10.0
"""Per URL or command: a hung endpoint delays the end of the process at most this long."""
STALL_FACTOR = 10.0
STALL_FLOOR_S = 300.0
"""A stall is never called sooner: evaluations and checkpoints of a large model pause steps for minutes."""


@dataclass(frozen=True)
class Summary:
    """What a notification says; its fields are the JSON body and the command's environment."""

    event: str
    """finished, stopped, failed or stalled."""
    run: str
    run_dir: str
    step: int
    total_steps: int
    reason: str
    host: str

    @property
    def title(self) -> str:
        return f"ftui: {self.run} {self.event}"

    @property
    def message(self) -> str:
        return f"{self.run} {self.event} at step {self.step}/{self.total_steps} on {self.host}: {self.reason}"

    def body(self) -> bytes:
        return json.dumps({**asdict(self), "title": self.title, "message": self.message}).encode()

    def environment(self) -> dict[str, str]:
        values = {**asdict(self), "title": self.title, "message": self.message}
        return {f"FTUI_NOTIFY_{k.upper()}": str(v) for k, v in values.items()}


class Notifier:
    """One more consumer of a run's events (`feeding`), sending its end and watching for stalls."""

    def __init__(self, url: str, command: str, run_dir: Path, log: Callable[[str], None],
                 stall_factor: float = STALL_FACTOR, stall_floor_s: float = STALL_FLOOR_S):
        self.url, self.command, self.run_dir, self.log = url, command, Path(run_dir), log
        self.stall_factor, self.stall_floor_s = stall_factor, stall_floor_s
        self._lock = threading.Lock()
        self._steps: list[float] = []
        self._last_step = StepLogged(0, 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
        self._last_at: float | None = None
        self._stalled = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="ftui-stall-watch", daemon=True)

    def start(self) -> Notifier:
        self._thread.start()
        return self

    def close(self) -> None:
        self._done.set()
        self._thread.join()

    def feeding(self, on_event: Callable[[Any], None]) -> Callable[[Any], None]:
        def both(event: Any) -> None:
            try:
                on_event(event)
            finally:
                self.saw(event)
        return both

    def saw(self, event: Any) -> None:
        if isinstance(event, TrainStarted):
            with self._lock:
                self._steps.clear()
                self._last_at = None
        elif isinstance(event, StepLogged):
            now = time.monotonic()
            with self._lock:
                if self._last_at is not None:
                    self._steps.append(now - self._last_at)
                self._last_at, self._last_step, self._stalled = now, event, False
        elif isinstance(event, TrainFinished):
            self._done.set()
            self.send(self._summary("stopped" if event.stopped else "finished", event.steps, event.reason))
        elif isinstance(event, TrainFailed):
            self._done.set()
            step = event.step if event.step is not None else self._last_step.step
            self.send(self._summary("failed", step, f"{event.reason} (what to change: {event.advice})"))

    def stall_after_s(self) -> float | None:
        """How long without a step counts as a stall now; None before two steps set a pace."""
        with self._lock:
            if not self._steps:
                return None
            return max(self.stall_factor * statistics.median(self._steps), self.stall_floor_s)

    def _watch(self) -> None:
        while not self._done.wait(min(5.0, self.stall_floor_s / 4)):
            limit = self.stall_after_s()
            with self._lock:
                silent = time.monotonic() - self._last_at if self._last_at is not None else 0.0
                stalled = limit is not None and silent > limit and not self._stalled
                if stalled:
                    self._stalled = True
            if stalled:
                self.send(self._summary("stalled", self._last_step.step, (
                    f"no step for {silent:.0f} s, over {self.stall_factor:g} times the median step time; "
                    f"see {self.run_dir / 'output.log'} and whether the process still runs")))

    def _summary(self, event: str, step: int, reason: str) -> Summary:
        total = self._last_step.total_steps
        return Summary(event, self.run_dir.name, str(self.run_dir), step, max(total, step), reason, socket.gethostname())

    def send(self, summary: Summary) -> None:
        """POST the summary and run the command; any failure is a line in the log, never raised."""
        if self.url:
            request = urllib.request.Request(self.url, data=summary.body(), method="POST", headers={
                "Content-Type": "application/json", "X-Title": summary.title, "X-Template": "yes",
                "X-Message": "{{.message}}", "X-Tags": "ftui," + summary.event,
            })
            try:
                with urllib.request.urlopen(request, timeout=SEND_TIMEOUT_S) as response:  # noqa: S310 - the user's URL
                    response.read(1024)
            except (urllib.error.URLError, OSError, ValueError) as exc:
                self.log(f"ftui: the {summary.event} notification to {self.url} failed ({_why(exc)}); the run is "
                         f"unaffected; check notify_url in the run's config.toml or {URL_ENV}")
        if self.command:
            try:
                done = subprocess.run(shlex.split(self.command), env={**os.environ, **summary.environment()},
                                      stdin=subprocess.DEVNULL, capture_output=True, timeout=SEND_TIMEOUT_S, check=False)
            except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
                self.log(f"ftui: notify_command {self.command!r} could not run for the {summary.event} notification "
                         f"({_why(exc)}); the run is unaffected; check the command in the run's config.toml")
            else:
                if done.returncode != 0:
                    said = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
                    self.log(f"ftui: notify_command {self.command!r} exited {done.returncode} for the {summary.event} "
                             f"notification {said[0]}".rstrip() + "; the run is unaffected")


def _why(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    if isinstance(exc, subprocess.TimeoutExpired):
        return f"no answer in {SEND_TIMEOUT_S:g} s"
    return str(exc) or type(exc).__name__


def _print_err(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@contextlib.contextmanager
def notifying(config: RunConfig, run_dir: Path, log: Callable[[str], None] = _print_err) -> Iterator[Notifier | None]:
    """The run's notifier while it trains, or None when neither a URL nor a command is set."""
    url = config.notify_url or os.environ.get(URL_ENV, "").strip()
    if url and not url.startswith(("http://", "https://")):
        log(f"ftui: {URL_ENV}={url!r} is not an http:// or https:// URL; no notification will be sent there")
        url = ""
    if not url and not config.notify_command:
        yield None
        return
    notifier = Notifier(url, config.notify_command, run_dir, log).start()
    try:
        yield notifier
    finally:
        notifier.close()
