"""`ftui hardware`: what the GPU probe sees, and the torch and llama.cpp builds, as a table or JSON."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence

from cli.output import print_json


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("hardware", help="GPUs (name, VRAM, compute capability, processes), CPU and RAM, "
                              "and the torch and llama.cpp builds")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from engine.hardware.builds import llama_build, torch_build
    from engine.hardware.doctor import check_llama_build, check_torch
    from engine.hardware.probe import probe

    report = probe()
    llama, torch = llama_build(), torch_build()
    # A GPU box with a CPU-only build (or a torch its driver cannot run): the doctor's words and fix.
    problems = [c for c in (check_torch(report, torch), check_llama_build(report, llama)) if c.status != "ok"]
    if args.json:
        print_json({**dataclasses.asdict(report),
                    "builds": {"llama_cpp": {**dataclasses.asdict(llama), "cpu_features": list(llama.cpu_features)},
                               "torch": dataclasses.asdict(torch)},
                    "warnings": [dataclasses.asdict(c) for c in problems]})
        return 0
    print(f"CPU: {report.cpu_cores} cores, {report.ram_gib:.1f} GiB RAM")
    if report.driver:
        cuda = " (CUDA {}.{})".format(*report.cuda_driver) if report.cuda_driver else ""
        print(f"NVIDIA driver: {report.driver}{cuda}")
    if report.gpus:
        rows = [("GPU", "name", "total", "free", "used", "cc", "bf16")]
        rows += [(str(g.index), g.name, f"{g.total_gib:.1f}", f"{g.free_gib:.1f}", f"{g.used_gib:.1f}",
                  "{}.{}".format(*g.compute_capability) if g.compute_capability != (0, 0) else "?",
                  "yes" if g.bf16 else "no") for g in report.gpus]
        print_table(rows, right={2, 3, 4})
        for g in report.gpus:
            for p in g.processes:
                used = f"{p.used_gib:.1f} GiB" if p.used_gib is not None else "? GiB"
                print(f"  GPU {g.index}: pid {p.pid} uses {used}  {p.name or '(name hidden)'}")
            if g.unified_memory:
                print(f"  GPU {g.index}: unified memory, shared with the CPU: total is the system's memory, "
                      "free what programs can still take (MemAvailable)")
            for problem in g.problems:
                print(f"  GPU {g.index}: could not read {problem}")
    print(report.note)
    print(f"llama.cpp build: {llama.describe()}")
    print(f"torch build: {torch.describe()}")
    for check in problems:
        print(f"{'error' if check.status == 'error' else 'warning'}: {check.detail}\n  fix: {check.fix}")
    return 0


def print_table(rows: Sequence[tuple[str, ...]], right: frozenset[int] | set[int] = frozenset()) -> None:
    """Columns padded to their widest cell; numeric columns (by index) right-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        print("  ".join(cells).rstrip())
