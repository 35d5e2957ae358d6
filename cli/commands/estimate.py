"""`ftui estimate`: predicted peak GPU memory of a run, part by part, for any catalog model, on one
GPU or per GPU across several (DDP or FSDP)."""

from __future__ import annotations

import argparse

from cli.output import fail, print_json
from engine.config.schema import DEFAULT_TARGET_MODULES, RunConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("estimate", help="peak GPU memory of a training setup, with a breakdown")
    p.add_argument("--model", required=True, metavar="ID", help="catalog id or hub id (see `ftui recommend`)")
    p.add_argument("--method", required=True, choices=["lora", "qlora", "dora", "full"])
    p.add_argument("--batch", type=int, required=True, metavar="N", help="examples per forward pass")
    p.add_argument("--seq-len", type=int, required=True, metavar="N", help="tokens per example")
    p.add_argument("--grad-checkpointing", action="store_true", help="recompute activations in backward")
    p.add_argument("--optimizer", choices=["adamw", "adamw_8bit", "paged_adamw_8bit"], default="adamw")
    p.add_argument("--lora-r", type=int, default=16, metavar="R", help="LoRA rank (default 16)")
    p.add_argument("--target-modules", default=",".join(DEFAULT_TARGET_MODULES), metavar="A,B",
                   help="comma-separated layers that get adapters (default: all projections)")
    p.add_argument("--lora-dropout", type=float, default=RunConfig.lora_dropout, metavar="P",
                   help=f"LoRA dropout; its masks cost memory without checkpointing (default {RunConfig.lora_dropout})")
    p.add_argument("--gpus", type=int, default=1, metavar="N",
                   help="training processes, one per GPU: the figure is then per GPU (default 1)")
    p.add_argument("--strategy", choices=["ddp", "fsdp"], default="ddp",
                   help="with --gpus above 1: ddp copies the model to every GPU, fsdp shards it (default ddp)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from engine.config.schema import ConfigError, RunConfig
    from engine.hardware.catalog import UnknownModel, get
    from engine.hardware.estimate import estimate_for

    if args.gpus < 1:
        return fail(f"--gpus must be at least 1, not {args.gpus}")
    try:
        spec = get(args.model)
        config = RunConfig(model=spec.id).replace(
            method=args.method, batch_size=args.batch, max_seq_len=args.seq_len,
            gradient_checkpointing=args.grad_checkpointing, optimizer=args.optimizer, lora_r=args.lora_r,
            lora_dropout=args.lora_dropout, gpus=",".join(map(str, range(args.gpus))) if args.gpus > 1 else "",
            strategy=args.strategy,
            target_modules=[t.strip() for t in args.target_modules.split(",") if t.strip()])
        est = estimate_for(config, spec)
    except (UnknownModel, ConfigError, ValueError) as exc:
        return fail(str(exc))
    assert est is not None
    if args.json:
        print_json({"model": spec.id, "method": args.method, "batch_size": args.batch, "seq_len": args.seq_len,
                    "gpus": args.gpus, "strategy": args.strategy if args.gpus > 1 else "",
                    "peak_gib": round(est.peak_gib, 3),
                    "breakdown": {k: round(v, 3) for k, v in est.breakdown.items()}})
        return 0
    from cli.commands.hardware import print_table

    several = (f", {args.gpus} GPUs ({args.strategy.upper()}), batch {args.batch} per GPU, "
               f"{args.batch * args.gpus} in all" if args.gpus > 1 else "")
    print(f"{spec.name}, {args.method}, batch {args.batch} x {args.seq_len} tokens"
          + (", gradient checkpointing" if args.grad_checkpointing else "") + several)
    rows = [(name, f"{gib:.2f} GiB") for name, gib in est.breakdown.items()]
    rows.append(("peak per GPU" if args.gpus > 1 else "peak", f"{est.peak_gib:.2f} GiB"))
    print_table(rows, right={1})
    return 0
