"""`ftui push RUN --repo user/name [--adapter | --merged | --gguf Q4_K_M]`: upload to the Hugging Face hub."""

from __future__ import annotations

import argparse
import sys

from cli.output import fail, print_json


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "push", help="upload a run's adapter, merged model or a GGUF to the Hugging Face hub",
        description="Upload one artefact of a run to a model repository, with a model card (base, data, settings, "
                    "eval and retention figures). The token is HF_TOKEN or the one `hf auth login` saved.")
    p.add_argument("run", metavar="RUN", help="the run directory")
    p.add_argument("--repo", required=True, help="user/name (or name, in your namespace)")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--adapter", dest="what", action="store_const", const="adapter",
                      help="the adapter (model/ for full fine-tuning), with its tokenizer (the default)")
    what.add_argument("--merged", dest="what", action="store_const", const="merged",
                      help="the merged 16-bit model from `ftui export`")
    what.add_argument("--gguf", metavar="QUANT", help="one exported GGUF with its Ollama Modelfile, e.g. Q4_K_M")
    p.add_argument("--private", action="store_true", help="create the repository private")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run, what=None)


def run(args: argparse.Namespace) -> int:
    from engine.export.push import What, push

    what: What = "gguf" if args.gguf else args.what or "adapter"

    def show(event: object) -> None:
        if not args.json:
            print(f"  {getattr(event, 'message', '')}", file=sys.stderr)

    result = push(args.run, args.repo, what, args.gguf, private=args.private, on_event=show)
    if args.json:
        print_json(result)
        return 0 if result.ok else 1
    if not result.ok:
        return fail(f"push failed: {result.reason}\n  what to do: {result.advice}", 1)
    print(f"Pushed {len(result.files)} files to {result.url}")
    return 0
