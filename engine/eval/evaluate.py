"""Before and after: the base model and the fine-tuned one on the same held-out material.

Answers come from GGUFs in llama.cpp, the tuned one from the run's export and the base one
exported the same way (same writer, same quantisation, cached), so both sides are what a user
would actually run and the difference is the fine-tuning alone. Greedy decoding makes the
comparison repeatable. Validation loss is measured in Hugging Face on the run's own held-out
split (same seed), with the adapter switched on and off in one loaded model.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from engine.config.schema import ConfigError, RunConfig
from engine.data.prompts import GeneralPrompt, read_prompt_file
from engine.data.types import Conversation
from engine.display import printable
from engine.errors import ActionableError
from engine.eval.retention import (
    ANSWER_BATCH,
    ExactRetention,
    RetentionFinding,
    answer_matches,
    collapse_share,
    diagnose_retention,
    exact_retention,
)
from engine.events import Diagnosis, EvalFailed, EventSink, Progress, ignore
from engine.files.atomic import write_text_atomic
from engine.files.paths import PROJECT_ROOT, resolve_project_path
from engine.infer.base_answers import answer, base_answers
from engine.models.hf_import import hf_imported
from engine.runs import eval_report_path

MAX_VAL_EXAMPLES = 200
GENERAL_EVAL = PROJECT_ROOT / "presets" / "data" / "general_eval.jsonl"
RETENTION_MAX_TOKENS = 64
"""Long enough for every expected answer and for a reply's shape; code answers are cut, which
the exact score does not need (they are checked for `def`) and the likelihood measure skips."""


@dataclass(frozen=True)
class EvalItem:
    prompt: str
    expected: str
    base_reply: str
    tuned_reply: str
    base_hit: bool
    tuned_hit: bool


@dataclass(frozen=True)
class RetentionItem:
    prompt: str
    kind: str
    expected: str | None
    base_reply: str
    tuned_reply: str


@dataclass(frozen=True)
class RetentionReport:
    prompts: int
    files: tuple[str, ...]
    exact: ExactRetention
    base_collapse: float
    tuned_collapse: float
    """Share of general answers in the training replies' shape or all one answer (engine/eval/retention.py)."""
    nll_increase: float | None
    """Nats per token the base model's own finished answers cost more under the tuned model."""
    findings: tuple[RetentionFinding, ...]
    items: tuple[RetentionItem, ...]


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
    retention: RetentionReport | None = None
    """General prompts, base vs tuned: what the fine-tune kept of what the base model could do."""
    failure: EvalFailed | None = None
    """Why the run could not be evaluated (the same EvalFailed the events carried); nothing else is set."""

    @property
    def base_perplexity(self) -> float | None:
        return math.exp(self.base_val_loss) if self.base_val_loss is not None else None

    @property
    def tuned_perplexity(self) -> float | None:
        return math.exp(self.tuned_val_loss) if self.tuned_val_loss is not None else None


def evaluate(run_dir: str | Path, on_event: EventSink = ignore, eval_file: str | Path | None = None,
             max_tokens: int = 64, trust_remote_code: bool = False) -> EvalReport:
    """Score base and tuned model; writes <run_dir>/eval.json. Exports the run first if needed.
    A run that cannot be evaluated ends with one EvalFailed event and a report carrying it, as
    export does; nothing is raised for it."""
    try:
        return _evaluate(Path(run_dir), on_event, eval_file, max_tokens, trust_remote_code)
    except ActionableError as exc:
        failure = EvalFailed(exc.reason, exc.advice)
    except ConfigError as exc:
        failure = EvalFailed(f"{run_dir}: cannot read the run's config.toml:\n{exc}",
                             "fix the setting named above in the run's config.toml")
    except OSError as exc:
        failure = EvalFailed(f"{exc.filename or run_dir}: {exc.strerror or exc}", "")
    on_event(failure)
    return EvalReport(str(run_dir), None, None, (), None, None, None, None, 0, failure=failure)


def _evaluate(run_dir: Path, on_event: EventSink, eval_file: str | Path | None, max_tokens: int,
              trust_remote_code: bool) -> EvalReport:
    from engine.export.merge import read_run_source

    source = read_run_source(run_dir, trust_remote_code)
    eval_path = Path(eval_file) if eval_file else default_eval_file(source.config.dataset)
    prompts, skipped = read_eval_file(eval_path) if eval_path else ([], [])
    general = retention_prompts(source.config)
    tuned_gguf, quant = _tuned_gguf(run_dir, source.config.export_quants, on_event, trust_remote_code)
    base_ref = source.base_ref or source.origin_ref
    system = source.config.system_prompt
    items: list[EvalItem] = []
    if prompts:
        conversations = [messages for messages, _ in prompts]
        base_replies = [a.text for a in base_answers(base_ref, conversations, system, max_tokens, quant, on_event)]
        tuned_replies = [a.text for a in answer(tuned_gguf, conversations, system, max_tokens, on_event, "tuned")]
        for (messages, expected), b, t in zip(prompts, base_replies, tuned_replies, strict=True):
            items.append(EvalItem(printable(messages[-1]["content"]), expected, printable(b), printable(t),
                                  answer_matches(b, expected), answer_matches(t, expected)))
    general_base = (base_answers(base_ref, [p.message_dicts() for p in general], system, RETENTION_MAX_TOKENS,
                                 quant, on_event, "general base") if general else [])
    nll_pairs = [p.answered(a.text) for p, a in zip(general, general_base, strict=True) if a.finished and a.text]
    base_loss, tuned_loss, n_val, nll_base, nll_tuned = _hf_measures(source, nll_pairs, on_event)
    retention = None
    if general:
        general_tuned = answer(tuned_gguf, [p.message_dicts() for p in general], system, RETENTION_MAX_TOKENS,
                               on_event, "general tuned")
        retention = score_retention(source.config, general, [a.text for a in general_base],
                                    [a.text for a in general_tuned],
                                    nll_tuned - nll_base if nll_base is not None and nll_tuned is not None else None)
        for finding in retention.findings:
            on_event(Diagnosis(0, finding.kind, finding.message, finding.advice))
    report = EvalReport(
        run_dir=str(run_dir), eval_file=str(eval_path) if eval_path else None, quant=quant, items=tuple(items),
        base_score=sum(i.base_hit for i in items) / len(items) if items else None,
        tuned_score=sum(i.tuned_hit for i in items) / len(items) if items else None,
        base_val_loss=base_loss, tuned_val_loss=tuned_loss, val_examples=n_val, skipped=tuple(skipped),
        retention=retention,
    )
    record = {**asdict(report), "base_perplexity": report.base_perplexity,
              "tuned_perplexity": report.tuned_perplexity}
    write_text_atomic(eval_report_path(run_dir), json.dumps(record, indent=2) + "\n")
    return report


def retention_prompts(config: RunConfig) -> list[GeneralPrompt]:
    """The built-in general set plus the user's own `retention_prompts`, if any."""
    prompts = read_prompt_file(GENERAL_EVAL)
    if config.retention_prompts:
        prompts += read_prompt_file(resolve_project_path(config.retention_prompts))
    return prompts


def score_retention(config: RunConfig, general: list[GeneralPrompt], base_replies: list[str],
                    tuned_replies: list[str], nll_increase: float | None) -> RetentionReport:
    """Exact retention, collapse (base and tuned, against the run's own training replies) and findings."""
    training = training_replies(config)
    exact = exact_retention(general, base_replies, tuned_replies)
    base_collapse = collapse_share(base_replies, training)
    tuned_collapse = collapse_share(tuned_replies, training)
    findings = diagnose_retention(exact, nll_increase, tuned_collapse, base_collapse)
    files = (str(GENERAL_EVAL),) + ((config.retention_prompts,) if config.retention_prompts else ())
    items = tuple(RetentionItem(p.prompt, p.kind, p.expected, b, t)
                  for p, b, t in zip(general, base_replies, tuned_replies, strict=True))
    return RetentionReport(len(general), files, exact, base_collapse, tuned_collapse, nll_increase,
                           tuple(findings), items)


def training_replies(config: RunConfig) -> list[str]:
    """The final assistant reply of every conversation the run trained on (the shape collapse looks for)."""
    from engine.data import DatasetError
    from engine.data.load import load_conversations

    try:
        loaded = load_conversations(resolve_project_path(config.dataset), config.dataset_format)
    except DatasetError:
        return []  # the data moved since training: collapse is then judged by repetition alone
    return [c.messages[-1].content for c in loaded.conversations if c.messages and c.messages[-1].role == "assistant"]


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


def _tuned_gguf(run_dir: Path, export_quants: tuple[str, ...], on_event: EventSink,
                trust_remote_code: bool) -> tuple[Path, str]:
    from engine.runs import find_ggufs

    found = find_ggufs(run_dir)
    for quant in (*export_quants, "Q8_0", "F16"):
        if quant in found:
            return found[quant], quant
    from engine.export import ExportError, export

    quants = tuple(export_quants) or ("Q8_0",)
    result = export(run_dir, quants=quants, on_event=on_event, trust_remote_code=trust_remote_code)
    if not result.files:
        assert result.failure is not None
        raise ExportError(f"the run has no export and exporting it failed: {result.failure.reason}",
                          result.failure.advice)
    return Path(result.gguf(quants[0])), quants[0]


def _hf_measures(source: Any, general: list[Conversation], on_event: EventSink
                 ) -> tuple[float | None, float | None, int, float | None, float | None]:
    """With the tuned model loaded in Hugging Face: validation loss on the run's held-out split
    (None without one) and the mean token NLL of the base model's own general answers (None
    without any), each for base and tuned. The base's two figures are cached per base model and
    the token ids scored (engine/infer/base_answers.py), so a second run on the same base skips them."""
    import torch
    hf_imported()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from engine.data import prepare
    from engine.data.render import with_system_prompt
    from engine.eval.retention import answer_examples
    from engine.hardware.probe import cuda_computes_bf16
    from engine.infer.base_answers import base_figures
    from engine.train.methods import cpu_has_native_bf16

    config = source.config
    tokenizer = AutoTokenizer.from_pretrained(source.tokenizer_ref)
    val = prepare(config, tokenizer).val[:MAX_VAL_EXAMPLES] if config.val_split > 0 else ()
    answers = answer_examples(tokenizer, [with_system_prompt(c, config.system_prompt) for c in general])
    if not val and not answers:
        return None, None, 0, None, None
    on_event(Progress("eval", 0, len(val), "examples", "validation loss and retention likelihood"))
    cuda = torch.cuda.is_available()
    dtype, where, autocast = measure_placement(cuda, cuda_computes_bf16() if cuda else cpu_has_native_bf16())
    load = {"dtype": dtype, "trust_remote_code": config.trust_remote_code, **where}
    scored = [[[e.input_ids, e.labels] for e in part] for part in (val, answers)]
    base_ref = source.base_ref or source.origin_ref
    if source.base_ref is None:
        tuned = AutoModelForCausalLM.from_pretrained(source.weights, **load)
        tuned_loss, tuned_nll = _measure(tuned, tokenizer, val, answers, config, autocast)
        del tuned

        def base_measures() -> list[float | None]:
            base = AutoModelForCausalLM.from_pretrained(base_ref, **load)
            return list(_measure(base, tokenizer, val, answers, config, autocast))
    else:
        from peft import PeftModel

        model = AutoModelForCausalLM.from_pretrained(source.base_ref, **load)
        model = PeftModel.from_pretrained(model, str(source.weights)).eval()
        tuned_loss, tuned_nll = _measure(model, tokenizer, val, answers, config, autocast)

        def base_measures() -> list[float | None]:
            with model.disable_adapter():
                return list(_measure(model, tokenizer, val, answers, config, autocast))
    base_loss, base_nll = base_figures(base_ref, ["val loss and answer nll", str(dtype), str(autocast),
                                                  config.batch_size, scored], base_measures)
    return base_loss, tuned_loss, len(val), base_nll, tuned_nll


def measure_placement(cuda: bool, bf16: bool) -> tuple[Any, dict[str, Any], Any]:
    """(dtype, from_pretrained placement, autocast dtype) for the likelihood measures, with `bf16`
    whether the device has native bf16. On a GPU the 16-bit type it trains in, on the GPU (an 8B
    model in fp32 would need 32 GB of CPU memory and hours); on a CPU fp32 weights under the bf16
    autocast training uses where the CPU has bf16: the demo's 160 answers in 8.8 s instead of 13.5,
    their mean NLL 0.5634 against 0.5636 in fp32 (base 0.7136 against 0.7134)."""
    import torch

    if not cuda:
        return torch.float32, {}, torch.bfloat16 if bf16 else None
    return (torch.bfloat16 if bf16 else torch.float16), {"device_map": {"": 0}}, None


def _measure(model: Any, tokenizer: Any, val: Any, answers: Any, config: RunConfig,
             autocast: Any) -> tuple[float | None, float | None]:
    from engine.train.step import held_out_loss

    loss = held_out_loss(model, tokenizer, tuple(val), config.batch_size, autocast) if val else None
    return loss, (held_out_loss(model, tokenizer, answers, ANSWER_BATCH, autocast) if answers else None)
