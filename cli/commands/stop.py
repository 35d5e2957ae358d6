"""`ftui stop RUN`: ask a run that trains in another process to stop, and wait for its checkpoint.

The request is a file in the run directory (no signal, no socket), so it works for a run started
anywhere: the TUI, `ftui train --detach`, a foreground `ftui train`, another machine on the same
shared folder.
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading
from shlex import quote
from typing import TYPE_CHECKING

from cli.commands.train import ProgressView
from cli.output import fail

if TYPE_CHECKING:
    from engine.runs import RunInfo


NOTHING_TO_STOP = 3
"""The exit code when no process trains the run, so a script can tell it from a failed run (1)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "stop", help="stop a training run at its next step, with a checkpoint",
        description="Ask the run to stop after its current step; it writes a checkpoint (resume it "
                    "with ftui train --resume RUN). Waits for the checkpoint unless --no-wait.")
    p.add_argument("run", metavar="RUN", help="the run directory")
    p.add_argument("--no-wait", action="store_true", help="return once the request is written")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from engine.runs import RunReadError, read_run, request_stop
    from engine.train.detached import attach

    try:
        info = read_run(args.run)
    except RunReadError as exc:
        return fail(str(exc), 1)
    if info.status != "running":
        return fail(_nothing_to_stop(info), NOTHING_TO_STOP)
    request_stop(info.path)
    view = ProgressView(sys.stdout)
    where = f" on {info.host}" if info.host and info.host != socket.gethostname() else ""
    view.line(f"Asked {info.path} (pid {info.pid}{where}) to stop after step {info.step + 1}; "
              + ("it writes a checkpoint first." if args.no_wait else "waiting for its checkpoint..."))
    if args.no_wait:
        return 0
    try:
        result = attach(info.path, view.show, threading.Event(), since_end=True)
    except KeyboardInterrupt:
        view.line("\nNot waiting any more; the request stands and the run stops at its next step.")
        return 130
    return 0 if result is not None and result.ok else 1


def _nothing_to_stop(info: RunInfo) -> str:
    run = quote(info.path)
    if info.status == "interrupted":
        then = (f"resume it with ftui train --resume {run}" if info.resumable
                else f"it had trained all its steps; export it with ftui export {run}")
        return f"nothing trains {info.path} now, so there is nothing to stop: {info.reason}; {then}"
    return (f"{info.path} is not training ({info.status} at step {info.step}/{info.total_steps}); "
            f"there is nothing to stop (ftui runs lists what trains now)")
