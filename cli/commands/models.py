"""`ftui models`: the catalog with what is usable offline; `ftui models fetch` downloads or converts one."""

from __future__ import annotations

import argparse
import sys

from cli.output import fail, print_json


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("models", help="list the model catalog and what is available offline")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run_list)
    sub = p.add_subparsers(dest="models_command", metavar="ACTION")
    fetch = sub.add_parser("fetch", help="download (hub) or convert (embedded) a model now, with progress")
    fetch.add_argument("model", help="catalog id, hub id or model folder")
    fetch.add_argument("--trust-remote-code", action="store_true", help="allow the repository's own Python code")
    fetch.set_defaults(func=run_fetch)


def availability(spec) -> str:
    """'ready' when loading needs no network or conversion, else what the first use will do."""
    if spec.source == "embedded":
        from engine.models.embedded import is_converted

        return "ready" if is_converted() else "converts on first use (~20 s)"
    from huggingface_hub import try_to_load_from_cache

    for repo in (spec.hub_id, spec.ungated):
        if repo and isinstance(try_to_load_from_cache(repo, "config.json"), str):
            return "ready" if repo == spec.hub_id else f"ready ({repo})"
    return "download"


def run_list(args: argparse.Namespace) -> int:
    from engine.hardware.catalog import load_catalog

    rows = [
        {
            "id": s.id,
            "hub_id": s.hub_id,
            "size": s.size_class,
            "bits": s.bits,
            "gated": s.gated,
            "available": availability(s),
        }
        for s in load_catalog()
    ]
    if args.json:
        print_json(rows)
        return 0
    widths = {k: max(len(k), *(len(str(r[k])) for r in rows)) for k in ("id", "size", "bits", "available")}
    print("  ".join(k.upper().ljust(w) for k, w in widths.items()) + "  HUB")
    for r in rows:
        gate = "  (gated: accept the licence, set HF_TOKEN)" if r["gated"] else ""
        print("  ".join(str(r[k]).ljust(w) for k, w in widths.items()) + f"  {r['hub_id']}{gate}")
    return 0


def run_fetch(args: argparse.Namespace) -> int:
    from engine.models import ModelLoadError, resolve_model

    shown: list[bool] = []

    def show(event) -> None:
        shown.append(_print_progress(event))

    try:
        resolved = resolve_model(args.model, on_event=show, trust_remote_code=args.trust_remote_code)
    except ModelLoadError as exc:
        return fail(f"{exc.reason}\n  {exc.advice}" if exc.advice else exc.reason)
    finally:
        if any(shown):
            print(file=sys.stderr)
    print(resolved.ref)
    return 0


def _print_progress(event) -> bool:
    """One self-overwriting line on stderr, so stdout carries only the resolved folder."""
    from engine.events import Progress

    if not isinstance(event, Progress):
        return False
    if event.unit == "B" and event.total:
        amount = f"{event.done / 2**20:.0f}/{event.total / 2**20:.0f} MiB ({event.done / event.total:.0%})"
    elif event.total:
        amount = f"{event.done:g}/{event.total:g}"
    else:
        amount = f"{event.done:g}"
    print(f"\r{event.stage}: {amount} {event.message}"[:120].ljust(120), end="", file=sys.stderr, flush=True)
    return True
