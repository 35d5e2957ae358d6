"""Text from datasets and models never reaches the terminal as escape sequences (OSC 52 sets the
clipboard, others retitle the window or redraw the screen): chat replies, dataset samples and
problems, evaluation answers and `ftui data preview` show it without them."""

from __future__ import annotations

import json

import pytest

from cli.main import main
from engine.data.types import DataProblem
from engine.display import printable

CLIPBOARD = "\x1b]52;c;Y3VybCBldmlsfHNo\x07"
TITLE = "\x1b]0;pwned\x1b\\"
RED = "\x1b[31m"


def test_printable_keeps_text_newlines_and_tabs_and_drops_what_a_terminal_acts_on():
    text = f"Run:{CLIPBOARD} `docker ps`\n\t{RED}done{TITLE}\r over\x9b2J\x07"
    assert printable(text) == "Run: `docker ps`\n\tdone over"
    assert printable("héllo — 日本語 🚀") == "héllo — 日本語 🚀"


def test_a_dataset_problem_quoting_a_row_is_printable():
    problem = DataProblem("data.jsonl", 3, f"role{CLIPBOARD}", f"unknown role 'x{TITLE}'")
    assert str(problem) == "data.jsonl:3: role: unknown role 'x'"


def test_data_preview_and_check_print_no_escape_sequences(tmp_path, capsys):
    data = tmp_path / "data.jsonl"
    row = {"messages": [{"role": "user", "content": f"hi{CLIPBOARD}"},
                        {"role": "assistant", "content": f"{RED}Run{TITLE}: `docker ps`"}]}
    data.write_text(json.dumps(row) + "\n")
    assert main(["data", "preview", str(data)]) == 0
    assert main(["data", "check", str(data)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "Run: `docker ps`" in out


def test_chat_streams_printable_pieces_and_keeps_the_reply_in_its_history():
    from engine.infer.chat import ChatSession
    from engine.models.embedded import embedded_gguf_path

    pieces = ["Run", f"{CLIPBOARD}: `docker", f" ps`{RED}"]
    with ChatSession(embedded_gguf_path(), max_tokens=4) as chat:
        chat._llm.create_chat_completion = lambda **_: iter(
            {"choices": [{"delta": {"content": p}}]} for p in pieces)
        shown = list(chat.send("How do I list containers?"))
        assert "".join(shown) == "Run: `docker ps`"
        assert chat.history[-1]["content"] == "".join(pieces)


@pytest.mark.slow
def test_chat_says_when_a_reply_ran_into_its_token_limit():
    from engine.infer.chat import ChatSession
    from engine.models.embedded import embedded_gguf_path

    with ChatSession(embedded_gguf_path(), temperature=0.0, max_tokens=3) as chat:
        list(chat.send("Write a long story about the sea."))
        assert chat.cut_short
    with ChatSession(embedded_gguf_path(), temperature=0.0, max_tokens=64) as chat:
        list(chat.send("Answer in one word: what colour is the sky on a clear day?"))
        assert not chat.cut_short
