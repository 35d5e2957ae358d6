"""The demo preset at several retention_mix shares: Docker held-out score, general retention,
collapse and the likelihood drift, base vs tuned, on prompts no run trained on.

    python bench/retention_curve.py --mix 0,0.1,0.25,0.4 [--set learning_rate=5e-4]

Each share trains, exports and evaluates the demo exactly as `ftui demo` does (the base model's
answers are cached, so only the first share pays for them). Prints one row per share.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time

from engine.config.presets import load_preset
from engine.config.schema import parse_set
from engine.eval.evaluate import evaluate
from engine.export import export
from engine.train import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mix", default="0,0.25", help="comma-separated retention_mix values")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="other demo overrides, k=v")
    args = parser.parse_args()
    overrides = parse_set(args.sets)
    rows = []
    for mix in (float(m) for m in args.mix.split(",")):
        config = load_preset("demo").apply().replace(retention_mix=mix, output_dir=tempfile.mkdtemp(), **overrides)
        started = time.monotonic()
        result = train(config, lambda e: None, threading.Event())
        if not result.ok or not result.run_dir:
            raise SystemExit(f"training failed at retention_mix {mix}: {result.reason}")
        trained = time.monotonic()
        export(result.run_dir, quants=config.export_quants)
        report = evaluate(result.run_dir)
        if report.failure:
            raise SystemExit(f"evaluation failed at retention_mix {mix}: {report.failure.reason}")
        done = time.monotonic()
        r = report.retention
        assert r is not None
        rows.append((mix, report.base_score, report.tuned_score, r.exact.base_right, r.exact.tuned_kept,
                     r.exact.share, r.base_collapse, r.tuned_collapse, r.nll_increase, report.tuned_val_loss,
                     trained - started, done - trained))
        print(_row(rows[-1]), flush=True)
    print("\nretention_mix | Docker held-out base -> tuned | general kept | collapse base -> tuned | "
          "NLL +nats/token | val loss | train s | export+eval s")
    for row in rows:
        print(_row(row))


def _row(r: tuple) -> str:
    mix, base, tuned, base_right, kept, share, bc, tc, nll, val, train_s, eval_s = r
    share_text = f"{kept}/{base_right} ({share:.0%})" if share is not None else "-"
    nll_text = f"{nll:+.3f}" if nll is not None else "-"
    return (f"{mix:>5g} | {base:.0%} -> {tuned:.0%} | {share_text} | {bc:.0%} -> {tc:.0%} | {nll_text} | "
            f"{val:.3f} | {train_s:.0f} | {eval_s:.0f}")


if __name__ == "__main__":
    main()
