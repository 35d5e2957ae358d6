"""`ftui eval RUN`: base vs fine-tuned on held-out prompts and validation loss, saved as eval.json."""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

from cli.output import fail


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("eval", help="compare the base and the fine-tuned model on held-out data")
    p.add_argument("run", help="run directory")
    p.add_argument("--eval-file", help="JSONL of {messages, expected} (default: <dataset>_eval.jsonl beside "
                   "a <dataset>_train.jsonl)")
    p.add_argument("--max-tokens", type=int, default=64, help="answer length limit")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="allow the run's model repository code to run (its config.toml turning it on is not enough)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from engine.eval.evaluate import evaluate

    if not Path(args.run).exists():
        return fail(f"{args.run}: no such run directory")
    report = evaluate(args.run, on_event=_progress, eval_file=args.eval_file, max_tokens=args.max_tokens,
                      trust_remote_code=args.trust_remote_code)
    if report.failure:
        return fail(report.failure.reason + (f"\n  {report.failure.advice}" if report.failure.advice else ""))
    print_report(report)
    return 0


def _progress(event: object) -> None:
    from engine.events import Progress

    if isinstance(event, Progress) and event.stage in ("eval", "export") and event.done in (0, event.total):
        print(f"  {event.message}", file=sys.stderr)


def print_report(report) -> None:
    if report.items:
        width = 34
        print(f"{'prompt':<{width}} | {'base':<{width}} | {'fine-tuned':<{width}}")
        print("-" * (width * 3 + 6))
        for item in report.items:
            cells = [
                textwrap.shorten(item.prompt, width),
                textwrap.shorten(("✓ " if item.base_hit else "✗ ") + item.base_reply, width),
                textwrap.shorten(("✓ " if item.tuned_hit else "✗ ") + item.tuned_reply, width),
            ]
            print(" | ".join(f"{c:<{width}}" for c in cells))
        print(f"\nExpected command in the reply ({len(report.items)} held-out prompts, {report.quant} GGUFs, "
              f"greedy): base {report.base_score:.0%} -> fine-tuned {report.tuned_score:.0%}")
    elif report.eval_file:
        print(f"Held-out prompts: skipped, {report.eval_file} has no usable line")
    else:
        print("Held-out prompts: skipped, no eval file (pass --eval-file with {messages, expected} lines, or put "
              "<name>_eval.jsonl beside a <name>_train.jsonl dataset)")
    for problem in report.skipped:
        print(f"skipped {problem}", file=sys.stderr)
    if report.base_val_loss is not None:
        print(f"Validation loss ({report.val_examples} examples): base {report.base_val_loss:.3f} "
              f"(perplexity {report.base_perplexity:.1f}) -> fine-tuned {report.tuned_val_loss:.3f} "
              f"(perplexity {report.tuned_perplexity:.1f})")
    else:
        print("Validation loss: skipped, the run held out no validation examples (train with val_split above 0)")
    if report.retention is not None:
        print_retention(report.retention)
    print(f"Saved {report.run_dir}/eval.json")


def print_retention(r) -> None:
    """General prompts the run never saw, base vs tuned, and what the figures mean."""
    exact = r.exact
    kept = (f"keeps {exact.tuned_kept} of the {exact.base_right} the base got right ({exact.share:.0%})"
            if exact.share is not None else "the base got none right, so nothing to keep")
    print(f"Retention ({r.prompts} general prompts, never trained on): right answers base {exact.base_right}/"
          f"{exact.scored} -> fine-tuned {exact.tuned_right}/{exact.scored}; the fine-tuned model {kept}")
    print(f"Collapse (answers in the training replies' shape or all one answer): base {r.base_collapse:.0%} -> "
          f"fine-tuned {r.tuned_collapse:.0%}")
    if r.nll_increase is not None:
        print(f"Likelihood of the base model's own answers: {r.nll_increase:+.3f} nats/token under the fine-tuned model")
    for finding in r.findings:
        print(f"! {finding.kind}: {finding.message}\n  advice: {finding.advice}")
    if not r.findings:
        print("No forgetting or collapse found.")
