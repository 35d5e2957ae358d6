"""A thinking model's reply (Qwen3's `<think>...</think>` before the answer): the chat shows the
answer as it streams and holds back the reasoning, and evaluation scores the answer alone."""

from __future__ import annotations

import pytest

from engine.eval.retention import answer_matches
from engine.infer.chat import cut_at_stops
from engine.infer.thinking import AnswerStream, answer_only, split_thinking

REPLY = "<think>\nThe user asks for the capital. France's is Paris.\n</think>\n\nThe capital is Paris."


def test_the_reasoning_is_not_the_answer():
    split = split_thinking(REPLY)
    assert split.thinking == "The user asks for the capital. France's is Paris."
    assert split.answer == "The capital is Paris."
    assert split_thinking("<think>\n\n</think>\n\nLyon.") == split_thinking("Lyon.")  # thinking off: no reasoning
    # Cut at the token limit mid-thought: nothing was answered, though the trace names the answer.
    cut = split_thinking("<think>\nFrance's capital is Paris, so")
    assert cut.answer == "" and not cut.thinking_done
    assert not answer_matches(answer_only("<think>\nFrance's capital is Paris, so"), "Paris")


@pytest.mark.parametrize("size", [1, 2, 3, 5, 100])
def test_the_stream_shows_only_the_answer_whatever_the_piece_boundaries(size):
    stream = AnswerStream()
    shown = "".join(stream.feed(REPLY[i:i + size]) for i in range(0, len(REPLY), size))
    assert shown == "The capital is Paris."
    plain = AnswerStream()
    assert "".join(plain.feed(p) for p in ["<", "b>bold</b> text"]) == "<b>bold</b> text"  # not a thinking tag


def test_a_reply_that_writes_the_next_turn_is_cut_there():
    assert cut_at_stops("docker ps<|im_start|>user\nthanks", False, ("<|im_start|>", "<|im_end|>")) == ("docker ps", True)
    assert cut_at_stops("docker ps", False, ("[INST]",)) == ("docker ps", False)


def test_a_reply_without_reasoning_streams_unchanged():
    stream = AnswerStream()
    assert "".join(stream.feed(p) for p in [" looking", " at", " it\n"]) == " looking at it\n"
