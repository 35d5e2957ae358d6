"""Preference rows feed DPO and ORPO; `data check` says which objectives a file can feed; bad data is refused."""

from __future__ import annotations

import json

import pytest

from engine.config.schema import RunConfig
from engine.data import check, load_conversations
from engine.data.prepare import prepare
from engine.data.readers import DatasetError
from engine.data.types import Message


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize(("name", "rejected_reply"), [
    ("preference.jsonl", " green."),
    ("preference_chat.jsonl", "It is green."),
    ("hh_rlhf.jsonl", "I don't know."),
])
def test_each_preference_shape_reads_the_rejected_side_after_the_same_prompt(fixture_path, name, rejected_reply):
    (first, *_) = load_conversations(fixture_path(name), pairs=True).conversations
    assert first.rejected is not None
    assert first.rejected[-1] == Message("assistant", rejected_reply)
    assert first.rejected[:-1] == first.messages[:-1]  # the prompt turns are the chosen side's


def test_trl_implicit_prompt_turns_read_as_their_own_conversation(fixture_path):
    implicit = load_conversations(fixture_path("preference_chat.jsonl"), pairs=True).conversations[-1]
    assert implicit.rejected == (Message("user", "Hi"), Message("assistant", "Go away."))


def test_the_user_mapping_names_the_chosen_and_rejected_columns(tmp_path):
    from engine.data.mapping import DataMapping

    path = write(tmp_path / "mine.jsonl", [{"question": "Sky?", "good": "Blue.", "bad": "Green."}] * 2)
    mapping = DataMapping.parse(("prompt=question", "chosen=good", "rejected=bad"))
    (first, _) = load_conversations(path, mapping=mapping, pairs=True).conversations
    assert first.messages[-1].content == "Blue." and first.rejected[-1].content == "Green."


def test_data_check_says_which_objectives_a_file_can_feed(tmp_path, fixture_path):
    assert check(fixture_path("preference.jsonl")).objectives == ("sft", "dpo", "orpo")
    assert check(fixture_path("hh_rlhf.jsonl")).objectives == ("sft", "dpo", "orpo")
    assert check(fixture_path("messages.jsonl")).objectives == ("sft",)
    chosen_only = write(tmp_path / "chosen.jsonl", [{"prompt": "Sky?", "chosen": "Blue."}])
    assert check(chosen_only).objectives == ("sft",)
    prompts = write(tmp_path / "prompts.jsonl", [{"prompt": "List containers", "expected": "docker ps"},
                                                 {"prompt": "Show images"}])
    report = check(prompts)
    assert report.objectives == ("grpo",) and report.refusal is None
    assert report.to_dict()["objectives"] == ["grpo"]
    conversations = write(tmp_path / "asked.jsonl", [
        {"messages": [{"role": "system", "content": "One command."}, {"role": "user", "content": "List containers"}],
         "expected": "docker ps"}])
    assert check(conversations).objectives == ("grpo",)  # messages ending with the user's turn
    answered = write(tmp_path / "answered.jsonl", [
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}])
    assert check(answered).objectives == ("sft",)


def test_a_dpo_run_on_conversations_is_refused_naming_the_file_and_the_field(fixture_path, tokenizer):
    path = fixture_path("messages.jsonl")
    with pytest.raises(DatasetError) as refused:
        prepare(RunConfig(dataset=path, objective="dpo"), tokenizer)
    assert path in refused.value.summary and "'rejected'" in refused.value.summary
    assert "objective = dpo" in refused.value.summary


def test_a_dpo_run_on_rows_without_rejected_replies_is_refused(tmp_path, tokenizer):
    path = write(tmp_path / "chosen.jsonl", [{"prompt": f"Q{i}?", "chosen": "A."} for i in range(4)])
    with pytest.raises(DatasetError) as refused:
        prepare(RunConfig(dataset=path, objective="orpo"), tokenizer)
    assert path in refused.value.summary and "'rejected'" in refused.value.summary
    assert any(p.field == "rejected" and "missing field 'rejected'" in p.message for p in refused.value.problems)


def test_sft_on_preference_rows_still_trains_on_the_chosen_reply_alone(tmp_path, tokenizer):
    rows = [{"prompt": f"Question {i}?", "chosen": f"Answer {i}.", "rejected": "No."} for i in range(4)]
    path = write(tmp_path / "pairs.jsonl", rows)
    sft = prepare(RunConfig(dataset=path, val_split=0), tokenizer)
    dpo = prepare(RunConfig(dataset=path, val_split=0, objective="dpo"), tokenizer)
    assert all(e.rejected is None for e in sft.train)
    assert [e.input_ids for e in dpo.train] == [e.input_ids for e in sft.train]
    pair = dpo.train[0]
    assert pair.rejected is not None and pair.rejected.input_ids != pair.input_ids
    assert "No." in tokenizer.decode([t for t in pair.rejected.labels if t != -100])
    # Both sides get the system prompt: the pair differs in its reply alone.
    prompted = prepare(RunConfig(dataset=path, val_split=0, objective="dpo", system_prompt="Be brief."), tokenizer)
    pair = prompted.train[0]
    assert "Be brief." in tokenizer.decode(pair.input_ids) and "Be brief." in tokenizer.decode(pair.rejected.input_ids)
