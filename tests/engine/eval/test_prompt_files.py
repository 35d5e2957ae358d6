"""The general prompt sets: they parse, are big enough, and share nothing with each other or the task."""

import json
import re
import string
from collections import Counter
from pathlib import Path

import pytest

from engine.data.prompts import KINDS, read_prompt_file
from engine.data.readers import DatasetError
from engine.eval.retention import answer_matches

DATA = Path(__file__).resolve().parents[3] / "presets" / "data"
EVAL = DATA / "general_eval.jsonl"
REPLAY = DATA / "general_replay.jsonl"
DOCKER_WORDS = re.compile(
    r"\b(docker\w*|containers?|images?|compose|volumes?|registry|registries|kubernetes|k8s|daemon|swarm|nginx)\b", re.I)


def normalised(text: str) -> str:
    return " ".join(text.lower().translate(str.maketrans("", "", string.punctuation)).split())


def user_prompts(path: Path) -> list[str]:
    """The user turns of a file's rows: conversations, or preference rows' `prompt` (TRL's form)."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [m["content"] for row in rows
            for m in row.get("messages") or [{"role": "user", "content": row["prompt"]}] if m["role"] == "user"]


@pytest.fixture(scope="module")
def general():
    return read_prompt_file(EVAL)


@pytest.fixture(scope="module")
def replay():
    return read_prompt_file(REPLAY)


def test_eval_set_size_and_mix(general):
    kinds = Counter(p.kind for p in general)
    assert len(general) >= 160
    assert set(kinds) == set(KINDS)
    assert kinds["fact"] >= 45 and kinds["arithmetic"] >= 25 and min(kinds.values()) >= 15, kinds
    scored = [p for p in general if p.expected is not None]
    assert 100 <= len(scored) <= 125
    assert all(p.expected is None for p in general if p.kind == "smalltalk")


def test_expected_answers_are_short_and_not_given_away(general):
    for p in general:
        if p.expected is None:
            continue
        assert len(p.expected) <= 16 and len(p.expected.split()) <= 2, p
        if p.kind != "instruction":  # "Reply with only the word yes" names its answer on purpose
            assert not answer_matches(p.prompt, p.expected), f"{p.prompt!r} already contains {p.expected!r}"
        if any(c.isdigit() for c in p.expected):
            assert p.expected.isdigit() or p.kind == "fact", p  # numbers as digits


def test_replay_pool_size(replay):
    assert len(replay) >= 200
    assert set(p.kind for p in replay) == set(KINDS)


def test_no_prompt_is_shared_between_sets_or_with_the_task():
    eval_prompts = [normalised(p) for p in user_prompts(EVAL)]
    replay_prompts = [normalised(p) for p in user_prompts(REPLAY)]
    docker = {normalised(p) for f in DATA.glob("docker_*.jsonl") for p in user_prompts(f)}
    assert docker, "the Docker demo files are missing"
    assert len(set(eval_prompts)) == len(eval_prompts)
    assert len(set(replay_prompts)) == len(replay_prompts)
    assert not set(eval_prompts) & set(replay_prompts)
    assert not (set(eval_prompts) | set(replay_prompts)) & docker


@pytest.mark.parametrize("path", [EVAL, REPLAY], ids=lambda p: p.name)
def test_general_prompts_avoid_docker_vocabulary(path):
    assert [p for p in user_prompts(path) if DOCKER_WORDS.search(p)] == []


def test_bad_lines_are_named_by_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join([
        json.dumps({"messages": [{"role": "user", "content": "Hi"}], "kind": "smalltalk"}),
        "{not json",
        json.dumps({"messages": [{"role": "user", "content": "Hi"}], "kind": "chitchat"}),
        json.dumps({"messages": [{"role": "assistant", "content": "Hi"}], "kind": "fact"}),
        json.dumps({"messages": [{"role": "user", "content": "2+2?"}], "expect": "4", "kind": "arithmetic"}),
        json.dumps({"messages": [{"role": "user", "content": "2+2?"}], "expected": 4, "kind": "arithmetic"}),
        json.dumps({"messages": [], "kind": "fact"}),
    ]) + "\n", encoding="utf-8")
    with pytest.raises(DatasetError) as caught:
        read_prompt_file(path)
    text = str(caught.value)
    assert f"{path}:1" not in text
    assert f"{path}:2: malformed JSON" in text
    assert f"{path}:3: kind: must be one of" in text
    assert f"{path}:4: messages: must end with a user turn" in text
    assert f"{path}:5: expect: unknown field (did you mean 'expected'?)" in text
    assert f"{path}:6: expected: must be non-empty text" in text
    assert f"{path}:7: messages: must be a non-empty list" in text


def test_a_good_file_reads_back(tmp_path):
    path = tmp_path / "ok.jsonl"
    path.write_text(json.dumps({"messages": [{"role": "system", "content": "Be brief."},
                                             {"role": "user", "content": "Capital of France?"}],
                                "expected": " Paris ", "kind": "fact"}) + "\n", encoding="utf-8")
    [prompt] = read_prompt_file(path)
    assert (prompt.prompt, prompt.expected, prompt.kind, prompt.source_line) == ("Capital of France?", "Paris", "fact", 1)
    assert prompt.message_dicts()[0] == {"role": "system", "content": "Be brief."}
    assert prompt.answered("Paris.").messages[-1].content == "Paris."
