"""`ftui runs --compare A B ...`: several runs' loss curves laid over one another in the terminal."""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from typing import Any

from cli.output import fail, print_json

MARKERS = ("•", "x", "+", "o", "*", "#")
VAL_MARKERS = ("@", "%", "&", "$", "=", "~")


def compare(args: argparse.Namespace) -> int:
    from engine.runs.curves import find_run, run_curves

    try:
        curves = [run_curves(find_run(name, args.dir)) for name in args.compare]
    except ValueError as exc:
        return fail(str(exc))
    empty = [c.run for c in curves if not c.train]
    if empty:
        return fail(f"no logged steps in {', '.join(empty)} (metrics.jsonl is missing or empty)")
    if args.json:
        print_json([{"run": c.run, "train": c.train, "val": c.val, "metrics": c.metrics} for c in curves])
        return 0
    print(plot(curves, sys.stdout.isatty()))
    margins = any("margin" in c.metrics for c in curves)
    rows = [("RUN", "STEPS", "FINAL LOSS", "BEST VAL (STEP)", *(("MARGIN", "ACCURACY") if margins else ()))]
    for c in curves:
        best = f"{c.best_val[1]:.4f} ({c.best_val[0]})" if c.best_val else "-"
        # A preference run's last margin and accuracy (dpo, orpo): what its loss alone does not say.
        last = [f"{points[-1][1]:.4f}" if name == "margin" else f"{points[-1][1]:.0%}"
                for name in ("margin", "accuracy") for points in [c.metrics.get(name, ())] if points]
        extra = (*last, *["-"] * (2 - len(last))) if margins else ()
        rows.append((c.run, str(c.train[-1][0]), f"{c.train[-1][1]:.4f}", best, *extra))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


def plot(curves: list[Any], color: bool, width: int | None = None, height: int = 20) -> str:
    """Training loss as lines and validation loss as points, one marker (and colour) a run."""
    import plotext as plt

    plt.clf()
    plt.plot_size(width or min(shutil.get_terminal_size((100, 24)).columns, 120), height)
    if not color:
        plt.theme("clear")
    for i, c in enumerate(curves):
        marker = MARKERS[i % len(MARKERS)]
        plt.plot([s for s, _ in c.train], [v for _, v in c.train], label=f"{c.run} train", marker=marker)
        if c.val:
            plt.scatter([s for s, _ in c.val], [v for _, v in c.val], label=f"{c.run} val",
                        marker=VAL_MARKERS[i % len(VAL_MARKERS)])
    plt.title("loss: lines train, points validation")
    plt.xlabel("step")
    plt.ylabel("loss")
    text = str(plt.build())
    return text if color else re.sub(r"\x1b\[[0-9;]*m", "", text)
