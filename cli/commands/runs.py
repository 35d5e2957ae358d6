"""`ftui runs`: the runs under the output folder with status, steps, best loss and artefacts;
a run training now shows the pid of its process."""

from __future__ import annotations

import argparse
import dataclasses
from shlex import quote

from cli.output import print_json


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("runs", help="list training runs")
    p.add_argument("--dir", default="runs", help="the output folder runs were written to (default: runs)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--compare", nargs="+", metavar="RUN",
                   help="plot these runs' loss curves over one another (run folders or names)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from engine.runs import list_runs

    if args.compare:
        from cli.commands.compare import compare

        return compare(args)
    runs = list_runs(args.dir)
    if args.json:
        print_json([dataclasses.asdict(r) for r in runs])
        return 0
    if not runs:
        print(f"No runs in {args.dir}/ yet. Start one with: ftui train --preset demo")
        _print_queue(args.dir)
        return 0
    rows = [("RUN", "STATUS", "PID", "STEPS", "BEST VAL", "METHOD", "MODEL", "ARTIFACTS")]
    for r in runs:
        best = f"{r.best_val_loss:.4f}" if r.best_val_loss is not None else "-"
        pid = str(r.pid) if r.status == "running" and r.pid is not None else "-"
        artifacts = [f"export ({r.export_status})" if a == "export" and r.export_status not in ("", "verified")
                     else a for a in r.artifacts]
        rows.append((r.path, r.status, pid, f"{r.step}/{r.total_steps}", best, r.method, r.model,
                     ",".join(artifacts) or "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    for r in runs:
        if r.status == "unreadable":
            print(f"\n{r.path}: {r.reason}")
        elif r.status == "interrupted" and r.resumable:
            print(f"\n{r.path}: interrupted: {r.reason}; resume it with ftui train --resume {quote(str(r.path))}")
        elif r.export_status == "unverified":
            print(f"\n{r.path}: its export is unverified (no verify.json), as an export stopped before "
                  f"verifying leaves it; `ftui export {quote(str(r.path))}` verifies it")
        elif r.export_status == "failed":
            print(f"\n{r.path}: its export failed verification (see export/verify.json); do not ship it")
    _print_queue(args.dir)
    return 0


def _print_queue(folder: str) -> None:
    """The runs that wait in the folder's queue, and the one it trains, below the table."""
    from cli.commands.queue import describe
    from engine.runqueue.store import ENDED, QueueError, read_queue

    try:
        queue = read_queue(folder)
    except QueueError as exc:
        print(f"\n{exc.reason}")
        return
    if any(e.status not in ENDED for e in queue.entries):
        print("\nQueue (ftui queue):")
        for line in describe(queue, ended=False):
            print(line)
