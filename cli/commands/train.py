"""`ftui train`: a run on the terminal, from the same events the TUI shows.

Training runs in a worker thread as in the TUI; this thread prints. The first Ctrl-C asks the
run to stop (it finishes the step and writes a checkpoint) and the exit status is then 130, so
`ftui train && ftui export` does not export a run the user interrupted; a second Ctrl-C aborts.
"""

from __future__ import annotations

import argparse
import os
import queue
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from cli.output import fail
from engine.config import ConfigError, Problem, RunConfig
from engine.events import (
    CheckpointSaved,
    Diagnosis,
    EvalLogged,
    Progress,
    StepLogged,
    TrainFailed,
    TrainFinished,
    TrainStarted,
)

BAR_WIDTH = 24
STOPPING = object()
"""Queued by the Ctrl-C handler so the message is printed by the main loop, not inside the handler."""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train", help="fine-tune from a preset or config file, headless",
        description="Train on the terminal. Ctrl-C stops after the current step with a checkpoint; "
                    "press it again to abort.",
    )
    source = p.add_mutually_exclusive_group()
    source.add_argument("--preset", help="start from this preset (see `ftui presets`)")
    source.add_argument("--config", metavar="FILE", help="start from this TOML config file")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override one setting, e.g. --set learning_rate=1e-4 (repeatable)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint (or a given one)")
    p.set_defaults(func=run)


def build_config(args: argparse.Namespace) -> RunConfig | None:
    """The config the flags describe; None when resuming (the run's own config is used)."""
    if args.resume:
        if args.preset or args.config or args.sets:
            raise ConfigError([Problem("--resume", "continues with the run's saved config; "
                                        "drop --preset/--config/--set")])
        return None
    from engine.configure import build_config as build

    notes: list[Problem] = []
    config = build(preset=args.preset, config_file=args.config, sets=args.sets, notes=notes)
    for note in notes:
        print(f"ftui: note: {note.field}: {note.message}", file=sys.stderr)
    return config


def run(args: argparse.Namespace) -> int:
    try:
        config = build_config(args)
    except ConfigError as exc:
        return fail(str(exc))
    from engine.train import train

    events: queue.Queue[Any] = queue.Queue()
    stop = threading.Event()
    outcome: list[Any] = []

    def work() -> None:
        try:
            outcome.append(train(config or RunConfig(), events.put, stop, resume=args.resume))
        finally:
            events.put(None)

    worker = threading.Thread(target=work, name="ftui-train", daemon=True)
    view = ProgressView(sys.stdout)

    def on_interrupt(signum: int, frame: object) -> None:
        # Only unbuffered writes here: the main thread may be inside print() when the signal lands.
        if stop.is_set():
            os.write(2, b"\nAborted: the run directory keeps its last complete checkpoint.\n")
            # The worker is inside torch; leaving without unwinding it is what "abort" means.
            os._exit(130)
        stop.set()
        events.put(STOPPING)

    previous = signal.signal(signal.SIGINT, on_interrupt) if _main_thread() else None
    try:
        worker.start()
        while (event := events.get()) is not None:
            if event is STOPPING:
                view.line("Stopping after this step and saving a checkpoint (Ctrl-C again to abort)...")
            else:
                view.show(event)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    result = outcome[0] if outcome else None
    if result is None or not result.ok:
        return 1
    return 130 if stop.is_set() else 0


class ProgressView:
    """A redrawn progress line on a terminal; one line per step when piped to a file."""

    def __init__(self, out: TextIO):
        self.out = out
        self.tty = out.isatty()
        self.bar_open = False
        self.last_progress = 0.0

    def line(self, text: str, err: bool = False) -> None:
        if self.bar_open:
            self.out.write("\n")
            self.bar_open = False
        print(text, file=sys.stderr if err else self.out, flush=True)

    def bar(self, text: str) -> None:
        if not self.tty:
            print(text, file=self.out, flush=True)
            return
        width = shutil.get_terminal_size((100, 24)).columns - 1
        self.out.write("\r" + text[:width].ljust(width))
        self.out.flush()
        self.bar_open = True

    def show(self, e: Any) -> None:
        if isinstance(e, Progress):
            now = time.monotonic()
            final = e.total is not None and e.done >= e.total
            # Piped output keeps one line per stage rather than one per tokenized conversation.
            if final or now - self.last_progress > (0.5 if self.tty else 5.0):
                self.last_progress = now
                amount = f" {e.done:.0f}/{e.total:.0f} {e.unit}".rstrip() if e.total else ""
                self.bar(f"{e.stage}:{amount} {e.message}".strip())
        elif isinstance(e, TrainStarted):
            resumed = f", resuming at step {e.start_step}" if e.start_step else ""
            self.line(f"Training {e.train_examples} examples ({e.val_examples} held out) for {e.total_steps} "
                      f"steps on {e.device}{resumed}\n  {e.trainable_params:,} of {e.total_params:,} parameters "
                      f"trained; padding {e.pad_share:.0%} of batch tokens; run directory {e.run_dir}")
        elif isinstance(e, StepLogged):
            done = int(BAR_WIDTH * e.step / max(e.total_steps, 1))
            self.bar(f"step {e.step}/{e.total_steps} [{'#' * done}{'.' * (BAR_WIDTH - done)}] "
                     f"loss {e.loss:.4f}  lr {e.lr:.2e}  {e.tokens_per_s:,.0f} tok/s  "
                     f"ETA {_duration(e.eta_s)}  mem {e.peak_mem_gib:.1f} GiB")
        elif isinstance(e, EvalLogged):
            self.line(f"  eval at step {e.step}: validation loss {e.val_loss:.4f} (best {e.best_val_loss:.4f})")
        elif isinstance(e, CheckpointSaved):
            checkpoint = Path(e.path).parent.name == "checkpoints"
            what = f"{e.reason} checkpoint" if checkpoint else f"{e.reason} weights"
            self.line(f"  saved {what} at step {e.step}: {e.path}")
        elif isinstance(e, Diagnosis):
            self.line(f"  ! {e.kind} at step {e.step}: {e.message}\n    advice: {e.advice}")
        elif isinstance(e, TrainFinished):
            best = f", best validation loss {e.best_val_loss:.4f}" if e.best_val_loss is not None else ""
            self.line(f"{'Stopped' if e.stopped else 'Finished'}: {e.reason}; final loss {e.final_loss:.4f}{best}\n"
                      f"  weights: {e.adapter_dir}\n  next: ftui export {e.run_dir}")
        elif isinstance(e, TrainFailed):
            where = f" at step {e.step}" if e.step else ""
            self.line(f"ftui: training failed{where}: {e.reason}\n  what to change: {e.advice}", err=True)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()
