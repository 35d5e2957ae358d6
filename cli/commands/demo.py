"""`ftui demo`: the whole loop on the embedded model with no questions asked.

Train the demo preset, export and verify the GGUF, compare base and fine-tuned answers, and
print where everything is: the shortest proof that ftui works on this machine. With --rl, GRPO
(the grpo preset) goes on from the SFT model and base, SFT and SFT+RL are compared.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from shlex import quote
from typing import TYPE_CHECKING

from cli.output import fail

if TYPE_CHECKING:
    from engine.eval.evaluate import EvalReport


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("demo", help="train, export, verify and evaluate the demo preset on the embedded model")
    p.add_argument("--output-dir", default="runs", help="where the run directory is created")
    p.add_argument("--rl", action="store_true",
                   help="then GRPO on the SFT model (the grpo preset) and compare base, SFT and SFT+RL")
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
    if not exported.passed:
        return 1
    return _reinforce(args, exported.merged_dir, report) if args.rl else 0


def _reinforce(args: argparse.Namespace, sft_model: str, sft_report: EvalReport) -> int:
    """GRPO from the SFT demo's merged model, then base vs SFT vs SFT+RL on held-out and general prompts."""
    from cli.commands.eval import print_report
    from cli.commands.export import print_progress
    from engine.config.presets import load_preset
    from engine.eval.evaluate import evaluate
    from engine.eval.rl_gain import rl_gain
    from engine.events import RewardLogged, TrainFailed
    from engine.export import export
    from engine.files.paths import PROJECT_ROOT
    from engine.train import train

    config = load_preset("grpo").apply().replace(model=sft_model, output_dir=args.output_dir)
    started = time.monotonic()

    def on_event(event: object) -> None:
        if isinstance(event, RewardLogged):
            shown = "  ".join(f"{name} {value:.2f}" for name, value in event.rewards.items())
            print(f"  step {event.step}/{config.max_steps}  reward {event.reward:.2f} ({shown})  KL {event.kl:.4f}  "
                  f"{event.completion_tokens:.0f} tokens  e.g. {event.sample[:60]!r}", file=sys.stderr)
        elif isinstance(event, TrainFailed):
            print(f"  training failed: {event.reason}", file=sys.stderr)

    print(f"\n4/5 GRPO on {config.dataset} from the SFT model ({config.max_steps} steps, "
          f"{config.grpo_group_size} answers per prompt, rewards {', '.join(config.rewards)})", file=sys.stderr)
    result = train(config, on_event, threading.Event())
    if not result.ok or not result.run_dir:
        return fail(f"GRPO failed: {result.reason}" + (f"\n  {result.advice}" if result.advice else ""))
    trained = time.monotonic()
    print("5/5 exporting and evaluating SFT vs SFT+RL on the same held-out prompts", file=sys.stderr)
    exported = export(result.run_dir, quants=config.export_quants, on_event=print_progress)
    if not exported.files:
        return 1
    report = evaluate(result.run_dir, eval_file=PROJECT_ROOT / "presets" / "data" / "docker_eval.jsonl")
    if report.failure:
        return fail(f"evaluation failed: {report.failure.reason}")
    finished = time.monotonic()
    print("\nSFT (as base) vs SFT+RL:")
    print_report(report)
    gain = rl_gain(sft_report, report)
    if gain is not None:
        print(f"\nExpected command in the reply ({gain.prompts} held-out prompts): base {gain.base_score:.0%} -> "
              f"SFT {gain.sft_score:.0%} -> SFT+RL {gain.rl_score:.0%}")
        for label, kept in (("SFT", gain.sft_retention), ("SFT+RL", gain.rl_retention)):
            share = f"{kept.share:.0%}" if kept.share is not None else "-"
            print(f"Retention against the base: {label} keeps {kept.tuned_kept} of the {kept.base_right} general "
                  f"answers the base got right ({share})")
    print(f"\nRun: {result.run_dir}\nTime: GRPO {trained - started:.0f} s, export + evaluation "
          f"{finished - trained:.0f} s")
    return 0 if exported.passed else 1
