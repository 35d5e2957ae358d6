"""Rendering conversations with the model's own chat template, and which tokens carry loss.

Training text comes from `tokenizer.apply_chat_template`, never a hand-written format, so the
model trains on exactly what it sees at inference and what the exported GGUF embeds.

Responses-only labels: each assistant reply's character span is found by rendering the
conversation's prefixes (up to the reply with the generation prompt, and up to the end of the
reply), then tokens are labelled by their character offsets in the full rendering. This works
for any prefix-stable template, including SmolLM2's, which has no `{% generation %}` markers
for `return_assistant_tokens_mask`. The reply's end-of-turn token is inside the span and so
trained (otherwise the model never learns to stop); the template's newline after it is not.

System prompt: ftui adds none of its own. A conversation without a system turn is rendered as
the template renders it; SmolLM2's template then inserts its default ("You are a helpful AI
assistant named SmolLM, ...") exactly as llama.cpp and Ollama do at chat time, so training and
inference agree. `RunConfig.system_prompt`, when set, is added as the system turn to
conversations that have none (see `with_system_prompt`), and the export writes it into the
Modelfile so chat uses it too.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from engine.data.types import Conversation, Message

IGNORE_INDEX = -100
TEMPLATE_DATE = "26 Jul 2024"
"""`date_string` for templates that print a date (Llama 3.1/3.2's "Today Date"). 3.2's template
asks for today's date; a fixed one keeps a resumed run's tokens the same on another day and lets
the Ollama Modelfile, which cannot compute dates, send what training saw. It is the templates'
own fallback, and the date 3.1's template always uses."""


class RenderError(ValueError):
    """The chat template refused a conversation, or renders it inconsistently with its prefixes."""


@dataclass(frozen=True)
class Rendered:
    text: str
    """The exact text the model sees, special tokens included."""
    input_ids: tuple[int, ...]
    labels: tuple[int, ...]
    trained_spans: tuple[tuple[int, int], ...]
    """Character spans of `text` whose tokens carry loss."""
    last_turn_token: int
    """Token index where the final assistant turn's markup begins: left truncation may cut up
    to here and no further, so the answer being trained is never cut (0 for raw text)."""
    raw: bool = False


def with_system_prompt(conversation: Conversation, system_prompt: str) -> Conversation:
    if not system_prompt or conversation.raw_text is not None:
        return conversation
    if conversation.messages and conversation.messages[0].role == "system":
        return conversation
    return replace(conversation, messages=(Message("system", system_prompt), *conversation.messages))


def render_text(tokenizer: Any, conversation: Conversation) -> str:
    if conversation.raw_text is not None:
        return _raw_text(tokenizer, conversation.raw_text)
    return _apply(tokenizer, _dicts(conversation.messages))


def render(tokenizer: Any, conversation: Conversation, *, responses_only: bool = True) -> Rendered:
    """Tokenize one conversation with labels. Raises RenderError with a reason a person can act on."""
    if conversation.raw_text is not None:
        text = _raw_text(tokenizer, conversation.raw_text)
        ids = tuple(tokenizer(text, add_special_tokens=False)["input_ids"])
        return Rendered(text, ids, ids, ((0, len(text)),), 0, raw=True)

    messages = _dicts(conversation.messages)
    text = _apply(tokenizer, messages)
    spans = []
    last_turn_char = 0
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = _apply(tokenizer, messages[:i]) if i else ""
        prompt = _apply(tokenizer, messages[:i], add_generation_prompt=True)
        through = _apply(tokenizer, messages[: i + 1])
        if text.startswith(prompt) and text.startswith(through) and through.startswith(prompt):
            spans.append((len(prompt), len(through.rstrip())))
        else:
            spans.append(_span_in_place(tokenizer, messages, i, text))
        last_turn_char = len(before) if text.startswith(before) else spans[-1][0]

    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = tuple(encoding["input_ids"])
    offsets = encoding["offset_mapping"]
    last_turn_token = next((t for t, (start, _) in enumerate(offsets) if start >= last_turn_char), len(ids))
    if not responses_only:
        return Rendered(text, ids, ids, ((0, len(text)),), last_turn_token)
    labels = tuple(
        tok if any(s <= start < e for s, e in spans) else IGNORE_INDEX
        for tok, (start, _) in zip(ids, offsets, strict=True)
    )
    return Rendered(text, ids, labels, tuple(spans), last_turn_token)


REPLY_MARK = "ftuiReplyMark7f3a"
"""Stands in for one reply's content: plain letters, which no template trims or escapes."""


def _span_in_place(tokenizer: Any, messages: list[dict[str, str]], i: int, text: str) -> tuple[int, int]:
    """Reply `i`'s span for templates whose prefixes render differently from the whole: Mistral puts
    the system prompt in the last user turn, Qwen3 adds empty <think> tags to a final reply only,
    Phi-4-mini ends a rendering that has no generation prompt with eos. The conversation is
    rendered again with the reply's content replaced by a mark: what precedes and follows the mark
    must be the text's own start and end, and the reply lies between them, with the end-of-turn
    token that follows it."""
    marked = _apply(tokenizer, [*messages[:i], {**messages[i], "content": REPLY_MARK}, *messages[i + 1:]])
    head, found, tail = marked.partition(REPLY_MARK)
    if not found or not text.startswith(head) or not text.endswith(tail) or len(head) + len(tail) > len(text):
        raise RenderError(
            f"the chat template renders turn {i} differently on its own than inside the conversation, "
            "so the reply cannot be located for responses-only training (set train_on_responses_only = false)"
        )
    end = len(text) - len(tail)
    closing = next((m for m in end_of_turn_markers(tokenizer) if tail.startswith(m)), "")
    return len(head), end + len(closing)


def end_of_turn_markers(tokenizer: Any) -> tuple[str, ...]:
    """Texts that close a reply in the families ftui knows, the tokenizer's eos among them."""
    markers = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", tokenizer.eos_token or "")
    return tuple(m for m in markers if m)


def _dicts(messages: tuple[Message, ...]) -> list[dict[str, str]]:
    return [{"role": m.role, "content": m.content} for m in messages]


def _apply(tokenizer: Any, messages: list[dict[str, str]], add_generation_prompt: bool = False) -> str:
    if not getattr(tokenizer, "chat_template", None):
        raise RenderError("the tokenizer has no chat template: use an instruct model, or the `text` format")
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt,
                                             date_string=TEMPLATE_DATE)
    except Exception as exc:  # jinja's TemplateError and templates' own raise_exception() calls
        raise RenderError(f"the model's chat template refused this conversation: {exc}") from None


def _raw_text(tokenizer: Any, text: str) -> str:
    """Raw text gets the BOS the tokenizer would add (Llama-style models expect it) and ends
    with EOS, so continued pre-training still teaches where a document stops."""
    bos, eos = tokenizer.bos_token or "", tokenizer.eos_token or ""
    if bos and tokenizer.bos_token_id in tokenizer("", add_special_tokens=True)["input_ids"] and not text.startswith(bos):
        text = bos + text
    # A row already in chat markup (ChatML `...<|im_end|>\n`) ends with EOS but for its newline.
    return text if not eos or text.rstrip().endswith(eos) else text + eos
