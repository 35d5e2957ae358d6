"""`ftui recommend`: the model, method and batch size to start with, for this GPU or a given size."""

from __future__ import annotations

import argparse
import dataclasses

from cli.output import fail, print_json


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("recommend", help="the model, method and batch size that fit your GPU")
    p.add_argument("--vram", type=float, metavar="GiB", help="plan for a card with this much free memory instead")
    p.add_argument("--gpus", type=int, metavar="N",
                   help="plan across N GPUs: the N freest found, or N cards of --vram GiB (DDP or FSDP)")
    p.add_argument("--family", default="llama", choices=("llama", "qwen3", "gemma3", "mistral", "phi4"),
                   help="plan within this model family (default llama); the others' best fits are listed below")
    p.add_argument("--seq-len", type=int, default=2048, metavar="N", help="tokens per example (default 2048)")
    p.add_argument("--max-context", action="store_true",
                   help="instead: the longest sequence each model and method fits (batch 1, checkpointing)")
    p.add_argument("--dir", default="runs",
                   help="the output folder whose newest finished run's measured peak checks the estimates (default: runs)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from engine.hardware.probe import probe
    from engine.hardware.recommend import recommend

    report = None if args.vram is not None else probe()
    if args.max_context:
        return _max_context(args, report)
    from engine.runs.memory import measured_memory

    measured = measured_memory(args.dir, "cuda" if report is not None and report.gpus else "cpu")
    try:
        rec = recommend(report or [], seq_len=args.seq_len, vram_gib=args.vram, gpus=args.gpus, family=args.family,
                        measured=measured)
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
    if rec.strategy:
        rows[3:3] = [("GPUs", f"{rec.gpus} ({rec.strategy.upper()}, batch size per GPU)")]
        rows[-2:] = [("predicted peak", f"{rec.peak_gib:.1f} GiB per GPU"), ("available", f"{rec.free_gib:.1f} GiB each")]
    print_table(rows)
    print(rec.reason)
    if rec.grad_checkpointing and not rec.strategy:  # a GPU plan: the other families on the same card
        _other_families(rec, args)
    return 0


def _other_families(rec: object, args: argparse.Namespace) -> None:
    from engine.hardware.recommend import best_per_family

    print("\nBest fit per family on this card (--family NAME plans within one):")
    for plan in best_per_family(rec.free_gib, args.seq_len):  # type: ignore[attr-defined]
        fit = (f"{plan.method}, batch {plan.batch_size}, {plan.peak_gib:.1f} GiB" if plan.fits
               else f"nothing fits ({plan.model} {plan.method} needs {plan.peak_gib:.1f} GiB)")
        print(f"  {_family_of(plan.model):8} {plan.model if plan.fits else '-':22} {fit}")


def _family_of(model: str) -> str:
    from engine.hardware.catalog import get

    return get(model).family


def _max_context(args: argparse.Namespace, report: object) -> int:
    from engine.hardware.recommend import max_context

    if args.vram is not None:
        if args.vram <= 0:
            return fail(f"--vram must be positive, not {args.vram:g}")
        free, card = args.vram, f"a {args.vram:g} GiB card"
    else:
        gpus = getattr(report, "gpus", ())
        if not gpus:
            return fail("no NVIDIA GPU found; pass --vram GiB to plan for a card")
        gpu = max(gpus, key=lambda g: (g.free_gib, -g.index))
        free, card = gpu.free_gib, f"{gpu.name} ({gpu.free_gib:.1f} GiB free)"
    fits = max_context(free)
    if args.json:
        print_json({"free_gib": free, "models": [dataclasses.asdict(f) for f in fits]})
        return 0
    from cli.commands.hardware import print_table

    rows = [("model", "method", "longest sequence", "predicted peak")]
    for f in fits:
        longest = f"{f.seq_len:,}" + (" (model limit)" if f.model_limit else "") if f.seq_len else "does not fit"
        rows.append((f.model, f.method, longest, f"{f.peak_gib:.1f} GiB"))
    print_table(rows, right={2, 3})
    print(f"Longest sequence per model on {card}, at batch 1 with gradient checkpointing and the chunked loss.")
    return 0
