"""One progress stream for a multi-file hub download.

`hf_hub_download` reports bytes per file through a tqdm class and would draw its own bars over
the TUI and CLI; this adds the files up into `Progress` events instead, a few a second.
"""

from __future__ import annotations

import time
from typing import Any

from engine.events import EventSink, Progress

DOWNLOAD_STAGE = "download model"


class DownloadProgress:
    """Sums the bytes of a multi-file download into one Progress stream, at most 5 events a second."""

    def __init__(self, on_event: EventSink, repo: str, total: int, files: int):
        self.on_event, self.repo, self.total, self.files = on_event, repo, total, files
        self.done = 0
        self.file_index = 0
        self.file_name = ""
        self.last_emit = 0.0

    def next_file(self, name: str) -> None:
        self.file_index += 1
        self.file_name = name
        self.emit(force=True)

    def add(self, n: float) -> None:
        self.done += int(n)
        self.emit()

    def emit(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self.last_emit >= 0.2:
            self.last_emit = now
            message = f"{self.repo}: file {self.file_index}/{self.files} {self.file_name}"
            self.on_event(Progress(DOWNLOAD_STAGE, self.done, self.total or None, "B", message))

    def finish(self) -> None:
        self.done = max(self.done, self.total)
        self.on_event(Progress(DOWNLOAD_STAGE, self.done, self.total or None, "B", f"{self.repo}: {self.files} files ready"))

    def bar_class(self) -> type:
        """A tqdm class for hf_hub_download that shows nothing and forwards the bytes here."""
        from tqdm.auto import tqdm

        sink = self

        class _Bar(tqdm):
            def __init__(self, *args: Any, **kwargs: Any):
                kwargs["disable"] = True
                super().__init__(*args, **kwargs)
                sink.add(kwargs.get("initial") or 0)  # bytes already on disk from an interrupted download

            def update(self, n: float | None = 1) -> bool | None:
                sink.add(n or 0)
                return None

            # hf_hub_download reports network bytes here as well as written bytes to update();
            # counting both would double the total.
            def update_transfer(self, n: float | None = 1) -> None:
                return None

            def set_transfer_postfix_str(self, postfix: str, refresh: bool = False) -> None:
                return None

        return _Bar
