"""`ftui train`: a run on the terminal, from the same events the TUI shows.

Training runs in a worker thread as in the TUI; this thread prints. The first Ctrl-C, a hangup
(SIGHUP: the terminal went away) or SIGTERM asks the run to stop (it finishes the step and writes
a checkpoint) and the exit status is then 128 + the signal (130, 129, 143), so
`ftui train && ftui export` does not export a run that was interrupted; a second Ctrl-C aborts.
Once the terminal is gone, output goes nowhere and the run still stops at its checkpoint.

`--detach` hands the run to a process of its own (engine.train.detached) that a closed terminal
does not stop; `ftui attach` and `ftui stop` reach it later.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from shlex import quote
from typing import Any, TextIO, assert_never

from cli.output import fail
from engine.config.schema import ConfigError, Problem, RunConfig
from engine.display import duration
from engine.events import (
    CheckpointSaved,
    Diagnosis,
    EvalFailed,
    EvalLogged,
    Event,
    ExportFailed,
    ExportFileWritten,
    ExportFinished,
    ExportStageStarted,
    ExportVerified,
    Progress,
    RewardLogged,
    StepLogged,
    TrainFailed,
    TrainFinished,
    TrainStarted,
)

BAR_WIDTH = 24
STOP_SIGNALS = (signal.SIGINT, signal.SIGHUP, signal.SIGTERM)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train", help="fine-tune from a preset or config file, headless",
        description="Train on the terminal. Ctrl-C, a hangup or SIGTERM stops after the current step "
                    "with a checkpoint (press Ctrl-C again to abort). --detach trains in the background "
                    "instead: the run outlives this terminal; ftui attach follows it, ftui stop stops it.",
    )
    source = p.add_mutually_exclusive_group()
    source.add_argument("--preset", help="start from this preset (see `ftui presets`)")
    source.add_argument("--config", metavar="FILE", help="start from this TOML config file")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override one setting, e.g. --set learning_rate=1e-4 (repeatable)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint (or a given one)")
    p.add_argument("--gpus", metavar="LIST",
                   help="train on these GPUs, one process each, e.g. 0,1 (or cpu:N); with --resume, move the run there")
    p.add_argument("--detach", action="store_true",
                   help="train in a background process that outlives this terminal; returns once training starts")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="with --resume: allow the run's model repository code to run (its config.toml is not enough)")
    p.add_argument("--yes", "-y", action="store_true",
                   help="start even when a live ftui run holds memory on the GPU, without asking")
    p.set_defaults(func=run)


def build_config(args: argparse.Namespace) -> RunConfig | None:
    """The config the flags describe; None when resuming (the run's own config is used)."""
    if args.resume:
        if args.preset or args.config or args.sets:
            raise ConfigError([Problem("--resume", "continues with the run's saved config; "
                                        "drop --preset/--config/--set")])
        return None
    from engine.config.build import build_config as build

    notes: list[Problem] = []
    sets = [*args.sets, f"gpus={args.gpus}"] if args.gpus is not None else args.sets
    config = build(preset=args.preset, config_file=args.config, sets=sets, notes=notes)
    for note in notes:
        print(f"ftui: note: {note.field}: {note.message}", file=sys.stderr)
    return config


def run(args: argparse.Namespace) -> int:
    try:
        config = build_config(args)
    except ConfigError as exc:
        return fail(str(exc))
    from engine.runs import RunBusy, refuse_if_live, run_dir_of

    if args.resume:
        try:
            refuse_if_live(args.resume)
        except RunBusy as busy:
            return fail(f"{busy.reason}\n  {busy.advice}", 1)
    output_dir = run_dir_of(args.resume).resolve().parent if args.resume else Path(config.output_dir if config else "runs")
    if not _gpu_free_or_confirmed(output_dir, args.yes):
        return 1
    gpus = args.gpus if args.resume else None
    if args.detach:
        return _detach(config, args.resume, gpus, args.trust_remote_code)
    return _foreground(config, args.resume, gpus, args.trust_remote_code)


def _foreground(config: RunConfig | None, resume: str | None, gpus: str | None, trust_remote_code: bool) -> int:
    from engine.train import train

    events: queue.Queue[Any] = queue.Queue()
    stop = threading.Event()
    outcome: list[Any] = []
    signals: list[int] = []
    """The stop signals received, in order: the first sets the exit status."""

    def work() -> None:
        try:
            outcome.append(train(config or RunConfig(), events.put, stop, resume=resume, gpus=gpus,
                                 trust_remote_code=trust_remote_code))
        finally:
            events.put(None)

    worker = threading.Thread(target=work, name="ftui-train", daemon=True)
    view = ProgressView(sys.stdout)

    def on_signal(signum: int, frame: object) -> None:
        # Only unbuffered writes here: the main thread may be inside print() when the signal lands.
        if signum == signal.SIGINT and signal.SIGINT in signals:
            with contextlib.suppress(OSError):
                os.write(2, b"\nAborted: the run directory keeps its last complete checkpoint.\n")
            # The worker is inside torch; leaving without unwinding it is what "abort" means.
            os._exit(130)
        signals.append(signum)
        if not stop.is_set():
            stop.set()
            events.put(signal.Signals(signum))

    previous = {sig: signal.signal(sig, on_signal) for sig in STOP_SIGNALS} if _main_thread() else {}
    try:
        worker.start()
        while (event := events.get()) is not None:
            try:
                if isinstance(event, signal.Signals):
                    again = " (Ctrl-C again to abort)" if event == signal.SIGINT else ""
                    view.line(f"{_signal_words(event)}: stopping after this step and saving a checkpoint{again}...")
                else:
                    view.show(event)
            except OSError:
                view.silence()  # the terminal went away (EIO, EPIPE): the run goes on to its checkpoint
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    result = outcome[0] if outcome else None
    if result is None or not result.ok:
        return 1
    return 128 + signals[0] if signals else 0


def _signal_words(sig: signal.Signals) -> str:
    return {signal.SIGINT: "Interrupted", signal.SIGHUP: "Hangup (SIGHUP)",
            signal.SIGTERM: "Terminated (SIGTERM)"}.get(sig, sig.name)


def _detach(config: RunConfig | None, resume: str | None, gpus: str | None, trust_remote_code: bool) -> int:
    """Start the run in its own process, show it until training begins, then leave it going."""
    from engine.train.detached import follow_launch, launch

    started = launch(config, resume, gpus, trust_remote_code)
    view = ProgressView(sys.stdout)
    view.line(f"Started in the background as pid {started.pid}; loading (Ctrl-C here leaves it loading)...")
    leave = threading.Event()
    seen: list[Any] = []

    def on_event(event: Any) -> None:
        view.show(event)
        seen.append(event)
        if isinstance(event, TrainStarted):
            leave.set()

    try:
        result = follow_launch(started, on_event, threading.Event(), leave)
    except KeyboardInterrupt:
        view.line(f"\nLeft pid {started.pid} loading in the background: `ftui runs` lists the run once it trains.")
        return 0
    if result is not None:
        return 0 if result.ok else 1
    run_dir = next(e.run_dir for e in seen if isinstance(e, TrainStarted))
    view.line(f"Training in the background as pid {started.pid}; closing this terminal does not stop it.\n"
              f"  follow: ftui attach {quote(str(run_dir))}\n  stop:   ftui stop {quote(str(run_dir))}\n"
              f"  output: {Path(run_dir) / 'output.log'}")
    return 0


def _gpu_free_or_confirmed(output_dir: Path, yes: bool) -> bool:
    """Before a second run on a GPU a live ftui run uses: say how much it holds, and ask."""
    from engine.runs import gpu_holders, list_runs

    live = [r for r in list_runs(output_dir) if r.status == "running"]
    if not live:
        return True
    from engine.hardware.probe import probe

    holders = gpu_holders(live, probe())
    if not holders:
        return True
    said = "\n  ".join(h.describe() for h in holders)
    print(f"A live ftui run uses the GPU:\n  {said}\nA second run shares its memory; either may run out.",
          file=sys.stderr)
    if yes:
        return True
    if not sys.stdin.isatty():
        print("ftui: not starting a second run on it without --yes (no terminal to ask on)", file=sys.stderr)
        return False
    try:
        answer = input("Start another run anyway? [y/N] ")
    except EOFError:
        answer = ""
    return answer.strip().lower() in ("y", "yes")


class ProgressView:
    """A redrawn progress line on a terminal; one line per step when piped to a file."""

    def __init__(self, out: TextIO, err: TextIO | None = None):
        self.out = out
        self.err = err or sys.stderr
        self.tty = out.isatty()
        self.bar_open = False
        self.last_progress = 0.0

    def line(self, text: str, err: bool = False) -> None:
        if self.bar_open:
            self.out.write("\n")
            self.bar_open = False
        print(text, file=self.err if err else self.out, flush=True)

    def silence(self) -> None:
        """The terminal is gone: write nowhere from now on, the interpreter's last flush included
        (a failed flush at exit would turn the exit status into 120)."""
        null = os.open(os.devnull, os.O_WRONLY)
        for fd in (1, 2):
            os.dup2(null, fd)
        os.close(null)
        self.out = self.err = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115
        self.tty = self.bar_open = False

    def bar(self, text: str) -> None:
        if not self.tty:
            print(text, file=self.out, flush=True)
            return
        width = shutil.get_terminal_size((100, 24)).columns - 1
        self.out.write("\r" + text[:width].ljust(width))
        self.out.flush()
        self.bar_open = True

    def show(self, e: Event) -> None:
        # One case per event type: a new one fails mypy here until the CLI prints it (or says why not).
        match e:
            case Progress():
                now = time.monotonic()
                final = e.total is not None and e.done >= e.total
                # Piped output keeps one line per stage rather than one per tokenized conversation.
                if final or now - self.last_progress > (0.5 if self.tty else 5.0):
                    self.last_progress = now
                    amount = f" {e.done:.0f}/{e.total:.0f} {e.unit}".rstrip() if e.total else ""
                    self.bar(f"{e.stage}:{amount} {e.message}".strip())
            case TrainStarted():
                resumed = f", resuming at step {e.start_step}" if e.start_step else ""
                self.line(f"Training {e.train_examples} examples ({e.val_examples} held out) for {e.total_steps} "
                          f"steps on {e.device}{resumed}\n  {e.trainable_params:,} of {e.total_params:,} parameters "
                          f"trained; padding {e.pad_share:.0%} of batch tokens; run directory {e.run_dir}"
                          + (f"\n  {e.prediction}" if e.prediction else ""))
            case StepLogged():
                done = int(BAR_WIDTH * e.step / max(e.total_steps, 1))
                self.bar(f"step {e.step}/{e.total_steps} [{'#' * done}{'.' * (BAR_WIDTH - done)}] "
                         f"loss {e.loss:.4f}  {_pair_figures(e.metrics)}lr {e.lr:.2e}  {e.tokens_per_s:,.0f} tok/s  "
                         f"ETA {duration(e.eta_s)}  mem {e.peak_mem_gib:.1f} GiB"
                         + (f"  GPU {e.gpu_util}%" if e.gpu_util is not None else "")
                         + (f" {e.gpu_used_gib:.1f} GiB used" if e.gpu_used_gib is not None else ""))
            case RewardLogged():
                each = ", ".join(f"{name} {value:.2f}" for name, value in e.rewards.items())
                self.line(f"  step {e.step}: reward {e.reward:.3f} ({each})  KL {e.kl:.4f}  "
                          f"{e.completion_tokens:.1f} tokens; e.g. {e.sample[:70]!r} -> {e.sample_reward:.2f}")
            case EvalLogged():
                held = f"; held-out {_pair_figures(e.metrics).strip()}" if e.metrics else ""
                self.line(f"  eval at step {e.step}: validation loss {e.val_loss:.4f} (best {e.best_val_loss:.4f}){held}")
            case CheckpointSaved():
                checkpoint = Path(e.path).parent.name == "checkpoints"
                what = f"{e.reason} checkpoint" if checkpoint else f"{e.reason} weights"
                self.line(f"  saved {what} at step {e.step}: {e.path}")
            case Diagnosis():
                self.line(f"  ! {e.kind} at step {e.step}: {e.message}\n    advice: {e.advice}")
            case TrainFinished():
                best = f", best validation loss {e.best_val_loss:.4f}" if e.best_val_loss is not None else ""
                self.line(f"{'Stopped' if e.stopped else 'Finished'}: {e.reason}; final loss {e.final_loss:.4f}{best}\n"
                          f"  weights: {e.adapter_dir}\n  next: ftui export {quote(str(e.run_dir))}")
            case TrainFailed():
                where = f" at step {e.step}" if e.step else ""
                self.line(f"ftui: training failed{where}: {e.reason}\n  what to change: {e.advice}", err=True)
            case ExportStageStarted() | ExportFileWritten() | ExportVerified() | ExportFinished() | ExportFailed():
                pass  # a run reports none; `ftui export` prints its own (cli/commands/export.py)
            case EvalFailed():
                pass  # a run reports none; `ftui eval` prints it
            case _:
                assert_never(e)


def _pair_figures(metrics: dict[str, float]) -> str:
    """A preference run's margin and accuracy (dpo, orpo), followed by two spaces; "" for others."""
    if "margin" not in metrics:
        return ""
    return f"margin {metrics['margin']:.3f}  acc {metrics.get('accuracy', 0):.0%}  "


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()
