"""Knowing a full disk when a library hides it, so every writer can say "the disk is full".

Python's own writes raise OSError(ENOSPC), but the libraries that write ftui's big files do not:
safetensors raises SafetensorError("... No space left on device (os error 28)"), torch.save a
RuntimeError("unexpected pos 576 vs 534") with no errno anywhere in its chain, numpy's tofile an
OSError("884736 requested and 385168 written") without one, and llama.cpp's quantizer returns 1.
So a failure is a full disk when the errno is anywhere in the exception chain, when the OS's words
are in the text, or, for the ones that say nothing, when almost no space is left where the write
was going. That last check must run before the partial file is removed, which frees the space.
"""

from __future__ import annotations

import errno
import shutil
from collections.abc import Iterator
from pathlib import Path

FULL_BELOW = 16 * 2**20
"""Free bytes under which a failed write is taken to be a full disk: no model file fits there."""
FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
FULL_WORDS = ("No space left on device", "os error 28", "Disk quota exceeded", "os error 122")


class DiskFullError(OSError):
    """A write that failed because the disk (or the user's quota) is full, whatever raised it."""

    def __init__(self, path: Path):
        super().__init__(errno.ENOSPC, f"the disk is full: writing {path} failed", str(path))
        self.path = path

    def __str__(self) -> str:
        return str(self.strerror)


def is_disk_full(exc: BaseException, folder: Path | None = None) -> bool:
    """Whether `exc` means the disk is full; with `folder`, a silent OSError or RuntimeError counts
    too when less than FULL_BELOW is free there."""
    for link in _chain(exc):
        if isinstance(link, OSError) and link.errno in FULL_ERRNOS:
            return True
        if any(words in str(link) for words in FULL_WORDS):
            return True
    if folder is None or not isinstance(exc, (OSError, RuntimeError)):
        return False
    free = free_bytes(folder)
    return free is not None and free < FULL_BELOW


def free_bytes(folder: Path) -> int | None:
    """Free bytes on the filesystem holding `folder` (or its nearest existing parent)."""
    probe = Path(folder)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return shutil.disk_usage(probe).free
    except OSError:
        return None


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        yield link
        link = link.__cause__ or link.__context__
