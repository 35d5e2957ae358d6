"""Atomic writes: a file or folder appears complete under its final name, or not at all.

A write in progress lives beside its target as `.<name>.p<pid>.<random>.partial`. A process
killed mid-write leaves that behind (a checkpoint's can be tens of MB), so each write first
sweeps its folder of partials whose process is gone and that are older than this process,
the only ones that cannot still be in progress.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from engine.files.disk_full import DiskFullError, is_disk_full
from engine.files.pids import pid_alive

PROCESS_START = time.time()
"""A partial older than this process, of a process that is gone, is a leftover."""
PARTIAL = re.compile(r"^\.(?P<name>.+?)(?:\.p(?P<pid>\d+))?\.[^.]+\.partial$")


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


@contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it into place only if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_partials(path.parent)
    fd, name = tempfile.mkstemp(prefix=_prefix(path), suffix=".partial", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        follow_umask(tmp)
        os.replace(tmp, path)
    except Exception as exc:
        _raise_if_disk_full(exc, path)
        raise
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield a temporary folder beside `path`; it replaces `path` only if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_partials(path.parent)
    tmp = Path(tempfile.mkdtemp(prefix=_prefix(path), suffix=".partial", dir=path.parent))
    try:
        yield tmp
        follow_umask(tmp)
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except Exception as exc:
        _raise_if_disk_full(exc, path)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def remove_dir(path: Path) -> None:
    """Delete a folder so that it is never seen half-deleted under its own name: renamed to a
    partial first, which the next write in the folder sweeps up if this process dies mid-way."""
    gone = path.with_name(f"{_prefix(path)}gone.partial")
    os.replace(path, gone)
    shutil.rmtree(gone, ignore_errors=True)


def sweep_partials(folder: Path) -> list[Path]:
    """Remove the leftovers of killed writes in `folder`; returns what was removed.

    A partial is left over when it is older than this process and the process named in it is
    gone (one without a pid, from an older version, only needs to be older). An `.<name>.old`
    that a kill left between atomic_dir's two renames is put back when `<name>` is missing.
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith("."):
            continue
        try:
            if entry.stat(follow_symlinks=False).st_mtime >= PROCESS_START:
                continue
        except OSError:
            continue
        path = Path(entry.path)
        if entry.name.endswith(".old") and entry.is_dir(follow_symlinks=False):
            target = path.with_name(entry.name[1:-len(".old")])
            if not target.exists():
                os.replace(path, target)
                continue
        else:
            match = PARTIAL.match(entry.name)
            if match is None or (match["pid"] is not None and _alive(int(match["pid"]))):
                continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def _prefix(path: Path) -> str:
    return f".{path.name}.p{os.getpid()}."


def _alive(pid: int) -> bool:
    return pid == os.getpid() or pid_alive(pid)


def follow_umask(path: Path) -> None:
    """Give `path` (and a folder's contents) the modes a plain open() or mkdir() would: mkstemp and
    mkdtemp make 0600/0700, and so do the temporary files safetensors and transformers rename
    into place, which left weights and GGUFs unreadable to the user's group."""
    mask = umask()
    for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
        p.chmod((0o777 if p.is_dir() else 0o666) & ~mask)


def umask() -> int:
    """The process umask, read without changing it (os.umask can only set it, racing other threads)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _raise_if_disk_full(exc: Exception, path: Path) -> None:
    """Whatever a library raised for a full disk becomes DiskFullError (an OSError with ENOSPC)
    naming `path`. Runs while the partial file still holds its space, so free space can tell."""
    if not isinstance(exc, DiskFullError) and is_disk_full(exc, path.parent):
        raise DiskFullError(path) from exc
