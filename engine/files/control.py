"""Opening a run's control files (lock, stop, heartbeat, metrics, logs) safely in a shared folder.

Run folders are often shared (a team's NFS, a colleague's run copied over). A file planted there
as a symbolic link (`lock -> ~victim/.ssh/authorized_keys`) would make whoever resumes the run
truncate and write the link's target. These opens never follow a link and refuse a file that
another user owns, saying which and why.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from engine.errors import ActionableError


class UnsafeFile(ActionableError):
    """A control file in a run folder is a link, not a regular file, or another user's."""


def open_control(path: Path, flags: int, mode: int = 0o644) -> int:
    """`os.open(path, flags)` that refuses a symbolic link, a non-file and another user's file."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeFile(f"{path} is a symbolic link ({os.readlink(path)!r}); ftui does not write a run's control "
                             "files through links, which someone sharing the folder could have planted",
                             "remove the link if you did not make it, then try again") from None
        raise
    info = os.fstat(fd)
    problem = ""
    if not stat.S_ISREG(info.st_mode):
        problem = "is not a regular file"
    elif info.st_uid != os.geteuid():
        problem = f"belongs to another user (uid {info.st_uid})"
    if problem:
        os.close(fd)
        raise UnsafeFile(f"{path} {problem}; ftui writes only its own files in a run folder",
                         "remove it if you did not make it, or train the run as the user who owns it")
    return fd


def check_control(path: Path) -> None:
    """Raise UnsafeFile when `path` exists and is not this user's regular file (a run about to
    start checks the files it will write, rather than failing at its first write)."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISREG(info.st_mode) and info.st_uid == os.geteuid():
        return
    os.close(open_control(path, os.O_RDONLY))  # raises, saying which problem


def append_line(path: Path, line: str) -> None:
    """Append one line (a metrics record, a failure) to a control file, created if missing."""
    with os.fdopen(open_control(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND), "a", encoding="utf-8") as fh:
        fh.write(line + "\n")
