"""A thinking model's reasoning apart from its answer, whole or as the reply streams.

Qwen3 writes `<think>...</think>` before its answer (empty when thinking is off, as a model tuned
on answers without reasoning learns to write it). The chat shows or hides that part; evaluation
and replay score only the answer, since a reasoning trace that mentions the expected answer has
not given it, and a trace is not the shape of an answer.
"""

from __future__ import annotations

from dataclasses import dataclass

OPEN, CLOSE = "<think>", "</think>"


@dataclass(frozen=True)
class Split:
    thinking: str
    """The reasoning between the tags, stripped ("" for a reply without any)."""
    answer: str
    """What follows the reasoning, stripped of the blank lines the template puts after `</think>`."""
    thinking_done: bool = True
    """False while (or when) the reply stopped inside its reasoning: no answer has begun."""


def split_thinking(text: str) -> Split:
    """`text` as reasoning and answer. A reply that opens `<think>` and never closes it is all
    reasoning (cut at the token limit mid-thought): its answer is empty, not the trace."""
    head = text.lstrip()
    if not head.startswith(OPEN):
        # Qwen3 with thinking forced on may start inside the block: the prompt wrote `<think>`.
        if CLOSE in text and OPEN not in text:
            thinking, _, answer = text.partition(CLOSE)
            return Split(thinking.strip(), answer.strip())
        return Split("", text.strip())
    body = head[len(OPEN):]
    if CLOSE not in body:
        return Split(body.strip(), "", thinking_done=False)
    thinking, _, answer = body.partition(CLOSE)
    return Split(thinking.strip(), answer.strip())


def answer_only(text: str) -> str:
    return split_thinking(text).answer


class AnswerStream:
    """Passes on the answer part of streamed pieces and holds back the reasoning, for a terminal
    that prints as the reply arrives: `feed` returns what can be shown now. A tag split over two
    pieces is held until it is whole."""

    def __init__(self) -> None:
        self.text = ""
        self._shown = 0

    def feed(self, piece: str) -> str:
        self.text += piece
        split = split_thinking(self.text)
        if not split.thinking_done or self._undecided():
            return ""
        if self._shown == 0 and CLOSE in self.text:  # the answer starts after the blank lines that follow </think>
            answer = self.text[self.text.index(CLOSE) + len(CLOSE):].lstrip()
            if not answer:
                return ""
            self._shown = len(self.text) - len(answer)
        new = self.text[self._shown:]
        self._shown = len(self.text)
        return new

    @property
    def thought(self) -> bool:
        """The reply has opened a reasoning block (the face can say it is thinking)."""
        return self.text.lstrip().startswith(OPEN)

    def _undecided(self) -> bool:
        """The reply so far could still turn out to open with `<think>`."""
        head = self.text.lstrip()
        return self._shown == 0 and len(head) < len(OPEN) and OPEN.startswith(head)
