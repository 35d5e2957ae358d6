"""The base model's own answers to prompts, the "before" that evaluation and replay both need.

They come from llama.cpp on a GGUF of the base exported the way a run is exported (same writer,
same quantisation), greedy, so they are what a user would get from the untuned model. The
answers are cached per base model, GGUF type, system prompt and length limit, one entry per
conversation: the base does not change between runs, so a question is only ever asked once.
The base model's likelihood figures (validation loss, the NLL of its own answers) are cached the
same way, per base model and the exact token ids scored.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.events import EventSink, Progress, ignore
from engine.files.atomic import write_text_atomic
from engine.files.paths import cache_dir
from engine.runs import gguf_path

CACHE_VERSION = 3
"""Bump when the way answers are produced changes, so old caches are not reused."""


@dataclass(frozen=True)
class Answer:
    text: str
    """The answer alone: a thinking model's reasoning is left out (engine/infer/thinking.py)."""
    finished: bool
    """The model ended the reply itself; False when it ran into the length limit."""


def base_gguf_for(base_ref: str, quant: str, on_event: EventSink = ignore) -> Path:
    """The un-tuned model exported like the run (same writer and type), cached per base and type."""
    from engine.export.merge import base_config_dir
    from engine.export.quantize import quantize
    from engine.export.to_gguf import write_f16

    config_dir = base_config_dir(base_ref)
    target = _base_gguf_target(base_ref, quant)
    folder = target.parent
    if target.is_file():
        return target
    if not (config_dir / "tokenizer.json").is_file() or not list(config_dir.glob("*.safetensors")):
        from huggingface_hub import snapshot_download

        config_dir = Path(snapshot_download(base_ref, allow_patterns=["*.json", "*.safetensors", "*.jinja",
                                                                         "tokenizer.model"]))
    on_event(Progress("eval", 0, None, "", f"exporting the base model as {quant} (cached)"))
    f16 = gguf_path(folder, "F16")
    if not f16.is_file():
        write_f16(config_dir, f16, name="base", on_event=on_event)
    if quant in ("F16", "BF16"):
        return f16 if quant == "F16" else write_f16(config_dir, target, dtype="BF16", name="base")
    return quantize(f16, target, quant)


def gguf_quant(path: Path) -> str | None:
    """A GGUF's type (Q8_0, F16, ...): from ftui's file name (`model-Q8_0.gguf`), else the header's
    `general.file_type`; None when neither says."""
    from engine.runs.layout import GGUF_PREFIX

    if path.name.startswith(GGUF_PREFIX) and path.suffix == ".gguf":
        return path.stem[len(GGUF_PREFIX):]
    import gguf

    try:
        field = gguf.GGUFReader(path).fields.get("general.file_type")
        return gguf.LlamaFileType(int(field.parts[-1][0])).name.removeprefix("MOSTLY_") if field else None
    except (OSError, ValueError, KeyError, IndexError):
        return None


def base_ref_of(run_dir: str | Path | None, model: str) -> str:
    """The untuned model a run started from (what its evaluation compares with), else the catalog's
    16-bit weights of `model`, else `model` itself (a hub id or a folder)."""
    if run_dir:
        from engine.export.merge import read_run_source

        source = read_run_source(Path(run_dir))
        return source.base_ref or source.origin_ref
    from engine.hardware.catalog import find

    spec = find(model)
    if spec is not None and spec.base_16bit:
        spec = find(spec.base_16bit) or spec
    if spec is None:
        return model
    if spec.source == "embedded":
        from engine.models.embedded import ensure_embedded_model

        return str(ensure_embedded_model())
    return spec.hub_id


def base_gguf_like(tuned_gguf: str | Path, base_ref: str, on_event: EventSink = ignore) -> tuple[Path, str]:
    """The base model's GGUF at the tuned file's type, made once and cached (`base_gguf_for`), so a
    side-by-side compare shows what the fine-tune changed and not what quantisation did. Returns
    the file and its type."""
    from engine.errors import ActionableError
    from engine.export.quantize import QUANTIZED_TYPES

    quant = gguf_quant(Path(tuned_gguf))
    if quant not in ("F16", "BF16", *QUANTIZED_TYPES):
        raise ActionableError(f"{Path(tuned_gguf).name} is of type {quant or 'unknown'}, which ftui cannot make "
                              "a base model file of", "compare with a file ftui exported (F16, BF16, "
                              f"{', '.join(QUANTIZED_TYPES)}), or give the base GGUF yourself")
    target = _base_gguf_target(base_ref, quant)
    if target.is_file():
        return target, quant
    from engine.native.child import run_native

    # Writing and quantising call into llama.cpp: a crash there is a failure with words, not the TUI's end.
    return run_native(f"exporting the base model as {quant}", base_gguf_for, base_ref, quant, on_event=on_event), quant


def _base_gguf_target(base_ref: str, quant: str) -> Path:
    return gguf_path(cache_dir() / "base-gguf" / _base_key(base_ref), quant)


def answer(gguf: Path, conversations: Sequence[list[dict[str, str]]], system: str, max_tokens: int,
           on_event: EventSink = ignore, label: str = "") -> list[Answer]:
    """Greedy replies of the GGUF's model to each conversation (ending with a user turn), decoded by
    llama.cpp in a child process: a crash there is a `NativeCrash`, not the end of ftui."""
    from engine.native.child import run_native

    return run_native(f"answering {len(conversations)} prompts with {gguf.name}", _answer_here, gguf,
                      [list(c) for c in conversations], system, max_tokens, label, on_event=on_event)


def _answer_here(gguf: Path, conversations: list[list[dict[str, str]]], system: str, max_tokens: int, label: str,
                 on_event: EventSink = ignore) -> list[Answer]:
    from engine.infer.chat import ChatSession
    from engine.infer.thinking import answer_only

    done = 0

    def count(_index: int, _text: str, _ended: bool) -> None:
        nonlocal done
        done += 1
        on_event(Progress("eval", done, len(conversations), "prompts", f"{label} answers".strip()))

    with ChatSession(gguf, system_prompt=system, temperature=0.0, max_tokens=max_tokens) as chat:
        replies = chat.complete_all([list(c) for c in conversations], count)
    return [Answer(answer_only(text), ended) for text, ended in replies]


def base_answers(base_ref: str, conversations: Sequence[list[dict[str, str]]], system: str, max_tokens: int,
                 quant: str = "Q8_0", on_event: EventSink = ignore, label: str = "base") -> list[Answer]:
    """`answer` from the base model's GGUF; each conversation is answered once per base model,
    type, system prompt and length limit, and read from the cache after that."""
    key = hashlib.sha256(json.dumps([CACHE_VERSION, _base_key(base_ref), quant, system, max_tokens]).encode())
    cache = cache_dir() / "base-answers" / f"{key.hexdigest()[:24]}.json"
    known = _read_cache(cache)
    asks = [json.dumps(c, sort_keys=True) for c in conversations]
    missing = [c for c, ask in zip(conversations, asks, strict=True) if ask not in known]
    if missing:
        replies = answer(base_gguf_for(base_ref, quant, on_event), missing, system, max_tokens, on_event, label)
        known.update({json.dumps(c, sort_keys=True): a for c, a in zip(missing, replies, strict=True)})
        write_text_atomic(cache, json.dumps({k: [a.text, a.finished] for k, a in known.items()}))
    return [known[ask] for ask in asks]


def base_figures(base_ref: str, inputs: object, compute: Callable[[], list[float | None]]) -> list[float | None]:
    """`compute()`'s figures of the base model over `inputs` (JSON-able: what was scored, as token
    ids), computed once per base model and inputs and read from the cache after that."""
    key = hashlib.sha256(json.dumps([CACHE_VERSION, _base_key(base_ref), inputs]).encode())
    cache = cache_dir() / "base-figures" / f"{key.hexdigest()[:24]}.json"
    try:
        figures = json.loads(cache.read_text(encoding="utf-8"))
        if isinstance(figures, list) and all(f is None or isinstance(f, float) for f in figures):
            return figures
    except (OSError, ValueError):
        pass  # not cached yet, or damaged: computed again
    figures = compute()
    write_text_atomic(cache, json.dumps(figures))
    return figures


def _read_cache(path: Path) -> dict[str, Answer]:
    try:
        return {k: Answer(str(v[0]), bool(v[1])) for k, v in json.loads(path.read_text(encoding="utf-8")).items()}
    except FileNotFoundError:
        return {}
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
        return {}  # a damaged cache is made again


def _base_key(base_ref: str) -> str:
    ref = str(Path(base_ref).resolve()) if Path(base_ref).is_dir() else base_ref
    return hashlib.sha256(ref.encode()).hexdigest()[:16]
