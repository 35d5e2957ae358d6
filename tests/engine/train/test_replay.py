"""Self-distillation replay: the base model's own answers to pool prompts, mixed into training,
deterministic for a seed, asked once per base model, and never the prompts retention scores."""

from __future__ import annotations

import json
import threading

import pytest

import engine.infer.base_answers as base_answers_module
from engine.data.prompts import read_prompt_file
from engine.events import Progress, TrainStarted
from engine.infer.base_answers import Answer
from engine.train import train
from engine.train.replay import REPLAY_POOL, base_conversations, replay_count
from tests.engine.train.test_train_api import api_config
from tests.engine.train.tiny import make_model_folder

GENERAL_EVAL = REPLAY_POOL.with_name("general_eval.jsonl")


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    return make_model_folder(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture
def asked(tmp_path, monkeypatch):
    """The base model at the boundary: every question it is asked, answered "A: <prompt>"; prompts
    about "poem" run past the length limit, as a long answer would."""
    monkeypatch.setenv("FTUI_CACHE", str(tmp_path / "cache"))
    log: list[str] = []

    def fake_answer(gguf, conversations, system, max_tokens, on_event=None, label=""):
        out = []
        for messages in conversations:
            prompt = messages[-1]["content"]
            log.append(prompt)
            out.append(Answer(f"A: {prompt}", "poem" not in prompt.lower()))
        return out

    monkeypatch.setattr(base_answers_module, "answer", fake_answer)
    monkeypatch.setattr(base_answers_module, "base_gguf_for", lambda ref, quant, on_event=None: tmp_path / "x.gguf")
    return log


def test_the_share_counts_replay_among_everything_trained():
    assert replay_count(172, 0.0) == 0
    assert replay_count(150, 0.25) == 50  # 50 of 200 trained examples
    assert replay_count(10, 0.5) == 10


def test_replay_is_deterministic_for_a_seed_and_asked_once(asked):
    first = base_conversations("base-model", "", 30, seed=7)
    asked_first = len(asked)
    again = base_conversations("base-model", "", 30, seed=7)
    other = base_conversations("base-model", "", 30, seed=8)

    assert len(first) == 30 and first == again
    assert len(asked) - asked_first <= len(other)  # the second call asked nothing new
    assert [c.messages[0].content for c in first] != [c.messages[0].content for c in other]
    assert all(c.messages[-1].content == f"A: {c.messages[0].content}" for c in first)


def test_answers_cut_at_the_limit_are_never_trained(asked):
    chosen = base_conversations("base-model", "", 200, seed=0)
    pool = read_prompt_file(REPLAY_POOL)
    long = [p for p in pool if "poem" in p.prompt.lower()]
    assert long, "the pool should hold some prompts with long answers"
    assert not any("poem" in c.messages[0].content.lower() for c in chosen)
    assert len(chosen) == min(200, len(pool) - len(long))


def test_retention_prompts_are_never_replayed(asked):
    scored = {p.prompt for p in read_prompt_file(GENERAL_EVAL)}
    replayed = base_conversations("base-model", "", 10_000, seed=0)
    assert replayed and not scored & {c.messages[0].content for c in replayed}
    assert not scored & set(asked)


@pytest.mark.slow
def test_training_mixes_replay_into_the_training_split_only(tmp_path, model_folder, asked):
    events: list = []
    config = api_config(tmp_path, model_folder, retention_mix=0.5, max_steps=1)
    result = train(config, events.append, threading.Event())

    assert result.status == "finished", result.reason
    started = next(e for e in events if isinstance(e, TrainStarted))
    task_train = 40 - started.val_examples
    assert started.train_examples == 2 * task_train  # half of what is trained is replay
    assert any(isinstance(e, Progress) and "replayed" in e.message for e in events)


@pytest.mark.slow
def test_own_general_data_replaces_the_base_answers(tmp_path, model_folder, asked):
    own = tmp_path / "general.jsonl"
    own.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"t{5 + i} t6"},
                                                    {"role": "assistant", "content": f"t{7 + i}"}]}) + "\n"
                           for i in range(50)))
    events: list = []
    config = api_config(tmp_path, model_folder, retention_mix=0.2, max_steps=1, retention_data=str(own))
    result = train(config, events.append, threading.Event())

    assert result.status == "finished", result.reason
    assert not asked  # the base model was not asked anything
    assert any(isinstance(e, Progress) and "general.jsonl" in e.message for e in events)


@pytest.mark.parametrize("objective", ["dpo", "orpo"])
def test_preference_runs_train_their_pairs_without_replay(tmp_path, model_folder, asked, objective):
    """A replayed conversation has no rejected reply to pair: a dpo or orpo run with the default
    retention_mix trains its pairs alone (the dpo preset did not start) and says so."""
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": f"t{3 + i} t4", "chosen": f"t{5 + i}", "rejected": f"t{9 + i}"}) + "\n"
                             for i in range(40)))
    events: list = []
    config = api_config(tmp_path, model_folder, objective=objective, dataset=str(pairs), retention_mix=0.25,
                        max_steps=1)
    result = train(config, events.append, threading.Event())

    assert result.status == "finished", result.reason
    assert not asked
    started = next(e for e in events if isinstance(e, TrainStarted))
    assert started.train_examples == 40 - started.val_examples
    assert any(isinstance(e, Progress) and f"retention_mix is not used by {objective}" in e.message for e in events)
