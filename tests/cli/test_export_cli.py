"""`ftui export`, `ftui chat` and `ftui eval` through cli.main.main, as a user runs them.

The model is a tiny random Llama with the SmolLM2 tokenizer: its answers are gibberish and it
never says <|im_end|>, so quantised files fail verification (the command must say so) while
F16 passes. Chat reads a scripted stdin; a recording ChatSession shows what reached the model.
"""

from __future__ import annotations

import io
import json
import re
import sys

import pytest

import engine.infer.chat
from cli.main import main
from engine.config.schema import RunConfig, load_toml
from tests.engine.export.conftest import make_run, make_tiny_model

pytestmark = pytest.mark.slow

SYSTEM = "You answer in one line."
TABLE_HEADER = ["file", "tokens", "agree", "max|dlogit|", "stops", "result"]


@pytest.fixture(scope="module")
def base_model(tmp_path_factory, tokenizer_dir):
    return make_tiny_model(tmp_path_factory.mktemp("cli-base") / "base", tokenizer_dir)


@pytest.fixture
def fresh_run(tmp_path, base_model):
    return make_run(tmp_path / "runs" / "2026-01-01-0000-tiny", base_model, system_prompt=SYSTEM)


@pytest.fixture(scope="module")
def exported_run(tmp_path_factory, base_model):
    """A run already exported as F16 (which passes verification), shared by chat and eval."""
    from engine.export import export

    run = make_run(tmp_path_factory.mktemp("cli-runs") / "2026-01-01-0000-tiny", base_model, system_prompt=SYSTEM)
    assert export(run, quants=("F16",)).passed
    return run


@pytest.fixture
def recorded(monkeypatch):
    """Replace ChatSession with one that records (system prompt, history length, message, reply) per send."""
    sessions = []

    class RecordingSession(engine.infer.chat.ChatSession):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.sent = []
            sessions.append(self)

        def send(self, text):
            entry = [self.system_prompt, len(self.history), text, ""]
            self.sent.append(entry)
            for piece in super().send(text):
                entry[3] += piece
                yield piece

    monkeypatch.setattr(engine.infer.chat, "ChatSession", RecordingSession)
    return sessions


def type_in(monkeypatch, *lines):
    monkeypatch.setattr(sys, "stdin", io.StringIO("".join(f"{line}\n" for line in lines)))


def table_rows(out):
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split() == TABLE_HEADER)
    rows = []
    for line in lines[start + 1:]:
        if not line.strip():
            break
        rows.append(line)
    return rows


def test_export_writes_lists_and_verifies_f16_then_gives_the_ollama_line(fresh_run, capsys):
    assert main(["export", str(fresh_run), "--quant", "F16"]) == 0
    captured = capsys.readouterr()
    out_dir = fresh_run / "export"
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "Modelfile", "merged", "model-F16.Modelfile", "model-F16.gguf", "verify.json"]
    assert f"wrote {out_dir / 'merged'} (" in captured.err
    assert f"wrote {out_dir / 'model-F16.gguf'} (" in captured.err
    [row] = table_rows(captured.out)
    name, tokens, agree, diff, stops, result = row.split()
    assert (name, tokens, result) == ("model-F16.gguf", "same", "ok")
    assert float(agree.rstrip("%")) >= 95 and float(diff) < 1
    assert (f"Export folder: {out_dir}  (Ollama: cd there and `ollama create NAME -f Modelfile`)"
            in captured.out.splitlines())
    modelfile = (out_dir / "Modelfile").read_text()
    assert modelfile.splitlines()[0] == "FROM ./model-F16.gguf" and SYSTEM in modelfile
    assert [f["passed"] for f in json.loads((out_dir / "verify.json").read_text())["files"]] == [True]


def test_export_of_the_runs_own_quants_reports_failed_verification(fresh_run, tmp_path, capsys):
    quants = RunConfig.from_dict(load_toml(fresh_run / "config.toml")).export_quants
    out_dir = tmp_path / "elsewhere"
    assert main(["export", str(fresh_run), "--out", str(out_dir)]) == 1
    captured = capsys.readouterr()
    for quant in ("F16", *quants):
        assert (out_dir / f"model-{quant}.gguf").is_file()
        assert f"wrote {out_dir / f'model-{quant}.gguf'} (" in captured.err
    rows = table_rows(captured.out)
    assert [r.split()[0] for r in rows] == [f"model-{q}.gguf" for q in ("F16", *quants)]
    assert rows[0].endswith("ok")
    # A random model never ends its turn: the quantised file must be marked, and not offered to Ollama.
    assert all("FAILED:" in r and "end-of-turn" in r for r in rows[1:])
    assert "ollama create" not in captured.out
    assert f"Verification failed: the files in {out_dir} are kept for inspection; do not ship them" in captured.out
    assert not (fresh_run / "export").exists()


def test_chat_with_a_run_answers_a_scripted_session_and_quits(exported_run, recorded, monkeypatch, capsys):
    type_in(monkeypatch, "How do I list containers?", "And images?", "/system Answer with one command.",
            "And volumes?", "/reset", "/help", "", "And networks?", "/quit", "never sent")
    assert main(["chat", str(exported_run), "--max-tokens", "8", "--temperature", "0"]) == 0
    out = capsys.readouterr().out
    gguf = exported_run / "export" / "model-F16.gguf"
    assert re.match(rf"Chatting with {re.escape(str(gguf))} \((CPU|GPU)\)\. Commands: /reset", out)
    [session] = recorded
    assert [tuple(s[:3]) for s in session.sent] == [
        (SYSTEM, 0, "How do I list containers?"),  # the run's system prompt by default
        (SYSTEM, 2, "And images?"),  # the conversation is kept
        ("Answer with one command.", 0, "And volumes?"),  # /system sets it and starts over
        ("Answer with one command.", 0, "And networks?"),  # /reset starts over, keeps the system prompt
    ]
    for *_, reply in session.sent:
        assert f"model> {reply}\n" in out
    assert out.count("model> ") == 4
    assert "(system prompt set; conversation cleared)" in out and "(conversation cleared)" in out
    assert "Commands: /reset clears" in out.split("(conversation cleared)")[-1]  # /help shows the help
    assert session._llm is None  # closed on the way out


def test_chat_with_a_gguf_ends_cleanly_at_end_of_input(exported_run, recorded, monkeypatch, capsys):
    gguf = exported_run / "export" / "model-F16.gguf"
    type_in(monkeypatch, "hello")
    assert main(["chat", str(gguf), "--system", "Be brief.", "--max-tokens", "4", "--temperature", "0"]) == 0
    out = capsys.readouterr().out
    [session] = recorded
    assert [tuple(s[:3]) for s in session.sent] == [("Be brief.", 0, "hello")]
    assert out.count("model> ") == 1 and out.endswith("you> \n")
    assert session._llm is None


def test_eval_prints_side_by_side_table_and_saves_scores(exported_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FTUI_CACHE", str(tmp_path / "cache"))  # the base GGUF is cached here, not in ~/.cache
    general = tmp_path / "general.jsonl"  # a random tiny model never stops: four prompts, not 160, keep it short
    general.write_text("".join(json.dumps({"messages": [{"role": "user", "content": p}], "expected": e,
                                           "kind": "fact"}) + "\n"
                               for p, e in [("Capital of France?", "Paris"), ("2 + 2?", "4"),
                                            ("Colour of the sky?", "blue"), ("Opposite of hot?", "cold")]))
    monkeypatch.setattr("engine.eval.evaluate.GENERAL_EVAL", general)
    eval_file = tmp_path / "held_out.jsonl"
    prompts = {"How do I list running containers?": "docker ps", "How do I remove an image?": "docker rmi"}
    eval_file.write_text("".join(json.dumps({"messages": [{"role": "user", "content": p}], "expected": e}) + "\n"
                                 for p, e in prompts.items()) + "not json\n")
    assert main(["eval", str(exported_run), "--eval-file", str(eval_file), "--max-tokens", "8"]) == 0
    captured = capsys.readouterr()
    saved = json.loads((exported_run / "eval.json").read_text())
    assert saved["eval_file"] == str(eval_file) and saved["quant"] == "F16"
    assert [(i["prompt"], i["expected"]) for i in saved["items"]] == list(prompts.items())
    for side in ("base", "tuned"):
        hits = [i[f"{side}_hit"] for i in saved["items"]]
        assert saved[f"{side}_score"] == sum(hits) / len(hits)
        assert saved[f"{side}_val_loss"] > 0 and saved[f"{side}_perplexity"] > 1
    assert saved["skipped"] == [f"{eval_file}:3: not valid JSON (Expecting value)"]

    lines = captured.out.splitlines()
    assert [c.strip() for c in lines[0].split("|")] == ["prompt", "base", "fine-tuned"]
    for line, item in zip(lines[2:4], saved["items"], strict=True):
        prompt, base, tuned = (c.strip() for c in line.split("|"))
        assert prompt == item["prompt"]
        assert base.startswith("✓" if item["base_hit"] else "✗")
        assert tuned.startswith("✓" if item["tuned_hit"] else "✗")
    assert (f"Expected command in the reply (2 held-out prompts, F16 GGUFs, greedy): "
            f"base {saved['base_score']:.0%} -> fine-tuned {saved['tuned_score']:.0%}") in lines
    assert f"Validation loss ({saved['val_examples']} examples): base {saved['base_val_loss']:.3f}" in captured.out
    assert lines[-1] == f"Saved {exported_run}/eval.json"
    retention = saved["retention"]
    assert retention["prompts"] == 4 and retention["exact"]["scored"] == 4
    assert 0 <= retention["tuned_collapse"] <= 1 and len(retention["items"]) == 4
    assert "Retention (4 general prompts, never trained on)" in captured.out
    assert f"skipped {eval_file}:3: not valid JSON" in captured.err
    assert list((tmp_path / "cache" / "base-gguf").glob("*/model-F16.gguf"))


BAD_INPUTS = [
    (["export", "{missing}"], "{missing}: no such run directory"),
    (["export", "{notrun}"], "{notrun} is not a run directory (no config.toml)"),
    (["export", "{badconfig}", "--quant", "F16"], "learning_rat: unknown key in {badconfig}/config.toml"),
    (["export", "{run}", "--quant", "Q8_0,Q3_X"], "unknown GGUF type(s) Q3_X\n  choose from F16, BF16, Q8_0"),
    (["chat", "{missing}.gguf"], "{missing}.gguf: no such file"),
    (["chat", "{missing}"], "{missing}: no such run directory or .gguf file"),
    (["chat", "{notrun}"], "{notrun} is not a run directory (no config.toml)"),
    (["chat", "{notrun}/notes.txt"], "{notrun}/notes.txt is neither a .gguf file nor a run directory"),
    (["eval", "{missing}"], "{missing}: no such run directory"),
    (["eval", "{notrun}"], "{notrun} is not a run directory (no config.toml)"),
    (["eval", "{badconfig}"], "learning_rat: unknown key in {badconfig}/config.toml"),
    (["eval", "{run}", "--eval-file", "{missing}.jsonl"], "{missing}.jsonl"),
]


@pytest.mark.parametrize(("argv", "message"), BAD_INPUTS, ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_bad_inputs_get_a_message_naming_them_and_exit_2(argv, message, exported_run, tmp_path, capsys):
    notrun = tmp_path / "notes"
    notrun.mkdir()
    (notrun / "notes.txt").write_text("not a model\n")
    badconfig = tmp_path / "badconfig"
    badconfig.mkdir()
    (badconfig / "config.toml").write_text(
        (exported_run / "config.toml").read_text() + "learning_rat = 0.001\n")
    paths = {"missing": tmp_path / "no-such-run", "notrun": notrun, "badconfig": badconfig, "run": exported_run}
    export_before = sorted(p.name for p in (exported_run / "export").iterdir())
    assert main([a.format(**paths) for a in argv]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("ftui: ") and message.format(**paths) in captured.err
    assert "Traceback" not in captured.err and captured.out == ""
    assert sorted(p.name for p in (exported_run / "export").iterdir()) == export_before


def test_chat_skips_a_line_that_is_not_utf8_and_says_which_byte(exported_run, recorded, monkeypatch, capsys):
    """A latin-1 terminal sends 'café' as caf\\xe9: a UnicodeDecodeError traceback out of input()."""
    raw = b"caf\xe9 au lait\nhello\n/quit\n"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8"))
    assert main(["chat", str(exported_run), "--max-tokens", "4", "--temperature", "0"]) == 0
    captured = capsys.readouterr()
    [session] = recorded
    assert [s[2] for s in session.sent] == ["hello"]
    assert "(skipped that line: byte 0xE9 is not UTF-8" in captured.out
    assert "Traceback" not in captured.out + captured.err


def test_export_into_a_folder_ftui_did_not_write_is_refused_and_touches_nothing(exported_run, tmp_path, capsys):
    mine = tmp_path / "mine"
    (mine / "merged").mkdir(parents=True)
    (mine / "merged" / "weights.safetensors").write_text("someone's model")
    (mine / ".draft.partial").write_text("someone's half-written file")
    before = sorted(p.relative_to(mine).as_posix() for p in mine.rglob("*"))

    assert main(["export", str(exported_run), "--quant", "F16", "--out", str(mine)]) == 2
    err = capsys.readouterr().err
    assert f"{mine} already holds files ftui did not write (.draft.partial, merged/)" in err
    assert sorted(p.relative_to(mine).as_posix() for p in mine.rglob("*")) == before
    assert (mine / "merged" / "weights.safetensors").read_text() == "someone's model"

    again = tmp_path / "new"
    assert main(["export", str(exported_run), "--quant", "F16", "--out", str(again)]) == 0
    assert main(["export", str(exported_run), "--quant", "F16", "--out", str(again)]) == 0  # its own, marked


def test_chat_prints_a_thinking_models_answer_and_its_reasoning_only_on_request(exported_run, monkeypatch, capsys):
    class Thinking(engine.infer.chat.ChatSession):  # Qwen3's reply shape, in pieces that split the tags
        def send(self, text):
            yield from ["<think>\nFrance", "'s capital is Paris.\n</th", "ink>\n\n", "Paris."]

    monkeypatch.setattr(engine.infer.chat, "ChatSession", Thinking)
    type_in(monkeypatch, "Capital of France?")
    assert main(["chat", str(exported_run), "--max-tokens", "4"]) == 0
    out = capsys.readouterr().out
    assert "model> (thinking; --show-thinking prints it) Paris.\n" in out and "capital is" not in out
    type_in(monkeypatch, "Capital of France?")
    assert main(["chat", str(exported_run), "--max-tokens", "4", "--show-thinking"]) == 0
    assert "model> <think>\nFrance's capital is Paris.\n</think>\n\nParis.\n" in capsys.readouterr().out


def test_chat_compare_has_the_base_answer_too_at_the_runs_type(exported_run, recorded, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FTUI_CACHE", str(tmp_path / "cache"))
    type_in(monkeypatch, "How do I list containers?", "/quit")
    assert main(["chat", str(exported_run), "--compare", "--max-tokens", "4", "--temperature", "0"]) == 0
    out = capsys.readouterr().out
    tuned, base = recorded
    assert base.path.name == tuned.path.name == "model-F16.gguf" and base.path.is_relative_to(tmp_path / "cache")
    assert f"Base model: {base.path} (F16, as the fine-tuned file)" in out
    assert out.count("model> ") == 1 and out.count("base> ") == 1
    assert base.sent[0][2] == "How do I list containers?" and base._llm is None
    gguf = exported_run / "export" / "model-F16.gguf"
    assert main(["chat", str(gguf), "--compare"]) == 2
    assert "--compare needs a run directory" in capsys.readouterr().err
