"""`ftui chat PATH.gguf | RUN`: a terminal chat with an exported model (/reset, /system TEXT, /quit);
`--compare` has the untuned base answer each message too, from its GGUF at the run's file's type."""

from __future__ import annotations

import argparse
import functools
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
    p.add_argument("--compare", action="store_true",
                   help="a run's base model answers each message too, at the same quantisation as the "
                        "fine-tuned file (exported once and cached)")
    p.add_argument("--show-thinking", action="store_true",
                   help="print a thinking model's reasoning (Qwen3's <think> block) before its answer; "
                        "by default only the answer is printed")
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
    from engine.errors import ActionableError
    from engine.infer.chat import ChatSession

    try:
        gguf, system = find_gguf(args.target)
        open_chat = functools.partial(ChatSession, system_prompt=args.system if args.system is not None else system,
                                      temperature=args.temperature, top_p=args.top_p, max_tokens=args.max_tokens)
        chats = {"model": open_chat(gguf)}
    except (FileNotFoundError, ValueError) as exc:
        return fail(str(exc))
    print(f"Chatting with {gguf} ({'GPU' if chats['model'].gpu else 'CPU'}). {HELP}")
    if args.compare:
        try:
            chats["base"] = open_chat(compare_base(args.target, gguf))
        except (ActionableError, ValueError) as exc:
            chats["model"].close()
            return fail(str(exc))
    for chat in chats.values():
        for note in chat.notes:
            print(f"note: {note}")
    try:
        _converse(chats, args.show_thinking)
    finally:
        for chat in chats.values():
            chat.close()
    return 0


def compare_base(target: str, gguf: Path) -> Path:
    """The base model's GGUF at `gguf`'s type, made (once, cached) from the run's base."""
    from engine.errors import ActionableError
    from engine.infer.base_answers import base_gguf_like, base_ref_of
    from engine.runs import config_path

    if not config_path(Path(target)).is_file():
        raise ActionableError(f"--compare needs a run directory to know the base model; {target} is not one",
                              "pass the run's folder (runs/<date>-<name>) instead of its GGUF")
    base, quant = base_gguf_like(gguf, base_ref_of(target, ""), _progress)
    print(f"Base model: {base} ({quant}, as the fine-tuned file)")
    return base


def _progress(event: object) -> None:
    from engine.events import Progress

    if isinstance(event, Progress) and event.done in (0, event.total):
        print(f"  {event.message}", file=sys.stderr)


def _converse(chats: dict, show_thinking: bool) -> None:
    """Read lines until /quit or end of input; each model answers in turn."""
    from engine.infer.thinking import AnswerStream

    if isinstance(sys.stdin, io.TextIOWrapper):
        # A byte that is not UTF-8 (a latin-1 terminal's é) arrives as a surrogate, not an exception.
        sys.stdin.reconfigure(errors="surrogateescape")
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
            for chat in chats.values():
                chat.reset()
            print("(conversation cleared)")
            continue
        if line.startswith("/system"):
            for chat in chats.values():
                chat.reset(system_prompt=line.removeprefix("/system").strip())
            print("(system prompt set; conversation cleared)")
            continue
        if line.startswith("/"):
            print(HELP)
            continue
        for role, chat in chats.items():
            sys.stdout.write(f"{role}> ")
            answer = None if show_thinking else AnswerStream()
            for piece in chat.send(line):
                if answer is not None:
                    said_thinking = answer.thought
                    piece = answer.feed(piece)
                    if answer.thought and not said_thinking:
                        piece = "(thinking; --show-thinking prints it) " + piece
                sys.stdout.write(piece)
                sys.stdout.flush()
            sys.stdout.write("\n")
            if chat.cut_short:
                print(f"(cut at the {chat.max_tokens}-token limit: the model had not finished; "
                      "--max-tokens raises it)")
