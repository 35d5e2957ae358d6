"""`ftui queue`: runs that train one after another, unattended, in a process that outlives the
terminal (engine/runqueue). `ftui queue add` queues a preset or config (several values of a
`--set` queue a sweep, as one group); `ftui queue` lists; move, cancel, pause, start, clear."""

from __future__ import annotations

import argparse
from shlex import quote
from typing import TYPE_CHECKING

from cli.output import fail, print_json

if TYPE_CHECKING:
    from engine.runqueue.store import Queue


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "queue", help="queue runs to train one after another, unattended",
        description="Runs wait in the output folder's queue.json and train one at a time, each in a process "
                    "of its own, started by a runner that outlives this terminal. A run that fails does not "
                    "stop the rest unless it was queued with --stop-on-failure. Without a subcommand: the list.")
    p.add_argument("--dir", default="runs", help="the output folder whose queue to list (default: runs)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run_list)
    sub = p.add_subparsers(dest="queue_command", metavar="ACTION")

    add = sub.add_parser("add", help="queue a run (or, with several values of a --set, a sweep) and start the runner")
    source = add.add_mutually_exclusive_group()
    source.add_argument("--preset", help="start from this preset (see `ftui presets`)")
    source.add_argument("--config", metavar="FILE", help="start from this TOML config file")
    add.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                     help="override a setting (repeatable); KEY=V1,V2 queues one run per value, as a sweep")
    add.add_argument("--stop-on-failure", action="store_true",
                     help="if this run fails, the runs queued after it wait instead of starting")
    add.add_argument("--no-start", action="store_true", help="queue only; `ftui queue start` starts the runner")
    add.set_defaults(func=run_add)

    for name, helped, func in (("move", "put a waiting run at POSITION (1 = next)", run_move),
                               ("cancel", "take a waiting run off the queue, or stop the one training (checkpoint)",
                                run_cancel)):
        action = sub.add_parser(name, help=helped)
        action.add_argument("id", metavar="ID", help="the entry's id as `ftui queue` lists it (a prefix will do)")
        if name == "move":
            action.add_argument("position", type=int, metavar="POSITION")
        action.add_argument("--dir", default="runs", help="the output folder (default: runs)")
        action.set_defaults(func=func)
    for name, helped, func in (("start", "start the runner (unpausing the queue)", run_start),
                               ("pause", "start no more runs after the one training now", run_pause),
                               ("clear", "forget the runs that ended (their folders stay)", run_clear)):
        action = sub.add_parser(name, help=helped)
        action.add_argument("--dir", default="runs", help="the output folder (default: runs)")
        action.set_defaults(func=func)


def run_list(args: argparse.Namespace) -> int:
    from engine.runqueue.store import QueueError, read_queue, runner_alive

    try:
        queue = read_queue(args.dir)
    except QueueError as exc:
        return fail(str(exc), 1)
    if args.json:
        print_json({"entries": [e.__dict__ for e in queue.entries], "paused": queue.paused,
                    "runner_pid": queue.runner_pid if runner_alive(queue) else None})
        return 0
    if not queue.entries:
        print(f"Nothing queued in {args.dir}/. Queue a run with: ftui queue add --preset demo")
        return 0
    for line in describe(queue):
        print(line)
    return 0


def describe(queue: Queue, ended: bool = True) -> list[str]:
    """The queue as `ftui queue` and (without the runs that `ended`) `ftui runs` print it: a
    table, then what the runner does."""
    from engine.runqueue.store import ENDED, WAITING, runner_alive

    rows = [("#", "ID", "STATUS", "RUN", "SWEEP", "RESULT")]
    position = 0
    for e in queue.entries:
        if not ended and e.status in ENDED:
            continue
        if e.status == WAITING:
            position += 1
        where = e.run_dir or "-"
        group = e.group.rsplit("/", 1)[-1] if e.group else "-"
        rows.append((str(position) if e.status == WAITING else "", e.id, e.status, e.label, group,
                     where if not e.reason or e.status == "running" else f"{where}: {e.reason}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[-1]]).rstrip()
             for row in rows]
    alive = runner_alive(queue)
    if queue.paused:
        lines.append(f"Paused: {queue.paused}; `ftui queue start --dir {quote(queue.folder)}` goes on.")
    if alive:
        lines.append(f"The runner (pid {queue.runner_pid}) trains them one at a time; it outlives the terminal.")
    elif queue.waiting and not queue.paused:
        lines.append(f"No runner works through it: `ftui queue start --dir {quote(queue.folder)}` starts one.")
    return lines


def run_add(args: argparse.Namespace) -> int:
    from engine.config.build import build_config
    from engine.config.schema import ConfigError
    from engine.runqueue.runner import start_runner
    from engine.runqueue.store import add, add_sweep, read_queue
    from engine.sweep import expand, parse_grid

    try:
        fixed, swept = parse_grid(args.sets)
        config = build_config(preset=args.preset, config_file=args.config, sets=fixed)
        config.validate()
        variants = expand(config, swept) if swept else []
    except ConfigError as exc:
        return fail(str(exc))
    if variants:
        sweep, entries = add_sweep(config, variants, args.stop_on_failure)
        print(f"Queued a sweep of {len(entries)} runs into {sweep}: "
              + "; ".join(f"{e.id} {e.label}" for e in entries))
    else:
        entries = add(config.output_dir, [(config.name, config)], stop_on_failure=args.stop_on_failure)
        print(f"Queued {entries[0].id} ({config.name}), number {len(read_queue(config.output_dir).waiting)} waiting.")
    folder = quote(config.output_dir)
    if args.no_start:
        print(f"Start it with: ftui queue start --dir {folder}")
        return 0
    pid = start_runner(config.output_dir)
    print(f"The queue's runner (pid {pid}) trains the waiting runs one at a time and outlives this terminal: "
          f"ftui queue --dir {folder} lists them, ftui attach follows the one training.")
    return 0


def run_move(args: argparse.Namespace) -> int:
    from engine.runqueue.store import QueueError, move

    try:
        queue = move(args.dir, args.id, args.position)
    except QueueError as exc:
        return fail(str(exc), 1)
    for line in describe(queue):
        print(line)
    return 0


def run_cancel(args: argparse.Namespace) -> int:
    from engine.runqueue.store import QueueError, cancel

    try:
        entry = cancel(args.dir, args.id)
    except QueueError as exc:
        return fail(str(exc), 1)
    if entry.status == "running":
        print(f"Asked {entry.id} ({entry.label}) to stop after its current step, with a checkpoint; "
              "the queue goes on with the next run.")
    else:
        print(f"Took {entry.id} ({entry.label}) off the queue.")
    return 0


def run_start(args: argparse.Namespace) -> int:
    from engine.runqueue.runner import start_runner
    from engine.runqueue.store import read_queue

    if not read_queue(args.dir).waiting:
        return fail(f"nothing waits in {args.dir}/'s queue (ftui queue add queues a run)", 1)
    print(f"The queue's runner (pid {start_runner(args.dir)}) trains the waiting runs one at a time.")
    return 0


def run_pause(args: argparse.Namespace) -> int:
    from engine.runqueue.store import pause

    pause(args.dir)
    print("The queue starts no more runs; the one training goes on (ftui queue cancel ID stops it). "
          f"ftui queue start --dir {quote(args.dir)} goes on.")
    return 0


def run_clear(args: argparse.Namespace) -> int:
    from engine.runqueue.store import clear_ended

    print(f"Forgot {clear_ended(args.dir)} ended run(s); their run folders stay.")
    return 0
