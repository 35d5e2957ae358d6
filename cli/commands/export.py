"""`ftui export RUN`: merged HF folder, GGUF files, Modelfiles, and the verification figures."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cli.output import fail


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("export", help="export a run to verified GGUF files and Ollama Modelfiles")
    p.add_argument("run", help="run directory, e.g. runs/2026-01-01-1200-demo")
    p.add_argument("--quant", help="GGUF types, comma-separated (default: the run's export_quants), "
                   "e.g. Q8_0,Q4_K_M; F16 is always written")
    p.add_argument("--out", help="output folder (default: RUN/export)")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="allow the run's model repository code to run (its config.toml turning it on is not enough)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from engine.config.schema import ConfigError
    from engine.export import export
    from engine.export.merge import MergeError, read_run_source

    if not Path(args.run).exists():
        return fail(f"{args.run}: no such run directory")
    if args.quant:
        quants = tuple(q.strip() for q in args.quant.split(",") if q.strip())
    else:
        try:
            # The reader export itself uses, so a missing or half-written run reads the same either way.
            quants = read_run_source(Path(args.run), args.trust_remote_code).config.export_quants
        except MergeError as exc:
            return fail(f"export failed: {exc.reason}" + (f"\n  {exc.advice}" if exc.advice else ""))
        except ConfigError as exc:
            return fail(f"{args.run}: cannot read the run's config.toml:\n{exc}")
    result = export(args.run, quants=quants, out_dir=args.out, on_event=print_progress,
                    trust_remote_code=args.trust_remote_code)
    if not result.files:
        return 2  # print_progress has shown the ExportFailed event
    print_checks(result)
    return 0 if result.passed else 1


def print_progress(event: object) -> None:
    from engine.events import ExportFailed, ExportFileWritten, ExportStageStarted, Progress

    if isinstance(event, ExportStageStarted) and event.stage != "done":
        print(f"  {event.stage}: {event.detail}", file=sys.stderr)
    elif isinstance(event, Progress) and event.stage == "merge":
        print(f"  {event.message}", file=sys.stderr)
    elif isinstance(event, Progress) and event.stage == "run":
        print(f"  note: {event.message}", file=sys.stderr)
    elif isinstance(event, ExportFileWritten) and event.kind != "modelfile":
        print(f"  wrote {event.path} ({event.size_bytes / 2**20:.1f} MiB)", file=sys.stderr)
    elif isinstance(event, ExportFailed) and not event.reason.startswith("verification failed"):
        # A verification failure is shown by print_checks, file by file.
        fail(f"export failed: {event.reason}" + (f"\n  {event.advice}" if event.advice else ""))


def print_checks(result) -> None:
    print(f"{'file':<22} {'tokens':<7} {'agree':>7} {'max|dlogit|':>12} {'stops':>6}  result")
    for c in result.checks:
        diff = f"{c.max_abs_logit_diff:.4f}" if c.max_abs_logit_diff is not None else "-"
        stops = {True: "yes", False: "no", None: "-"}[c.stops_at_end_of_turn]
        print(f"{Path(c.path).name:<22} {'same' if c.token_ids_match else 'DIFF':<7} {c.argmax_agreement:>7.1%} "
              f"{diff:>12} {stops:>6}  {'ok' if c.passed else 'FAILED: ' + '; '.join(c.problems)}")
    if result.passed:
        print(f"\nExport folder: {result.out_dir}  (Ollama: cd there and `ollama create NAME -f Modelfile`)")
    else:
        print(f"\nVerification failed: the files in {result.out_dir} are kept for inspection; do not ship them "
              "(see verify.json)")
