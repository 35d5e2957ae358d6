"""`ftui attach [RUN]`: follow a run that trains in another process, with `ftui train`'s progress line.

The run may have been started from the TUI, by `ftui train --detach` or by a foreground
`ftui train` in another terminal: all of them log to the run directory, which is all this reads.
Ctrl-C leaves the run training.
"""

from __future__ import annotations

import argparse
import sys
import threading
from shlex import quote

from cli.commands.train import ProgressView
from cli.output import fail


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "attach", help="follow a training run that runs in the background",
        description="Show a run's progress so far, then live, until it ends. Without RUN, the newest "
                    "run that is training now. Ctrl-C leaves it training.")
    p.add_argument("run", nargs="?", metavar="RUN", help="the run directory (default: the newest live run)")
    p.add_argument("--dir", default="runs", help="the output folder to look in without RUN (default: runs)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from engine.runs import RunReadError, list_runs, read_run
    from engine.train.detached import attach

    if args.run:
        try:
            info = read_run(args.run)
        except RunReadError as exc:
            return fail(str(exc), 1)
    else:
        live = [r for r in list_runs(args.dir) if r.status == "running"]
        if not live:
            return fail(f"no run is training in {args.dir}/ now (`ftui runs --dir {quote(args.dir)}` lists them)", 1)
        info = live[0]
    view = ProgressView(sys.stdout)
    if info.status == "running":
        view.line(f"Following {info.path} (pid {info.pid}); Ctrl-C leaves it training.")
    else:
        view.line(f"{info.path} is not training ({info.status}); its log to the end:")
    try:
        result = attach(info.path, view.show, threading.Event())
    except KeyboardInterrupt:
        view.line(f"\nLeft {info.path} training; `ftui stop {quote(str(info.path))}` stops it.")
        return 0
    if result is None or not result.ok:
        return 1
    return 130 if result.status == "stopped" else 0
