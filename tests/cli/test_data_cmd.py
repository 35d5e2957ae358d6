"""`ftui data check` and `ftui data preview` as a user runs them."""

import json

import pytest

from cli.main import main


def test_check_json_of_a_bad_file_exits_non_zero(fixture_path, capsys):
    code = main(["data", "check", fixture_path("bad_unknown_role.jsonl"), "--no-tokenizer", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1
    assert (out["format"], out["rows"], out["usable_rows"]) == ("messages", 1, 0)
    assert out["problems"] == [{
        "file": fixture_path("bad_unknown_role.jsonl"), "line": 1, "field": "messages[1].role",
        "message": "unknown role 'assitant': expected system, user or assistant (did you mean 'assistant'?)",
    }]


def test_check_of_a_missing_file(capsys, tmp_path):
    code = main(["data", "check", str(tmp_path / "nope.jsonl"), "--no-tokenizer"])
    out = capsys.readouterr().out
    assert code == 1 and "nope.jsonl: file does not exist" in out and "Unusable" in out


def test_check_strict_refuses_what_the_default_accepts(tmp_path, capsys):
    good = json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]})
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join([good] * 30 + ["{bad"]) + "\n")
    assert main(["data", "check", str(path), "--no-tokenizer"]) == 0
    assert "30 usable" in capsys.readouterr().out
    assert main(["data", "check", str(path), "--no-tokenizer", "--strict", "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["refusal"] == "refused (strict): the first bad row"
    assert [p["line"] for p in out["problems"]] == [31]


@pytest.mark.slow
def test_check_demo_with_the_embedded_tokenizer(capsys, tokenizer):
    code = main(["data", "check", "presets/data/docker_train.jsonl", "--max-seq-len", "256"])
    out = capsys.readouterr().out
    assert code == 0
    assert "messages format, 172 rows, 172 usable" in out
    assert "Tokens per example (smollm2-135m): p50 " in out
    assert "<|im_start|>assistant\n«Run: `docker container ls`<|im_end|>»" in out
    assert out.rstrip().endswith("Usable for training.")


def test_preview_prints_the_template_rendering(fixture_path, capsys, tokenizer):
    code = main(["data", "preview", fixture_path("alpaca.jsonl"), "-n", "2"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.count("──── line ") == 2
    expected = tokenizer.apply_chat_template(
        [{"role": "system", "content": "You translate."}, {"role": "user", "content": "Translate to French.\n\ncat"},
         {"role": "assistant", "content": "chat"}], tokenize=False)
    assert f"──── line 2 ────\n{expected}" in out


@pytest.mark.parametrize("n", ["0", "-2"])
def test_preview_refuses_a_count_below_one_instead_of_printing_nothing(fixture_path, capsys, n):
    with pytest.raises(SystemExit) as exited:
        main(["data", "preview", fixture_path("alpaca.jsonl"), "-n", n])
    assert exited.value.code == 2
    assert f"argument -n: {n} shows no conversation; give 1 or more" in capsys.readouterr().err
