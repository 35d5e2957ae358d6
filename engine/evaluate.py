"""Before and after: the base model and the fine-tuned one on the same held-out material.

Answers come from GGUFs in llama.cpp, the tuned one from the run's export and the base one
exported the same way (same writer, same quantisation, cached), so both sides are what a user
would actually run and the difference is the fine-tuning alone. Greedy decoding makes the
comparison repeatable. Validation loss is measured in Hugging Face on the run's own held-out
split (same seed), with the adapter switched on and off in one loaded model.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from engine.atomic import write_text_atomic
from engine.events import EventSink, Progress, ignore
from engine.paths import PROJECT_ROOT, cache_dir
from engine.runs import eval_report_path, gguf_path

MAX_VAL_EXAMPLES = 200


@dataclass(frozen=True)
class EvalItem:
    prompt: str
    expected: str
    base_reply: str
    tuned_reply: str
    base_hit: bool
    tuned_hit: bool


@dataclass(frozen=True)
class EvalReport:
    run_dir: str
    eval_file: str | None
    quant: str | None
    items: tuple[EvalItem, ...]
    base_score: float | None
    """Share of held-out prompts whose expected answer the base model's reply contains."""
    tuned_score: float | None
    base_val_loss: float | None
    tuned_val_loss: float | None
    val_examples: int
    skipped: tuple[str, ...] = ()
    """Problems with eval-file lines that were skipped, with file and line."""

    @property
    def base_perplexity(self) -> float | None:
        return math.exp(self.base_val_loss) if self.base_val_loss is not None else None

    @property
    def tuned_perplexity(self) -> float | None:
        return math.exp(self.tuned_val_loss) if self.tuned_val_loss is not None else None


def evaluate(run_dir: str | Path, on_event: EventSink = ignore, eval_file: str | Path | None = None,
             max_tokens: int = 64) -> EvalReport:
    """Score base and tuned model; writes <run_dir>/eval.json. Exports the run first if needed."""
    from engine.export.merge import read_run_source

    run_dir = Path(run_dir)
    source = read_run_source(run_dir)
    eval_path = Path(eval_file) if eval_file else default_eval_file(source.config.dataset)
    prompts, skipped = read_eval_file(eval_path) if eval_path else ([], [])
    quant = None
    items: list[EvalItem] = []
    if prompts:
        tuned_gguf, quant = _tuned_gguf(run_dir, source.config.export_quants, on_event)
        base_gguf = base_gguf_for(source.base_ref or source.origin_ref, quant, on_event)
        system = source.config.system_prompt
        base_replies = _answers(base_gguf, prompts, system, max_tokens, on_event, "base")
        tuned_replies = _answers(tuned_gguf, prompts, system, max_tokens, on_event, "tuned")
        for (messages, expected), b, t in zip(prompts, base_replies, tuned_replies, strict=True):
            items.append(EvalItem(messages[-1]["content"], expected, b, t, _hit(b, expected), _hit(t, expected)))
    base_loss, tuned_loss, n_val = _val_losses(source, on_event)
    report = EvalReport(
        run_dir=str(run_dir), eval_file=str(eval_path) if eval_path else None, quant=quant, items=tuple(items),
        base_score=sum(i.base_hit for i in items) / len(items) if items else None,
        tuned_score=sum(i.tuned_hit for i in items) / len(items) if items else None,
        base_val_loss=base_loss, tuned_val_loss=tuned_loss, val_examples=n_val, skipped=tuple(skipped),
    )
    record = {**asdict(report), "base_perplexity": report.base_perplexity,
              "tuned_perplexity": report.tuned_perplexity}
    write_text_atomic(eval_report_path(run_dir), json.dumps(record, indent=2) + "\n")
    return report


def default_eval_file(dataset: str) -> Path | None:
    """`<name>_eval.jsonl` beside a `<name>_train.jsonl` dataset, if there is one."""
    path = Path(dataset)
    if not path.is_absolute():
        path = PROJECT_ROOT / path if (PROJECT_ROOT / path).exists() else path
    candidate = path.with_name(path.name.replace("_train", "_eval"))
    return candidate if candidate != path and candidate.is_file() else None


def read_eval_file(path: Path) -> tuple[list[tuple[list[dict[str, str]], str]], list[str]]:
    """Lines of {"messages": [...], "expected": "..."}; bad lines are skipped and reported."""
    prompts, skipped = [], []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            skipped.append(f"{path}:{n}: not valid JSON ({exc.msg})")
            continue
        messages = row.get("messages") if isinstance(row, dict) else None
        expected = row.get("expected") if isinstance(row, dict) else None
        ok_messages = isinstance(messages, list) and messages and all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            for m in messages) and messages[-1]["role"] == "user"
        if not ok_messages:
            skipped.append(f"{path}:{n}: messages must be a list of role/content objects ending with a user turn")
            continue
        if not isinstance(expected, str) or not expected.strip():
            skipped.append(f"{path}:{n}: expected must be non-empty text")
            continue
        assert isinstance(messages, list)
        prompts.append(([{"role": m["role"], "content": m["content"]} for m in messages], expected.strip()))
    return prompts, skipped


def base_gguf_for(base_ref: str, quant: str, on_event: EventSink = ignore) -> Path:
    """The un-tuned model exported like the run (same writer and type), cached per base and type."""
    from engine.export.gguf_writer import write_gguf
    from engine.export.merge import base_config_dir
    from engine.export.quantize import quantize

    config_dir = base_config_dir(base_ref)
    key = hashlib.sha256(str(Path(base_ref).resolve() if Path(base_ref).is_dir() else base_ref).encode())
    folder = cache_dir() / "base-gguf" / key.hexdigest()[:16]
    target = gguf_path(folder, quant)
    if target.is_file():
        return target
    if not (config_dir / "tokenizer.json").is_file() or not list(config_dir.glob("*.safetensors")):
        from huggingface_hub import snapshot_download

        config_dir = Path(snapshot_download(base_ref, allow_patterns=["*.json", "*.safetensors", "*.jinja"]))
    on_event(Progress("eval", 0, None, "", f"exporting the base model as {quant} (cached)"))
    f16 = gguf_path(folder, "F16")
    if not f16.is_file():
        write_gguf(config_dir, f16, name="base", on_event=on_event)
    if quant in ("F16", "BF16"):
        return f16 if quant == "F16" else write_gguf(config_dir, target, dtype="BF16", name="base")
    return quantize(f16, target, quant)


def _tuned_gguf(run_dir: Path, export_quants: tuple[str, ...], on_event: EventSink) -> tuple[Path, str]:
    from engine.runs import find_ggufs

    found = find_ggufs(run_dir)
    for quant in (*export_quants, "Q8_0", "F16"):
        if quant in found:
            return found[quant], quant
    from engine.export import ExportError, export

    quants = tuple(export_quants) or ("Q8_0",)
    result = export(run_dir, quants=quants, on_event=on_event)
    if not result.files:
        assert result.failure is not None
        raise ExportError(f"the run has no export and exporting it failed: {result.failure.reason}",
                          result.failure.advice)
    return Path(result.gguf(quants[0])), quants[0]


def _answers(gguf: Path, prompts: list[tuple[list[dict[str, str]], str]], system: str, max_tokens: int,
             on_event: EventSink, label: str) -> list[str]:
    from engine.chat import ChatSession

    replies = []
    with ChatSession(gguf, system_prompt=system, temperature=0.0, max_tokens=max_tokens) as chat:
        for i, (messages, _) in enumerate(prompts):
            chat.reset()
            chat.history.extend(messages[:-1])
            replies.append("".join(chat.send(messages[-1]["content"])).strip())
            on_event(Progress("eval", i + 1, len(prompts), "prompts", f"{label} answers"))
    return replies


def _hit(reply: str, expected: str) -> bool:
    return " ".join(expected.lower().split()) in " ".join(reply.lower().split())


def _val_losses(source: Any, on_event: EventSink) -> tuple[float | None, float | None, int]:
    """Mean token loss on the run's validation split for base and tuned; (None, None, 0) without one."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from engine.data import prepare

    config = source.config
    if config.val_split <= 0:
        return None, None, 0
    tokenizer = AutoTokenizer.from_pretrained(source.tokenizer_ref)
    val = prepare(config, tokenizer).val[:MAX_VAL_EXAMPLES]
    if not val:
        return None, None, 0
    on_event(Progress("eval", 0, len(val), "examples", "validation loss"))
    trust = config.trust_remote_code
    if source.base_ref is None:
        tuned = AutoModelForCausalLM.from_pretrained(source.weights, dtype=torch.float32, trust_remote_code=trust)
        base = AutoModelForCausalLM.from_pretrained(source.origin_ref, dtype=torch.float32, trust_remote_code=trust)
        return _loss(base, val), _loss(tuned, val), len(val)
    from peft import PeftModel

    model = AutoModelForCausalLM.from_pretrained(source.base_ref, dtype=torch.float32, trust_remote_code=trust)
    model = PeftModel.from_pretrained(model, str(source.weights)).eval()
    tuned_loss = _loss(model, val)
    with model.disable_adapter():
        base_loss = _loss(model, val)
    return base_loss, tuned_loss, len(val)


def _loss(model: Any, examples: Any) -> float:
    import torch

    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for ex in examples:
            ids = torch.tensor([ex.input_ids])
            labels = torch.tensor([ex.labels])
            n = int((labels[0, 1:] != -100).sum())
            if n == 0:
                continue
            loss = model(input_ids=ids, labels=labels).loss
            total += float(loss) * n
            count += n
    return total / count if count else float("nan")
