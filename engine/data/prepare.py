"""From a RunConfig to what the training loop consumes: loaded, checked, tokenized, fitted, split.

Over-long examples: the prompt side is cut from the left (oldest context first, the system
prompt included), so the final answer and its end-of-turn token stay whole; an example whose
final turn alone exceeds max_seq_len is dropped and reported, never cut silently. Raw text
(`text` format) keeps its beginning and is cut at max_seq_len.

The validation split is by a seeded hash of each example's tokens rather than a shuffle, so the
same seed gives the same split run after run, and an example stays on its side even when rows
are added to or reordered in the file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from engine.config.schema import PAIR_OBJECTIVES, RunConfig
from engine.data.load import load_conversations
from engine.data.mapping import DataMapping
from engine.data.readers import DatasetError
from engine.data.render import IGNORE_INDEX, Rendered, RenderError, render, with_system_prompt
from engine.data.types import Conversation, DataProblem, PreparedData, TokenizedExample
from engine.events import EventSink, Progress, ignore
from engine.files.paths import resolve_project_path


def prepare(config: RunConfig, tokenizer: Any, on_event: EventSink = ignore) -> PreparedData:
    """Load `config.dataset`, refuse when more than `config.max_bad_share` of rows are bad, render
    with the tokenizer's chat template, mask labels, fit to `config.max_seq_len`, and split.

    Raises DatasetError (with every problem) when the data is unusable.
    """
    path = resolve_project_path(config.dataset)
    on_event(Progress("dataset", 0, None, message=f"reading {path}"))
    pairs = config.objective in PAIR_OBJECTIVES
    loaded = load_conversations(path, config.dataset_format, mapping=DataMapping.from_config(config),
                                split=config.dataset_split, pairs=pairs)
    if pairs and loaded.format != "preference":
        raise DatasetError([], (
            f"{path}: objective = {config.objective} trains on preference pairs, and this file is {loaded.format} data "
            "with no 'rejected' field; give rows with 'prompt', 'chosen' and 'rejected' (or HH-RLHF chosen/rejected "
            "text), map your columns with columns = {chosen = \"...\", rejected = \"...\"}, or train objective = sft"))
    if pairs and not loaded.conversations:
        raise DatasetError(loaded.problems, (
            f"{path}: objective = {config.objective} trains on preference pairs, and no row has a usable 'rejected' "
            "reply; fix the field the problems name, or train objective = sft on the chosen replies"))
    if not loaded.conversations:
        raise DatasetError(loaded.problems, f"{path}: no usable rows out of {loaded.rows}")
    if loaded.bad_share > config.max_bad_share:
        raise DatasetError(loaded.problems, (
            f"{path}: {loaded.bad_rows} of {loaded.rows} rows ({loaded.bad_share:.1%}) are bad, more than "
            f"max_bad_share = {config.max_bad_share:g}; fix them or raise max_bad_share"
        ))

    examples, problems, truncated = tokenize(loaded.conversations, tokenizer, config, path, on_event)
    problems = [*loaded.problems, *problems]
    if not examples:
        raise DatasetError(problems, f"{path}: no example could be rendered within max_seq_len = {config.max_seq_len}")

    train, val = split(examples, config.val_split, config.seed)
    return PreparedData(tuple(train), tuple(val), loaded.format, tuple(problems), truncated)


def tokenize(conversations: Sequence[Conversation], tokenizer: Any, config: RunConfig, path: str,
             on_event: EventSink = ignore) -> tuple[list[TokenizedExample], list[DataProblem], int]:
    """Render, mask and fit each conversation: (examples, problems naming path:line, truncated count)."""
    problems: list[DataProblem] = []
    examples: list[TokenizedExample] = []
    truncated = 0
    total = len(conversations)
    step = max(1, total // 50)
    for n, conversation in enumerate(conversations, start=1):
        conversation = with_system_prompt(conversation, config.system_prompt)
        try:
            rendered = render(tokenizer, conversation, responses_only=config.train_on_responses_only)
        except RenderError as exc:
            problems.append(DataProblem(path, conversation.source_line, None, str(exc)))
            continue
        fitted = fit(rendered, config.max_seq_len)
        if fitted is None:
            problems.append(_too_long(path, conversation.source_line, rendered, config.max_seq_len, ""))
            continue
        ids, labels = fitted
        truncated += len(ids) < len(rendered.input_ids)
        rejected = None
        if conversation.rejected is not None and config.objective in PAIR_OBJECTIVES:
            try:
                side = with_system_prompt(Conversation(conversation.rejected, conversation.source_line),
                                          config.system_prompt)
                other = render(tokenizer, side, responses_only=config.train_on_responses_only)
            except RenderError as exc:
                problems.append(DataProblem(path, conversation.source_line, "rejected", str(exc)))
                continue
            fitted_other = fit(other, config.max_seq_len)
            if fitted_other is None:
                problems.append(_too_long(path, conversation.source_line, other, config.max_seq_len, "rejected"))
                continue
            rejected = TokenizedExample(*fitted_other, conversation.source_line)
            truncated += len(rejected.input_ids) < len(other.input_ids)
        examples.append(TokenizedExample(ids, labels, conversation.source_line, rejected))
        if n % step == 0 or n == total:
            on_event(Progress("tokenize", n, total, "conversations"))
    return examples, problems, truncated


def _too_long(path: str, line: int, rendered: Rendered, max_len: int, side: str) -> DataProblem:
    return DataProblem(path, line, side or None, (
        f"{len(rendered.input_ids)} tokens and the final turn alone is "
        f"{len(rendered.input_ids) - rendered.last_turn_token}, over max_seq_len = {max_len}: dropped"))


def fit(rendered: Rendered, max_len: int) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """Cut an example to `max_len` tokens by the policy above; None when it cannot be kept."""
    ids, labels = rendered.input_ids, rendered.labels
    if len(ids) <= max_len:
        return ids, labels
    if rendered.raw:
        return ids[:max_len], labels[:max_len]
    cut = len(ids) - max_len
    if cut > rendered.last_turn_token or all(label == IGNORE_INDEX for label in labels[cut:]):
        return None
    return ids[cut:], labels[cut:]


def split(examples: Sequence[TokenizedExample], val_share: float, seed: int) -> tuple[list, list]:
    """Hold out round(n * val_share) examples (at least one when val_share > 0 and n >= 2)."""
    n_val = round(len(examples) * val_share)
    if val_share > 0 and len(examples) >= 2:
        n_val = min(max(n_val, 1), len(examples) - 1)
    else:
        n_val = 0
    ranked = sorted(range(len(examples)), key=lambda i: _split_key(examples[i], seed, i))
    held = set(ranked[:n_val])
    train = [e for i, e in enumerate(examples) if i not in held]
    val = [e for i, e in enumerate(examples) if i in held]
    return train, val


def _split_key(example: TokenizedExample, seed: int, index: int) -> tuple[bytes, int]:
    digest = hashlib.blake2b(f"{seed}:{example.input_ids}".encode(), digest_size=16).digest()
    return digest, index
