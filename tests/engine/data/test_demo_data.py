"""The shipped Docker demo data: clean, in one answer format, and an honest held-out evaluation."""

import json
import re

from engine.data import load_conversations
from engine.files.paths import PROJECT_ROOT

TRAIN = PROJECT_ROOT / "presets" / "data" / "docker_train.jsonl"
EVAL = PROJECT_ROOT / "presets" / "data" / "docker_eval.jsonl"
ANSWER = re.compile(r"^Run: `(docker [^`]+)`$")


def _norm(text):
    return " ".join(text.lower().split())


def _train():
    result = load_conversations(str(TRAIN))
    assert result.format == "messages" and not result.problems
    return result.conversations


def _eval():
    return [json.loads(line) for line in EVAL.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_sizes():
    assert len(_train()) >= 150
    assert len(_eval()) >= 30


def test_every_answer_is_one_command_in_the_fixed_format():
    for conversation in _train():
        assert [m.role for m in conversation.messages] == ["user", "assistant"]
        assert ANSWER.match(conversation.messages[1].content), conversation.messages[1].content


def test_eval_rows_have_a_prompt_and_an_expected_command():
    for row in _eval():
        assert [m["role"] for m in row["messages"]] == ["user"] and row["messages"][0]["content"].strip()
        assert row["expected"].startswith("docker ") and "`" not in row["expected"]


def test_no_eval_prompt_appears_in_training():
    seen = {_norm(c.messages[0].content) for c in _train()}
    assert not [row for row in _eval() if _norm(row["messages"][0]["content"]) in seen]


def test_every_eval_command_is_taught_by_several_paraphrases():
    taught: dict[str, int] = {}
    for conversation in _train():
        command = ANSWER.match(conversation.messages[1].content).group(1)
        taught[command] = taught.get(command, 0) + 1
    for row in _eval():
        assert taught.get(row["expected"], 0) >= 3, row["expected"]


def test_scoring_by_containment_cannot_credit_a_different_command():
    """`ftui eval` scores "reply contains the expected command": no command may contain another."""
    commands = [row["expected"] for row in _eval()]
    assert len(set(commands)) == len(commands)
    assert not [(a, b) for a in commands for b in commands if a != b and a in b]


def _trigrams(text):
    text = f" {_norm(text)} "
    return {text[i:i + 3] for i in range(len(text) - 2)}


def test_no_training_prompt_is_a_near_copy_of_an_eval_prompt():
    """Held out means other wording, not an eval sentence with a word or two changed: every pair's
    character-trigram Dice similarity stays under 0.7 ("How can I halt the web container without
    killing it forcefully?" against the eval's "How can I halt the container web without killing
    it?" scores 0.85 and was left out of the data)."""
    train = [_trigrams(c.messages[0].content) for c in _train()]
    for row in _eval():
        prompt = _trigrams(row["messages"][0]["content"])
        closest = max(2 * len(prompt & t) / (len(prompt) + len(t)) for t in train)
        assert closest < 0.7, row["messages"][0]["content"]
