"""Answer matching, exact retention, collapse and the findings, on scripted replies."""

import json
from pathlib import Path

import pytest

from engine.data.prompts import GeneralPrompt
from engine.data.types import Message
from engine.eval.retention import (
    ExactRetention,
    RetentionThresholds,
    answer_matches,
    collapse_reasons,
    collapse_share,
    diagnose_retention,
    dominant_prefix,
    exact_retention,
)

DATA = Path(__file__).resolve().parents[3] / "presets" / "data"
DOCKER_REPLIES = [json.loads(line)["messages"][-1]["content"]
                  for line in (DATA / "docker_train.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]

# What a small instruct model plausibly says to varied general prompts: different lengths and
# forms, two greetings alike, arithmetic in one template with different numbers.
VARIED = [
    "The capital of France is Paris.",
    "Tokyo is the capital of Japan.",
    "2 + 3 = 5",
    "The answer is 42.",
    "The answer is 15.",
    "The answer is 6.",
    "Bonjour!",
    "In Spanish, 'dog' is 'perro'.",
    "def add(a, b):\n    return a + b",
    "SELECT * FROM users;",
    "Hello! How can I help you today?",
    "Hello! How can I help you today?",
    "Why did the scarecrow win an award? Because he was outstanding in his field!",
    "The sky looks blue because air scatters blue sunlight more than red.",
    "Here are three fruits: apples, bananas and cherries.",
    "Waves fold on the shore / salt wind carries gull voices / the tide keeps its time",
    "HTML stands for HyperText Markup Language.",
    "You can use `pwd` to print the current working directory.",
    "Spiders have eight legs.",
    "I'm sorry to hear you're tired. Maybe a short walk or an early night would help.",
]


@pytest.mark.parametrize(("reply", "expected", "hit"), [
    ("The capital of France is Paris.", "paris", True),
    ("PARIS", "Paris", True),
    ("It's   au\n revoir!", "au revoir", True),
    ("2 + 2 = 4.", "4", True),
    ("The answer is 4", "4", True),
    ("There are four seasons.", "4", True),
    ("It is 14.", "4", False),
    ("fourteen", "4", False),
    ("About 4.5 hours.", "4", False),
    ("It boils at about 100.0 degrees.", "100", True),
    ("It is 100.05 degrees.", "100", False),
    ("Roughly 0.4 of it.", "4", False),
    ("That makes 2,000 in total.", "2000", True),
    ("That makes 20,000 in total.", "2000", False),
    ("-3 degrees", "-3", True),
    ("It is 25.", "25", True),
    ("Romeo loved Juliet.", "Rome", False),
    ("It is covered in snow.", "red", False),
    ("def add(a, b): return a + b", "def", True),
    ("The default value is zero.", "def", False),
    ("Water is H2O.", "h2o", True),
    ("anything", "  ", False),
])
def test_answer_matches(reply, expected, hit):
    assert answer_matches(reply, expected) is hit


def prompts(*expected):
    return [GeneralPrompt((Message("user", f"question {i}"),), e, "fact") for i, e in enumerate(expected)]


def test_the_base_against_itself_keeps_everything():
    ps = prompts("Paris", "4", None, "blue")
    replies = ["Paris.", "It is 4.", "Hi there!", "I am not sure."]
    assert exact_retention(ps, replies, replies) == ExactRetention(3, 2, 2, 2, 1.0)


def test_exact_retention_counts_what_the_tuned_model_kept():
    ps = prompts("Paris", "4", "blue", "Tokyo")
    base = ["Paris.", "4", "Blue.", "Kyoto"]
    tuned = ["Run: `docker ps`", "4", "Run: `docker ps`", "Tokyo"]
    result = exact_retention(ps, base, tuned)
    assert (result.base_right, result.tuned_right, result.tuned_kept) == (3, 2, 1)
    assert result.share == pytest.approx(1 / 3)


def test_exact_retention_is_undefined_when_the_base_knew_nothing():
    assert exact_retention(prompts("Paris"), ["London"], ["Paris"]).share is None
    with pytest.raises(ValueError, match="2 prompts but 1 base"):
        exact_retention(prompts("a", "b"), ["a"], ["a", "b"])


def test_docker_prefix_is_cut_at_a_word_boundary():
    assert dominant_prefix(DOCKER_REPLIES) == "run: `docker "
    # most replies start "docker c..." (compose, container, cp): not a prefix for `docker ps`
    assert dominant_prefix(["Run: `docker compose up`", "Run: `docker container ls`", "Run: `docker ps`"]) \
        == "run: `docker "
    assert dominant_prefix(["The sky is blue.", "The cat sat.", "Paris."]) == ""  # too short to mean anything
    assert dominant_prefix([]) == ""
    assert dominant_prefix(["Run: `ls`", "Sure thing: here it is"]) == ""  # one reply is no shared pattern


def test_every_answer_a_docker_command_is_full_collapse():
    assert collapse_share(["Run: `docker ps`"] * 20, DOCKER_REPLIES) == 1.0
    mixed = ["Run: `docker images`", "docker ps -a", *VARIED[:8]]
    assert collapse_reasons(mixed, DOCKER_REPLIES)[:2] == ["prefix", "training"]
    assert collapse_share(mixed, DOCKER_REPLIES) == pytest.approx(0.2)


def test_one_answer_to_everything_is_collapse_even_off_the_training_shape():
    assert collapse_share(["I don't know."] * 20, DOCKER_REPLIES) == 1.0
    assert collapse_share(["I don't know.", "i don't know", "I don't know!"] * 7, []) == 1.0
    # one answer to a third of the prompts is a mode; the rest still count as fine
    stuck = ["I don't know."] * 7 + VARIED[:13]
    assert collapse_reasons(stuck, DOCKER_REPLIES) == ["mode"] * 7 + [None] * 13


def test_varied_answers_do_not_collapse():
    assert collapse_reasons(VARIED, DOCKER_REPLIES) == [None] * len(VARIED)
    assert collapse_reasons(VARIED, VARIED[6:9]) == [None] * 6 + ["training"] * 3 + [None] * 11


def test_short_answers_in_a_training_template_count_so_compare_with_the_base():
    # "The answer is 6." is the shape of a training reply "The answer is 42." (similarity ~0.75)
    reasons = collapse_reasons(VARIED, ["The answer is 42.", "Paris."])
    assert reasons[3:6] == ["training"] * 3 and reasons.count(None) == len(VARIED) - 3
    assert collapse_share([], DOCKER_REPLIES) == 0.0


def test_healthy_figures_give_no_findings():
    assert diagnose_retention(ExactRetention(110, 50, 51, 47, 0.94), nll_increase=0.12, collapse=0.05) == []
    assert diagnose_retention() == []


def test_each_threshold_gives_its_finding():
    found = diagnose_retention(ExactRetention(110, 50, 20, 15, 0.3), nll_increase=1.2, collapse=1.0)
    assert [f.kind for f in found] == ["forgetting", "forgetting", "collapse"]
    assert "15 of the 50" in found[0].message and "30%" in found[0].message
    assert "1.20 nats/token" in found[1].message
    assert "100%" in found[2].message
    assert all("\n" not in f.message for f in found)
    assert "learning_rate" in found[0].advice and "retention_mix" in found[0].advice
    assert "varied" in found[2].advice and "retention_mix" in found[2].advice


def test_one_lost_answer_is_not_forgetting_and_the_base_collapse_is_subtracted():
    assert diagnose_retention(ExactRetention(110, 5, 4, 4, 0.8)) == []
    assert [f.kind for f in diagnose_retention(ExactRetention(110, 5, 3, 3, 0.6))] == ["forgetting"]
    assert diagnose_retention(collapse=0.25, base_collapse=0.2) == []
    assert diagnose_retention(collapse=0.25, thresholds=RetentionThresholds(max_collapse=0.3)) == []
    assert diagnose_retention(nll_increase=float("nan")) == []
