"""prepare(): refusal on too much bad data, fitting to max_seq_len, a deterministic split; check()."""

import json

import pytest

from engine.config.schema import RunConfig
from engine.data import DatasetError, check, prepare, split
from engine.data.render import IGNORE_INDEX
from engine.data.types import TokenizedExample
from engine.events import Progress


def _chat(user, reply):
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]}


def _write(tmp_path, rows, name="d.jsonl"):
    path = tmp_path / name
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return str(path)


def test_demo_dataset_prepares(tokenizer):
    events = []
    config = RunConfig(max_seq_len=256, val_split=0.1)
    data = prepare(config, tokenizer, events.append)
    assert data.format == "messages" and not data.problems and data.truncated == 0
    assert (len(data.train), len(data.val)) == (155, 17)
    progress = [e for e in events if isinstance(e, Progress) and e.stage == "tokenize"]
    assert progress[-1].done == progress[-1].total == 172
    for example in data.train:
        trained = [t for t in example.labels if t != IGNORE_INDEX]
        assert tokenizer.decode(trained).startswith("Run: `docker ") and trained[-1] == tokenizer.eos_token_id


def test_refuses_when_too_many_rows_are_bad(tmp_path, tokenizer):
    path = _write(tmp_path, [_chat("q1", "a1"), "{broken", _chat("q3", "a3")])
    with pytest.raises(DatasetError) as info:
        prepare(RunConfig(dataset=path, max_bad_share=0.05), tokenizer)
    assert "1 of 3 rows (33.3%) are bad, more than max_bad_share = 0.05" in str(info.value)
    assert [p.line for p in info.value.problems] == [2]
    data = prepare(RunConfig(dataset=path, max_bad_share=0.5, val_split=0), tokenizer)
    assert len(data.train) == 2 and [p.line for p in data.problems] == [2]


def test_no_usable_rows_is_refused(tmp_path, tokenizer):
    path = _write(tmp_path, ["{broken"])
    with pytest.raises(DatasetError, match="no usable rows out of 1"):
        prepare(RunConfig(dataset=path, max_bad_share=1.0), tokenizer)


def test_long_prompt_is_cut_from_the_left_and_the_answer_kept(tmp_path, tokenizer):
    long_prompt = "Please help. " * 60 + "How do I list all containers?"
    path = _write(tmp_path, [_chat(long_prompt, "Run: `docker ps -a`"), _chat("short", "Run: `docker images`")])
    full = prepare(RunConfig(dataset=path, val_split=0, max_seq_len=1024), tokenizer).train[0]
    data = prepare(RunConfig(dataset=path, val_split=0, max_seq_len=64), tokenizer)
    assert data.truncated == 1 and not data.problems
    cut = data.train[0]
    assert len(cut.input_ids) == 64
    assert cut.input_ids == full.input_ids[-64:] and cut.labels == full.labels[-64:]
    assert tokenizer.decode([t for t in cut.labels if t != IGNORE_INDEX]) == "Run: `docker ps -a`<|im_end|>"


def test_answer_longer_than_max_seq_len_is_dropped_and_reported(tmp_path, tokenizer):
    path = _write(tmp_path, [_chat("q", "word " * 80), _chat("q2", "Run: `docker images`")])
    data = prepare(RunConfig(dataset=path, val_split=0, max_seq_len=48, max_bad_share=0.0), tokenizer)
    assert len(data.train) == 1 and data.truncated == 0
    (problem,) = data.problems
    assert problem.line == 1 and "over max_seq_len = 48: dropped" in problem.message


def test_raw_text_keeps_its_beginning(tmp_path, tokenizer):
    path = _write(tmp_path, [{"text": "layer " * 100}])
    data = prepare(RunConfig(dataset=path, val_split=0, max_seq_len=32), tokenizer)
    assert data.format == "text" and data.truncated == 1
    assert data.train[0].labels == data.train[0].input_ids and len(data.train[0].input_ids) == 32


def test_system_prompt_from_config_is_trained_with(tmp_path, tokenizer):
    path = _write(tmp_path, [_chat("q", "a")])
    data = prepare(RunConfig(dataset=path, val_split=0, system_prompt="Answer with one command."), tokenizer)
    assert tokenizer.decode(data.train[0].input_ids).startswith("<|im_start|>system\nAnswer with one command.<|im_end|>")


def _examples(n):
    return [TokenizedExample((i, i + 1), (i, i + 1), i + 1) for i in range(n)]


def test_split_is_deterministic_and_sized():
    examples = _examples(100)
    train, val = split(examples, 0.1, seed=42)
    assert (len(train), len(val)) == (90, 10)
    assert split(examples, 0.1, seed=42) == (train, val)
    assert split(examples, 0.1, seed=7)[1] != val
    assert sorted(e.source_line for e in train + val) == list(range(1, 101))


def test_split_keeps_examples_on_their_side_when_rows_are_added_or_reordered():
    _, val = split(_examples(100), 0.1, seed=42)
    _, val_more = split(list(reversed(_examples(200))), 0.1, seed=42)
    assert {e.source_line for e in val} <= {e.source_line for e in val_more}


def test_split_edges():
    assert split(_examples(5), 0.0, seed=1) == (_examples(5), [])
    assert [len(part) for part in split(_examples(3), 0.1, seed=1)] == [2, 1]
    assert [len(part) for part in split(_examples(1), 0.1, seed=1)] == [1, 0]


def test_check_reports_lengths_problems_and_a_marked_sample(tmp_path, tokenizer):
    rows = [_chat("How do I list all containers?", "Run: `docker ps -a`")] * 19 + [{"messages": "oops"}]
    report = check(_write(tmp_path, rows), tokenizer=tokenizer, max_seq_len=40)
    assert (report.format, report.rows, report.usable_rows) == ("messages", 20, 19)
    assert report.refusal is None  # 5% bad is not over the 5% default
    assert [(p.line, p.field) for p in report.problems] == [(20, "messages")]
    assert report.lengths == (47,) * 19
    assert report.percentiles == {"p50": 47, "p90": 47, "p95": 47, "p99": 47, "max": 47}
    assert report.over_length == 19 and report.dropped == 0
    assert [s.text for s in report.sample if s.trained] == ["Run: `docker ps -a`<|im_end|>"]
    assert "".join(s.text for s in report.sample).startswith("<|im_start|>system\n")
    as_json = report.to_dict()
    assert as_json["problems"][0] == {"file": report.path, "line": 20, "field": "messages",
                                      "message": "expected a list of turns, got str: 'oops'"}


def test_check_refuses_over_the_bad_share(tmp_path):
    report = check(_write(tmp_path, [_chat("q", "a"), "{bad", "{bad"]))
    assert report.usable_rows == 1 and report.refusal.startswith("2 of 3 rows (66.7%) are bad")


def test_check_of_an_unreadable_file_is_a_report(tmp_path):
    report = check(str(tmp_path / "missing.jsonl"))
    assert (report.rows, report.usable_rows, report.format) == (0, 0, "unknown")
    assert report.refusal and report.problems[0].message == "file does not exist"


def test_percentiles_are_nearest_rank():
    from engine.data.check import _percentiles

    assert _percentiles(list(range(100, 0, -1))) == {"p50": 50, "p90": 90, "p95": 95, "p99": 99, "max": 100}
    assert _percentiles([7]) == {"p50": 7, "p90": 7, "p95": 7, "p99": 7, "max": 7}
    assert _percentiles([]) is None


def test_check_finds_project_data_by_its_preset_path(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    report = check("presets/data/docker_train.jsonl")
    assert (report.rows, report.refusal) == (172, None)
