"""`ftui chat PATH.gguf | RUN`: a terminal chat with an exported model (/reset, /system TEXT, /quit)."""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path
from shlex import quote

from cli.output import fail

HELP = "Commands: /reset clears the conversation, /system TEXT sets the system prompt, /quit leaves."


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("chat", help="chat with an exported GGUF or a run's export")
    p.add_argument("target", help="a .gguf file, or a run directory with an export/")
    p.add_argument("--system", default=None, help="system prompt (default: the run's)")
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--top-p", type=float, default=0.9)
    p.add_argument("--max-tokens", type=int, default=256)
    p.set_defaults(func=run)


def find_gguf(target: str) -> tuple[Path, str]:
    """The GGUF to chat with and the run's system prompt; raises FileNotFoundError with a hint."""
    from engine.runs import chat_gguf, config_path, read_config

    path = Path(target)
    if path.suffix == ".gguf":
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file")
        return path, ""
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such run directory or .gguf file" if not path.exists()
                                else f"{path} is neither a .gguf file nor a run directory")
    gguf = chat_gguf(path)
    is_run = config_path(path).is_file()
    if gguf is None:
        if not is_run:
            raise FileNotFoundError(f"{path} is not a run directory (no config.toml) and holds no export/")
        raise FileNotFoundError(f"{path} has no export; run `ftui export {quote(str(path))}` first")
    return gguf, read_config(path).system_prompt if is_run else ""


def run(args: argparse.Namespace) -> int:
    from engine.infer.chat import ChatSession

    try:
        gguf, system = find_gguf(args.target)
        chat = ChatSession(gguf, system_prompt=args.system if args.system is not None else system,
                           temperature=args.temperature, top_p=args.top_p, max_tokens=args.max_tokens)
    except (FileNotFoundError, ValueError) as exc:
        return fail(str(exc))
    print(f"Chatting with {gguf} ({'GPU' if chat.gpu else 'CPU'}). {HELP}")
    for note in chat.notes:
        print(f"note: {note}")
    if isinstance(sys.stdin, io.TextIOWrapper):
        # A byte that is not UTF-8 (a latin-1 terminal's é) arrives as a surrogate, not an exception.
        sys.stdin.reconfigure(errors="surrogateescape")
    try:
        while True:
            try:
                line = input("you> ").strip()
            except EOFError:
                print()  # Ctrl-D: leave the shell prompt on a line of its own
                break
            if not line:
                continue
            undecoded = sorted({ord(c) - 0xDC00 for c in line if "\udc80" <= c <= "\udcff"})
            if undecoded:
                shown = ", ".join(f"0x{b:02X}" for b in undecoded)
                which = f"byte {shown} is" if len(undecoded) == 1 else f"bytes {shown} are"
                print(f"(skipped that line: {which} not UTF-8; set your terminal to UTF-8, "
                      "e.g. LANG=C.UTF-8, and type it again)")
                continue
            if line == "/quit":
                break
            if line == "/reset":
                chat.reset()
                print("(conversation cleared)")
                continue
            if line.startswith("/system"):
                chat.reset(system_prompt=line.removeprefix("/system").strip())
                print("(system prompt set; conversation cleared)")
                continue
            if line.startswith("/"):
                print(HELP)
                continue
            sys.stdout.write("model> ")
            for piece in chat.send(line):
                sys.stdout.write(piece)
                sys.stdout.flush()
            sys.stdout.write("\n")
            if chat.cut_short:
                print(f"(cut at the {chat.max_tokens}-token limit: the model had not finished; --max-tokens raises it)")
    finally:
        chat.close()
    return 0
