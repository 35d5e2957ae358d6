"""Following a run from another process: its JSONL event lines turned back into the events the
trainer emitted, first all those written so far, then each one as it is appended.

This is how the TUI and `ftui attach` show a run that trains in a process of its own: the same
`on_event` the screens and the progress line consume, fed from the file instead of the thread.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from engine.events import Event, EventSink, TrainFailed, TrainFinished, TrainStarted, from_record

POLL_S = 0.25
GRACE_S = 1.0
"""How long a follower keeps reading after the writer is gone, for lines still on their way."""


def follow(path: str | Path, on_event: EventSink, alive: Callable[[], bool],
           leave: threading.Event | None = None, tick: Callable[[], None] | None = None,
           since_end: bool = False, on_backlog: Callable[[list[Event]], None] | None = None,
           poll_s: float = POLL_S) -> TrainFinished | TrainFailed | None:
    """Feed every event in `path` to `on_event`, then the new ones as they come, until the writer
    is no longer `alive()` and nothing is left to read. Returns the last TrainFinished or
    TrainFailed read (a resumed run's file holds an earlier session's too, so only the writer's
    end says which is the last), or None when `leave` was set or the writer went without one.
    `tick` is called at every poll, for callers that act meanwhile (a stop request);
    `since_end` skips what the file already holds; `on_backlog` takes it in one list instead
    (a screen redraws a long run's curve once rather than point by point)."""
    tail = _Tail(Path(path))
    if since_end:
        tail.skip_to_end()
    last: TrainFinished | TrainFailed | None = None
    gone_since: float | None = None
    backlog = on_backlog
    while True:
        lines = tail.read()
        events = [e for e in map(_event, lines) if e is not None]
        if backlog is not None:
            backlog(events)
            backlog = None
            last = _last_end(events)
            events = []
        for event in events:
            on_event(event)
            if leave is not None and leave.is_set():
                return None
            last = _last_end([event], last)
        if leave is not None and leave.is_set():
            return None
        if tick is not None:
            tick()
        if lines:
            gone_since = None
            continue
        if alive():
            gone_since = None
        elif last is not None:
            return last
        elif gone_since is None:
            gone_since = time.monotonic()
        elif time.monotonic() - gone_since > GRACE_S:
            return None
        if leave is not None:
            leave.wait(poll_s)
        else:
            time.sleep(poll_s)


def _last_end(events: list[Event], last: TrainFinished | TrainFailed | None = None) -> TrainFinished | TrainFailed | None:
    for event in events:
        if isinstance(event, TrainFinished | TrainFailed):
            last = event
        elif isinstance(event, TrainStarted):
            last = None  # a resumed session begins
    return last


def _event(line: bytes) -> Event | None:
    try:
        record = json.loads(line)
        return from_record(record) if isinstance(record, dict) else None
    except (ValueError, TypeError):
        return None


class _Tail:
    """New complete lines of a file that is appended to, read through one open descriptor (a
    writer may delete the file when done). A file replaced under the same name (the trainer
    rewrites metrics.jsonl without the lines of an attempt it retries) is followed from where the
    two stop agreeing."""

    def __init__(self, path: Path):
        self.path = path
        self.fh: BinaryIO | None = None
        self.partial = b""
        self.seen: list[int] = []
        """Hashes of the lines handed out, to find where a rewritten file departs from them."""

    def skip_to_end(self) -> None:
        self.read()
        self.partial = b""

    def read(self) -> list[bytes]:
        if self.fh is None:
            try:
                self.fh = open(self.path, "rb")  # noqa: SIM115 - held for the life of the follower
            except FileNotFoundError:
                return []
        lines = self._complete(self.fh.read())
        self.seen.extend(hash(line) for line in lines)
        try:
            replaced = os.stat(self.path).st_ino != os.fstat(self.fh.fileno()).st_ino
        except FileNotFoundError:
            replaced = False
        if replaced:
            self.fh.close()
            fresh = self._reopen()
            self.seen.extend(hash(line) for line in fresh)
            lines += fresh
        return lines

    def _complete(self, data: bytes) -> list[bytes]:
        data = self.partial + data
        *lines, self.partial = data.split(b"\n")
        return [line for line in lines if line.strip()]

    def _reopen(self) -> list[bytes]:
        self.fh = fh = open(self.path, "rb")  # noqa: SIM115
        self.partial = b""
        lines = self._complete(fh.read())
        agree = 0
        while agree < min(len(lines), len(self.seen)) and hash(lines[agree]) == self.seen[agree]:
            agree += 1
        del self.seen[agree:]
        return lines[agree:]

    def __del__(self) -> None:
        if self.fh is not None:
            self.fh.close()
