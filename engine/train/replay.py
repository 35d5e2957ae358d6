"""Self-distillation replay: general conversations answered by the base model itself, trained
beside the task so the tuned model keeps answering the rest of the world its own way.

A fine-tune on one narrow task drags every answer towards that task (the Docker demo answered
"What is the capital of France?" with a docker command). Mixing in conversations the base model
answered itself keeps the tuned model's distribution close to the base's outside the task,
without any download (the idea of "Self-Distillation Bridges Distribution Gap in Language
Model Fine-Tuning", ACL 2024). The prompts come from presets/data/general_replay.jsonl, which
never overlaps the prompts retention is scored on (general_eval.jsonl); a user may give their
own general dataset instead (`retention_data`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from engine.config.schema import RunConfig
from engine.data.types import Conversation, Message, TokenizedExample
from engine.events import EventSink, Progress, ignore
from engine.files.paths import PROJECT_ROOT

REPLAY_POOL = PROJECT_ROOT / "presets" / "data" / "general_replay.jsonl"
REPLAY_MAX_TOKENS = 128
"""Answers that run past this are dropped, not trained cut short: a cut answer followed by the
end-of-turn token would teach the model to stop mid-sentence."""


@dataclass(frozen=True)
class Replay:
    examples: tuple[TokenizedExample, ...]
    wanted: int
    """How many the mix asked for; fewer when the pool ran out."""
    source: str


def replays(config: RunConfig) -> bool:
    """Whether the run mixes replayed general conversations into its training data: only SFT does
    (preference rows need a rejected reply, and GRPO samples its answers from the policy itself)."""
    return config.objective == "sft" and config.retention_mix > 0


def replay_count(task_examples: int, mix: float) -> int:
    """Replayed examples so that they are `mix` of everything trained."""
    return round(task_examples * mix / (1 - mix)) if mix > 0 else 0


def replay_examples(config: RunConfig, tokenizer: Any, base_ref: str, task_examples: int,
                    on_event: EventSink = ignore) -> Replay:
    """Tokenized replay conversations for a run, chosen by `config.seed` (the same every time)."""
    from engine.data.prepare import tokenize

    wanted = replay_count(task_examples, config.retention_mix)
    if wanted == 0:
        return Replay((), 0, "")
    if config.retention_data:
        from engine.data.load import load_conversations
        from engine.files.paths import resolve_project_path

        source = resolve_project_path(config.retention_data)
        pool = list(load_conversations(source, "auto").conversations)
        chosen = random.Random(config.seed).sample(pool, min(wanted, len(pool)))
    else:
        source = f"{REPLAY_POOL.name} answered by the base model"
        chosen = base_conversations(base_ref, config.system_prompt, wanted, config.seed, on_event)
    examples, _problems, _truncated = tokenize(chosen, tokenizer, config, source)
    on_event(Progress("replay", len(examples), wanted, "examples",
                      f"{len(examples)} general conversations replayed ({source})"))
    return Replay(tuple(examples), wanted, source)


def base_conversations(base_ref: str, system: str, wanted: int, seed: int,
                       on_event: EventSink = ignore) -> list[Conversation]:
    """`wanted` pool prompts in a seeded order, each with the base model's own greedy answer.
    Answers cut at the length limit, or empty, are skipped and the next prompt is asked instead.
    Only the prompts needed are answered, once per base model (engine/infer/base_answers.py)."""
    from engine.data.prompts import read_prompt_file
    from engine.infer.base_answers import base_answers

    pool = read_prompt_file(REPLAY_POOL)
    random.Random(seed).shuffle(pool)
    kept: list[Conversation] = []
    start = 0
    while len(kept) < wanted and start < len(pool):
        # Ask a few more than still needed: about one answer in five runs past the limit.
        batch = pool[start:start + (wanted - len(kept)) * 5 // 4 + 1]
        start += len(batch)
        on_event(Progress("replay", len(kept), wanted, "answers", "the base model answers general prompts (cached)"))
        answers = base_answers(base_ref, [p.message_dicts() for p in batch], system, REPLAY_MAX_TOKENS,
                               on_event=on_event, label="replay")
        kept += [Conversation((*p.messages, Message("assistant", a.text)), p.source_line)
                 for p, a in zip(batch, answers, strict=True) if a.finished and a.text.strip()]
    return kept[:wanted]
