"""`ftui recommend`: the model, method and batch size to start with, for this GPU or a given size."""

from __future__ import annotations

import argparse

from cli.output import fail, print_json


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("recommend", help="the model, method and batch size that fit your GPU")
    p.add_argument("--vram", type=float, metavar="GiB", help="plan for a card with this much free memory instead")
    p.add_argument("--seq-len", type=int, default=2048, metavar="N", help="tokens per example (default 2048)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from engine.hardware import probe
    from engine.recommend import recommend

    report = None if args.vram is not None else probe()
    try:
        rec = recommend(report or [], seq_len=args.seq_len, vram_gib=args.vram)
    except ValueError as exc:
        return fail(str(exc))
    if args.json:
        print_json(rec)
        return 0
    from cli.commands.hardware import print_table

    rows = [("model", rec.model), ("method", rec.method), ("batch size", str(rec.batch_size)),
            ("grad accumulation", str(rec.grad_accum)), ("sequence length", str(rec.seq_len)),
            ("gradient checkpointing", "on" if rec.grad_checkpointing else "off"),
            ("predicted peak", f"{rec.peak_gib:.1f} GiB"), ("available", f"{rec.free_gib:.1f} GiB")]
    print_table(rows)
    print(rec.reason)
    return 0
