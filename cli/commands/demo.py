"""`ftui demo`: the whole loop on the embedded model with no questions asked.

Train the demo preset, export and verify the GGUF, compare base and fine-tuned answers, and
print where everything is: the shortest proof that ftui works on this machine.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from shlex import quote

from cli.output import fail


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("demo", help="train, export, verify and evaluate the demo preset on the embedded model")
    p.add_argument("--output-dir", default="runs", help="where the run directory is created")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cli.commands.eval import print_report
    from cli.commands.export import print_checks, print_progress
    from engine.config.presets import load_preset
    from engine.eval.evaluate import evaluate
    from engine.events import StepLogged, TrainFailed
    from engine.export import export
    from engine.train import train

    config = load_preset("demo").apply().replace(output_dir=args.output_dir)
    started = time.monotonic()

    def on_train_event(event: object) -> None:
        if isinstance(event, StepLogged):
            print(f"  step {event.step}/{event.total_steps}  loss {event.loss:.3f}  "
                  f"{event.tokens_per_s:.0f} tok/s", file=sys.stderr)
        elif isinstance(event, TrainFailed):
            print(f"  training failed: {event.reason}", file=sys.stderr)

    print(f"1/3 training {config.model} ({config.method}, {config.epochs:g} epochs) on {config.dataset}",
          file=sys.stderr)
    result = train(config, on_train_event, threading.Event())
    if not result.ok or not result.run_dir:
        return fail(f"training failed: {result.reason}" + (f"\n  {result.advice}" if result.advice else ""))
    trained = time.monotonic()
    print(f"2/3 exporting {', '.join(config.export_quants)} and verifying", file=sys.stderr)
    exported = export(result.run_dir, quants=config.export_quants, on_event=print_progress)
    if not exported.files:
        return 1  # print_progress has shown the ExportFailed event
    done_export = time.monotonic()
    print("3/3 evaluating base vs fine-tuned on held-out prompts", file=sys.stderr)
    report = evaluate(result.run_dir)
    if report.failure:
        return fail(f"evaluation failed: {report.failure.reason}"
                    + (f"\n  {report.failure.advice}" if report.failure.advice else ""))
    finished = time.monotonic()
    print()
    print_checks(exported)
    print()
    print_report(report)
    print(f"\nRun: {result.run_dir}\nTime: training {trained - started:.0f} s, export + verify "
          f"{done_export - trained:.0f} s, evaluation {finished - done_export:.0f} s, total {finished - started:.0f} s")
    print(f"Chat with it: ftui chat {quote(str(result.run_dir))}")
    return 0 if exported.passed else 1
