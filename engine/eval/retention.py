"""Did fine-tuning make the model forget what it knew? Measures of catastrophic forgetting.

Why this exists: after training on the Docker demo set (every reply "Run: `docker ...`"), the
tuned model answers *every* prompt with a Docker command. Training loss, validation loss and the
task's own eval all look fine, because they only ask Docker questions. The way to see it is to
ask general questions that have nothing to do with the training data and compare the tuned model
with the base model it came from. Three figures do that:

- exact retention: of the general prompts with one checkable answer that the base model got
  right, the share the tuned model still gets right (`exact_retention`);
- likelihood drift: the mean per-token negative log-likelihood of the base model's own greedy
  answers under the tuned model minus under the base model (`mean_token_nll`, called twice);
  it moves before answers flip, so it sees forgetting that exact answers hide;
- collapse: the share of general answers that take the training replies' shape, or that are all
  one answer (`collapse_share`).

`diagnose_retention` turns the figures into findings with advice. The prompts live in
presets/data/general_eval.jsonl (scored) and general_replay.jsonl (a separate pool the base model
answers for self-distillation replay during training). Everything here is plain Python; torch
is imported only inside `mean_token_nll`.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from engine.data.answers import answer_matches
from engine.data.prompts import GeneralPrompt
from engine.data.render import render
from engine.data.types import Conversation, Message, TokenizedExample

# --- exact answers -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ExactRetention:
    scored: int
    """Prompts with an expected answer."""
    base_right: int
    tuned_right: int
    tuned_kept: int
    """Prompts both the base and the tuned model got right."""
    share: float | None
    """tuned_kept / base_right: how much of what the base knew survived; None when the base got none."""


def exact_retention(prompts: Sequence[GeneralPrompt], base_replies: Sequence[str],
                    tuned_replies: Sequence[str]) -> ExactRetention:
    """Score both models on the prompts that have an expected answer; replies align with prompts."""
    if not len(prompts) == len(base_replies) == len(tuned_replies):
        raise ValueError(f"{len(prompts)} prompts but {len(base_replies)} base and {len(tuned_replies)} tuned replies")
    scored = base_right = tuned_right = kept = 0
    for prompt, base, tuned in zip(prompts, base_replies, tuned_replies, strict=True):
        if prompt.expected is None:
            continue
        scored += 1
        b, t = answer_matches(base, prompt.expected), answer_matches(tuned, prompt.expected)
        base_right += b
        tuned_right += t
        kept += b and t
    return ExactRetention(scored, base_right, tuned_right, kept, kept / base_right if base_right else None)


# --- collapse ----------------------------------------------------------------------------------

PREFIX_SHARE = 0.5
"""A training prefix is dominant when at least this share of training replies start with it."""
PREFIX_MIN_CHARS = 4
"""Non-space characters a dominant prefix needs: "Run: `" counts, "The " or "I " (how ordinary
sentences start) do not."""
TRAINING_SIMILARITY = 0.6
"""Trigram similarity to a training reply above which a general answer is a copy of it."""
MODE_SIMILARITY = 0.9
"""Trigram similarity at which two general answers are the same answer."""
MODE_SHARE = 0.25
"""A general answer given (near-identically) to at least this share of the other prompts is a mode."""
MODE_MIN_REPEATS = 2
"""...and to at least this many other prompts, so two equal answers to two greetings are not one."""
_PIECES = re.compile(r"\w+|\s+|[^\w\s]")

Collapse = Literal["prefix", "training", "mode"]


def collapse_share(general_replies: Sequence[str], training_replies: Sequence[str]) -> float:
    """Share of general answers that take the training replies' shape (0.0 for no answers).

    See `collapse_reasons` for what counts. Compare with the base model's figure on the same
    prompts: if the training replies are shaped like ordinary answers, some base answers match too.
    """
    reasons = collapse_reasons(general_replies, training_replies)
    return sum(r is not None for r in reasons) / len(reasons) if reasons else 0.0


def collapse_reasons(general_replies: Sequence[str], training_replies: Sequence[str]) -> list[Collapse | None]:
    """Why each general answer counts as collapsed, or None. Three signs, any one is enough:

    - "prefix": it starts with the training replies' dominant prefix: the longest run of leading
      words and punctuation shared by at least PREFIX_SHARE of them, if it has PREFIX_MIN_CHARS
      non-space characters ("Run: `docker " for the Docker set). This is how a narrow task set
      shows first: the answer format leaks onto every prompt, whatever follows it. Cutting at
      word boundaries keeps "Run: `docker c" (compose, container, cp) from standing for them all.
    - "training": its character-trigram similarity (Dice over trigram sets, case and spacing
      ignored) to its closest training reply is at least TRAINING_SIMILARITY: a recited training
      answer with no shared prefix to give it away ("docker ps -a" against "Run: `docker ps -a`"
      scores 0.65). Unrelated paragraphs score 0.2-0.3 (they share " th", "the", "ing"...), two
      sentences in one template with other facts about 0.5 ("The capital of France is Paris." /
      "... Japan is Tokyo."), a reply with a word or two changed 0.7 and more; 0.6 sits between.
      A short answer in a training reply's template does count ("The answer is 6." against
      "The answer is 42.", about 0.75): it has taken that shape. When ordinary answers share the
      training replies' form, the base model scores some too; judge the difference.
    - "mode": it is near-identical (similarity >= MODE_SIMILARITY, punctuation ignored) to at
      least MODE_SHARE of the other general answers, and to MODE_MIN_REPEATS or more of them. A
      model that answers every prompt "I don't know." has collapsed as surely as one that answers
      them all with a Docker command, though it shares nothing with the training replies. "The
      answer is 5." and "The answer is 7." score about 0.8, below MODE_SIMILARITY: a template with
      different answers in it is not one answer.
    """
    general = [_spaces(r).lower() for r in general_replies]
    training = [_spaces(r).lower() for r in training_replies]
    prefix = dominant_prefix(training)
    train_grams = [_trigrams(t) for t in training]
    grams = [_trigrams(g) for g in general]
    # Punctuation is noise between two answers ("I don't know." / "I don't know"), not the answer.
    bare = [_trigrams(_spaces(re.sub(r"[^\w\s]", " ", g))) for g in general]
    repeats = [0] * len(general)
    for i in range(len(general)):
        for j in range(i + 1, len(general)):
            if dice(bare[i], bare[j]) >= MODE_SIMILARITY:
                repeats[i] += 1
                repeats[j] += 1
    mode_needed = max(MODE_MIN_REPEATS, MODE_SHARE * (len(general) - 1))
    reasons: list[Collapse | None] = []
    for text, g, n in zip(general, grams, repeats, strict=True):
        if prefix and text.startswith(prefix):
            reasons.append("prefix")
        elif any(dice(g, t) >= TRAINING_SIMILARITY for t in train_grams):
            reasons.append("training")
        elif n >= mode_needed:
            reasons.append("mode")
        else:
            reasons.append(None)
    return reasons


def dominant_prefix(training_replies: Sequence[str]) -> str:
    """The longest run of leading words, spaces and punctuation that at least PREFIX_SHARE of the
    replies (and at least two) share, lowercased with whitespace runs as one space; "" when it is too short to mean
    anything (fewer than PREFIX_MIN_CHARS non-space characters) or there are no replies."""
    if not training_replies:
        return ""
    need = max(2, PREFIX_SHARE * len(training_replies))  # shared: one reply alone is no pattern
    groups = [_PIECES.findall(_spaces(r).lower()) for r in training_replies]
    prefix: list[str] = []
    while nexts := Counter(g[len(prefix)] for g in groups if len(g) > len(prefix)):
        piece, count = nexts.most_common(1)[0]
        if count < need:
            break
        groups = [g for g in groups if len(g) > len(prefix) and g[len(prefix)] == piece]
        prefix.append(piece)
    text = "".join(prefix)
    return text if len(re.sub(r"\s", "", text)) >= PREFIX_MIN_CHARS else ""


def dice(a: frozenset[str], b: frozenset[str]) -> float:
    """Dice similarity of two trigram sets: 1.0 for the same set, 0.0 for nothing shared."""
    return 2 * len(a & b) / (len(a) + len(b)) if a or b else 1.0


def _trigrams(text: str) -> frozenset[str]:
    padded = f" {text} "
    return frozenset(padded[i:i + 3] for i in range(len(padded) - 2))


def _spaces(text: str) -> str:
    return " ".join(text.split())


# --- likelihood drift --------------------------------------------------------------------------

@dataclass(frozen=True)
class AnswerNll:
    total: float
    """Summed negative log-likelihood of the answer tokens, in nats."""
    tokens: int
    """Answer tokens scored: the assistant reply and its end-of-turn token, never the prompt."""

    @property
    def mean(self) -> float:
        return self.total / self.tokens


def mean_token_nll(model: Any, tokenizer: Any, conversations: Sequence[Conversation | Sequence[Mapping[str, str]]]) -> float:
    """Mean per-token negative log-likelihood (nats) `model` assigns to the assistant answers.

    Each conversation (prompt turns, then the answer) is rendered with the tokenizer's chat
    template exactly as training renders it, and only the answer's tokens count, pooled over all
    conversations (a long answer weighs more than a short one, as in the training loss). Use it as
    `mean_token_nll(tuned, ...) - mean_token_nll(base, ...)` over the base model's own greedy
    answers: how much less likely the tuned model finds what the base model would have said.
    """
    return answer_nll(model, tokenizer, conversations).mean


ANSWER_BATCH = 8
"""Answers scored per forward when measuring their likelihood."""


def answer_nll(model: Any, tokenizer: Any, conversations: Sequence[Conversation | Sequence[Mapping[str, str]]],
               batch_size: int = ANSWER_BATCH) -> AnswerNll:
    """The summed NLL and the count of answer tokens behind `mean_token_nll`, in fp32, batched by
    length through the training's own held-out loss (labelled positions only reach the head)."""
    from engine.train.step import held_out_loss, trained_tokens

    examples = answer_examples(tokenizer, conversations)
    if not examples:
        raise ValueError("no assistant answer tokens to score: each conversation must end with an assistant turn")
    tokens = sum(trained_tokens(e) for e in examples)
    return AnswerNll(held_out_loss(model, tokenizer, examples, batch_size) * tokens, tokens)


def answer_examples(tokenizer: Any, conversations: Sequence[Conversation | Sequence[Mapping[str, str]]]
                    ) -> tuple[TokenizedExample, ...]:
    """The conversations rendered as training renders them, labelled on the answers only; those
    without an answer token are left out."""
    from engine.train.step import trained_tokens

    examples = (TokenizedExample(r.input_ids, r.labels, 0)
                for r in (render(tokenizer, _as_conversation(c)) for c in conversations))
    return tuple(e for e in examples if trained_tokens(e))


def _as_conversation(conversation: Conversation | Sequence[Mapping[str, str]]) -> Conversation:
    if isinstance(conversation, Conversation):
        return conversation
    return Conversation(tuple(Message(m["role"], m["content"]) for m in conversation), 0)


# --- findings ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class RetentionThresholds:
    min_exact_retention: float = 0.9
    """Keep at least this share of the general answers the base model got right: below it, one in
    ten things the base model knew is gone, which a user notices in ordinary chat."""
    min_lost: int = 2
    """...and lose at least this many, so one flipped answer out of a handful is not forgetting."""
    max_nll_increase: float = 0.5
    """Nats per token the base model's own answers may grow more surprising under the tuned model.
    Greedy answers are the base model's own most likely tokens; +0.5 makes each of them e^0.5 =
    1.65 times less likely, e^10 times for a 20-token answer: the tuned model would no longer say
    it. Smaller drifts are what any useful fine-tune costs and show in no answer."""
    max_collapse: float = 0.10
    """Share of general answers, over the base model's own share, that may take the training
    shape: one in ten general prompts answered in the task's format is already visible in chat."""


@dataclass(frozen=True)
class RetentionFinding:
    kind: Literal["forgetting", "collapse"]
    message: str
    """One line with the measured figure."""
    advice: str


FORGETTING_ADVICE = ("lower learning_rate, train fewer epochs or use a smaller lora_r, and raise retention_mix "
                     "so replayed general answers are trained alongside the task")
COLLAPSE_ADVICE = ("make the training replies more varied (not one template), train fewer epochs, lower "
                   "learning_rate, and raise retention_mix so the model keeps answering general prompts its own way")


def diagnose_retention(exact: ExactRetention | None = None, nll_increase: float | None = None,
                       collapse: float | None = None, base_collapse: float = 0.0,
                       thresholds: RetentionThresholds = RetentionThresholds()) -> list[RetentionFinding]:
    """Findings for the figures that cross a threshold; figures not measured (None) are not judged."""
    found = []
    if exact is not None and exact.share is not None:
        lost = exact.base_right - exact.tuned_kept
        if exact.share < thresholds.min_exact_retention and lost >= thresholds.min_lost:
            found.append(RetentionFinding(
                "forgetting",
                f"the tuned model keeps {exact.tuned_kept} of the {exact.base_right} general answers the base "
                f"model got right ({exact.share:.0%}, below {thresholds.min_exact_retention:.0%})",
                FORGETTING_ADVICE,
            ))
    if nll_increase is not None and math.isfinite(nll_increase) and nll_increase > thresholds.max_nll_increase:
        found.append(RetentionFinding(
            "forgetting",
            f"the base model's own general answers cost {nll_increase:.2f} nats/token more under the tuned model "
            f"(each token {math.exp(nll_increase):.1f}x less likely; limit {thresholds.max_nll_increase:g})",
            FORGETTING_ADVICE,
        ))
    if collapse is not None and collapse - base_collapse > thresholds.max_collapse:
        found.append(RetentionFinding(
            "collapse",
            f"{collapse:.0%} of general answers take the training replies' shape or are one repeated answer "
            f"(base model: {base_collapse:.0%})",
            COLLAPSE_ADVICE,
        ))
    return found
