"""`ftui sweep --preset P --set learning_rate=1e-5,5e-5,2e-4`: the variants one after another,
their validation curves overlaid, and the one to keep."""

from __future__ import annotations

import argparse
import sys
import threading

from cli.output import fail


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("sweep", help="train a preset at several values of a setting and pick the best")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--preset", help="start from this preset (see `ftui presets`)")
    source.add_argument("--config", metavar="FILE", help="start from this TOML config file")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=V1,V2",
                   help="a setting and its values, comma-separated (repeatable: the grid of all combinations); "
                        "one value fixes a setting for every variant")
    p.add_argument("--retention", action="store_true",
                   help="export and evaluate each variant, and prefer those that keep general answers (slower)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from engine.config.build import build_config
    from engine.config.schema import ConfigError
    from engine.sweep import expand, new_sweep_folder, parse_grid, run_sweep

    try:
        fixed, swept = parse_grid(args.sets)
        config = build_config(preset=args.preset, config_file=args.config, sets=fixed)
        variants = expand(config, swept)
    except ConfigError as exc:
        return fail(str(exc))
    folder = new_sweep_folder(config.output_dir, config.name)
    print(f"Sweep of {len(variants)} variants in {folder}: " + "; ".join(v.label for v in variants))
    stop = threading.Event()
    try:
        result = run_sweep(variants, folder, _progress, stop, measure_retention=args.retention)
    except KeyboardInterrupt:
        stop.set()
        return fail("sweep interrupted; finished variants are in " + str(folder), 130)
    print_sweep(result)
    return 0 if result.best else 1


def _progress(event: object) -> None:
    from engine.events import EvalLogged, Progress, TrainFailed

    if isinstance(event, Progress) and event.stage == "sweep":
        print(f"[{event.done:.0f}/{event.total:.0f}] {event.message}", file=sys.stderr)
    elif isinstance(event, EvalLogged):
        print(f"  step {event.step}: validation loss {event.val_loss:.4f}", file=sys.stderr)
    elif isinstance(event, TrainFailed):
        print(f"  failed: {event.reason}", file=sys.stderr)


def print_sweep(result) -> None:
    import plotext as plt

    from engine.events import EvalLogged
    from engine.runs import read_events

    plt.clear_figure()
    plt.plotsize(78, 18)
    plt.title("validation loss by step")
    for v in result.variants:
        points = [e for e in read_events(v.run_dir) if isinstance(e, EvalLogged)] if v.run_dir else []
        if points:
            plt.plot([p.step for p in points], [p.val_loss for p in points], label=v.label)
    plt.xlabel("step")
    print(plt.build())
    print(f"{'variant':<28} {'status':<9} {'best val':>9} {'kept':>6}  run")
    for v in result.variants:
        best = f"{v.best_val_loss:.4f}" if v.best_val_loss is not None else "-"
        kept = f"{v.retention:.0%}" if v.retention is not None else "-"
        mark = "*" if v.label == result.best else " "
        print(f"{mark}{v.label:<27} {v.status:<9} {best:>9} {kept:>6}  {v.run_dir or '-'}")
        for finding in v.findings:
            print(f"    ! {finding}")
    print(f"\nBest: {result.reason}" if result.best else f"\nNo best: {result.reason}")
