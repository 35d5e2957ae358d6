"""Loading every supported format, and every kind of bad input reported with its line and field."""

import json

import pytest

from engine.data import DatasetError, load_conversations
from engine.data.types import Message


def test_messages_jsonl(fixture_path):
    result = load_conversations(fixture_path("messages.jsonl"))
    assert (result.format, result.rows, result.problems) == ("messages", 3, ())
    assert result.conversations[0].messages == (
        Message("user", "How do I list all containers?"), Message("assistant", "Run: `docker ps -a`"))
    assert [m.role for m in result.conversations[1].messages] == ["system", "user", "assistant", "user", "assistant"]
    assert result.conversations[2].messages[0].content == "Say hi"  # OpenAI text parts are joined


def test_alpaca_maps_input_and_system(fixture_path):
    result = load_conversations(fixture_path("alpaca.jsonl"))
    assert result.format == "alpaca" and not result.problems
    assert result.conversations[1].messages == (
        Message("system", "You translate."), Message("user", "Translate to French.\n\ncat"), Message("assistant", "chat"))
    assert result.conversations[2].messages == (Message("user", "Say yes."), Message("assistant", "Yes."))


def test_sharegpt_roles_are_mapped(fixture_path):
    result = load_conversations(fixture_path("sharegpt.jsonl"))
    assert result.format == "sharegpt" and not result.problems
    assert [m.role for m in result.conversations[0].messages] == ["system", "user", "assistant"]
    assert [m.role for m in result.conversations[1].messages] == ["user", "assistant"]


def test_text_format(fixture_path):
    result = load_conversations(fixture_path("text.jsonl"))
    assert result.format == "text"
    assert [c.raw_text for c in result.conversations] == [
        "Docker images are built from layers.", "A container is a running image."]


@pytest.mark.parametrize("name", ["alpaca.json", "wrapped.json", "lines_in.json"])
def test_json_shapes(fixture_path, name):
    result = load_conversations(fixture_path(name))
    assert result.rows == 2 and len(result.conversations) == 2 and not result.problems


def test_csv_through_datasets_keeps_file_lines(fixture_path):
    result = load_conversations(fixture_path("alpaca.csv"))
    assert result.format == "alpaca"
    assert [c.source_line for c in result.conversations] == [2, 3]
    assert result.conversations[1].messages[0].content == "Translate, please\n\ncat"


def test_csv_rows_are_numbered_by_the_line_they_start_on(fixture_path):
    result = load_conversations(fixture_path("bad_csv_quoted_newline.csv"))
    assert [c.source_line for c in result.conversations] == [2, 4, 7, 8]
    assert result.conversations[1].messages[0].content == "A\nB\nC"


def test_csv_row_with_extra_fields_is_skipped_and_the_others_kept(fixture_path):
    result = load_conversations(fixture_path("bad_csv_extra_field.csv"))
    assert [c.source_line for c in result.conversations] == [2, 4]
    assert [str(p) for p in result.problems] == [
        f"{fixture_path('bad_csv_extra_field.csv')}:3: 4 fields where the header has 3 (quote a cell that holds a comma)"]


def test_csv_with_old_mac_line_endings(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(b'instruction,output\r"Two\rlines",b\rc,d\r')
    result = load_conversations(str(path))
    assert [(c.source_line, c.messages[0].content) for c in result.conversations] == [(2, "Two\rlines"), (4, "c")]


def test_csv_cells_are_text(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("instruction,output\nWhat is 6 x 7?,42\nIs it known?,N/A\n")
    result = load_conversations(str(path))
    assert [c.messages[1].content for c in result.conversations] == ["42", "N/A"]


def test_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]} for i in range(3)]
    rows[1]["messages"][1]["content"] = ""
    path = tmp_path / "chat.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    result = load_conversations(str(path))
    assert result.format == "messages" and result.rows == 3 and len(result.conversations) == 2
    assert [(p.line, p.field, p.message) for p in result.problems] == [(2, "messages[1].content", "empty content")]


@pytest.mark.parametrize("invisible", ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", " \u200b\n\u2060\t"])
def test_a_turn_of_only_invisible_characters_is_empty(tmp_path, invisible):
    def chat(user, reply):
        return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]}

    codes = ", ".join(f"U+{ord(c):04X}" for c in dict.fromkeys(invisible) if not c.isspace())
    empty = f"empty content: only invisible characters ({codes})"
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in [chat("Hi", invisible), chat(invisible, "Hi"), chat("Hi", f"{invisible}Hi")]))
    result = load_conversations(str(path))
    assert [(p.line, p.field, p.message) for p in result.problems] == [
        (1, "messages[1].content", empty), (2, "messages[0].content", empty)]
    assert [c.source_line for c in result.conversations] == [3]
    for row, field in [({"instruction": invisible, "output": "x"}, "instruction"), ({"text": invisible}, "text")]:
        path.write_text(json.dumps(row) + "\n")
        assert [(p.field, p.message) for p in load_conversations(str(path)).problems] == [(field, empty)]


def test_unpaired_surrogate_is_a_bad_row_and_never_reaches_the_tokenizer(tmp_path, tokenizer):
    from engine.data import check

    def chat(reply):
        return json.dumps({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": reply}]})

    path = tmp_path / "d.jsonl"  # json.dumps escapes the emoji as the pair \ud83d\ude00
    path.write_text("\n".join([chat("ok \U0001F600"), chat("half \ud83d of an emoji")]) + "\n")
    report = check(str(path), tokenizer=tokenizer)
    assert [(p.line, p.field, p.message) for p in report.problems] == [
        (2, "messages[1].content", "invalid text: unpaired surrogate \\ud83d at character 6 (half of an escaped emoji?)")]
    assert report.usable_rows == 1


def test_blank_lines_are_not_rows(fixture_path):
    result = load_conversations(fixture_path("blank_lines.jsonl"))
    assert result.rows == 2 and [c.source_line for c in result.conversations] == [1, 4]


def test_forced_format_reports_missing_fields(fixture_path):
    result = load_conversations(fixture_path("messages.jsonl"), "alpaca")
    assert result.format == "alpaca" and not result.conversations
    assert {(p.line, p.field) for p in result.problems} >= {(1, "instruction"), (1, "output")}


# (file, line, field, part of the message): each bad row is skipped and reported like this.
BAD_ROWS = [
    ("bad_malformed_line.jsonl", 2, None, "malformed JSON: Expecting value at end of line"),
    ("bad_misspelled_field.jsonl", 1, "output", "missing field 'output' (found 'ouput': did you mean 'output'?)"),
    ("bad_missing_field.jsonl", 1, "output", "missing field 'output'"),
    ("bad_empty_content.jsonl", 1, "messages[1].content", "empty content"),
    ("bad_unknown_role.jsonl", 1, "messages[1].role", "unknown role 'assitant': expected system, user or assistant (did you mean 'assistant'?)"),
    ("bad_no_assistant.jsonl", 1, "messages", "no assistant turn: nothing to train on"),
    ("bad_ends_with_user.jsonl", 1, "messages", "ends with a user turn: the last turn must be the assistant's reply"),
    ("bad_mixed_formats.jsonl", 3, None, "mixed formats: this row is alpaca but the file is messages"),
    ("bad_non_utf8.jsonl", 2, None, "not UTF-8: byte 0xe9 at column 14"),
    ("bad_messages_not_list.jsonl", 1, "messages", "expected a list of turns, got str: 'Hi there'"),
    ("bad_output_number.jsonl", 1, "output", "expected text, got a number: 4"),
    ("bad_turn_not_object.jsonl", 1, "messages[0]", "expected an object with role and content, got str: 'Hi'"),
    ("bad_row_not_object.jsonl", 1, None, "expected an object (one record per line), got list"),
    ("bad_unknown_format.jsonl", 1, None, "no known format: expected 'messages' (chat), 'conversations' (ShareGPT)"),
    ("bad_misspelled_key.jsonl", 1, "mesages", "unknown field (did you mean 'messages'?)"),
    ("bad_system_not_first.jsonl", 1, "messages[2].role", "a system turn can only come first"),
    ("bad_sharegpt_missing_value.jsonl", 1, "conversations[0].value", "missing field 'value' (found 'valu': did you mean 'value'?)"),
    ("bad_empty_conversation.jsonl", 1, "conversations", "empty conversation"),
    ("bad_null_output.jsonl", 1, "output", "'output' is null"),
    ("bad_text_empty.jsonl", 1, "text", "empty content"),
    ("bad_invisible_reply.jsonl", 1, "messages[1].content", "empty content: only invisible characters"),
    ("bad_no_user.jsonl", 1, "messages", "no user turn"),
    ("bad_array_element.json", 2, None, "expected an object (one record per line), got int"),
    ("bad_empty_cell.csv", 3, "output", "'output' is null"),
    ("bad_unterminated_string.jsonl", 2, None, "malformed JSON: Unterminated string starting at column 83"),
    ("bad_csv_quoted_newline.csv", 10, "output", "'output' is null"),
    ("bad_csv_extra_field.csv", 3, None, "4 fields where the header has 3"),
    ("bad_csv_unclosed_quote.csv", 3, None, "malformed CSV: a quoted cell that starts in this row is never closed"),
]


@pytest.mark.parametrize(("name", "line", "field", "message"), BAD_ROWS, ids=[b[0] for b in BAD_ROWS])
def test_bad_row_is_skipped_and_reported(fixture_path, name, line, field, message):
    result = load_conversations(fixture_path(name))
    problems = [p for p in result.problems if p.line == line]
    assert problems, result.problems
    assert problems[0].field == field
    assert problems[0].message.startswith(message)
    assert problems[0].file == fixture_path(name)
    assert str(problems[0]).startswith(f"{fixture_path(name)}:{line}: ")
    assert all(c.source_line != line for c in result.conversations)
    assert result.bad_rows == len({p.line for p in result.problems})


# Sources that cannot be read at all: (file, line, part of the message).
BAD_FILES = [
    ("bad_empty.jsonl", None, "file is empty"),
    ("bad_blank_only.jsonl", None, "has no rows"),
    ("bad_malformed_array.json", 3, "malformed JSON: Expecting ',' delimiter at column 23"),
    ("bad_unterminated_string.json", 3, "malformed JSON: Invalid control character at column 37"),
    ("bad_not_array.json", None, "expected a JSON array of records"),
    ("bad_non_utf8.csv", 3, "not UTF-8: byte 0xe9"),
    ("bad_unsupported.txt", None, "unsupported file type '.txt'"),
    ("does_not_exist.jsonl", None, "file does not exist"),
    ("bad_utf16_bom.jsonl", None, "this file is UTF-16; save it as UTF-8"),
    ("bad_utf16_no_bom.jsonl", None, "this file is UTF-16; save it as UTF-8"),
    ("bad_utf16_be.csv", None, "this file is UTF-16; save it as UTF-8"),
    ("bad_utf16.json", None, "this file is UTF-16; save it as UTF-8"),
]


@pytest.mark.parametrize(("name", "line", "message"), BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_unreadable_source_raises_with_reason(fixture_path, name, line, message):
    with pytest.raises(DatasetError) as info:
        load_conversations(fixture_path(name))
    (problem,) = info.value.problems
    assert (problem.file, problem.line) == (fixture_path(name), line)
    assert problem.message.startswith(message)


def _refusal(path) -> tuple[str, int | None, str]:
    with pytest.raises(DatasetError) as info:
        load_conversations(str(path))
    (problem,) = info.value.problems
    return problem.file, problem.line, problem.message


def test_symlink_loop_is_named(tmp_path):
    (tmp_path / "a.jsonl").symlink_to(tmp_path / "b.jsonl")
    (tmp_path / "b.jsonl").symlink_to(tmp_path / "a.jsonl")
    assert _refusal(tmp_path / "a.jsonl") == (
        str(tmp_path / "a.jsonl"), None, "is a symlink loop (it leads back to itself): link it to the real file")


def test_dangling_symlink_names_its_target(tmp_path):
    (tmp_path / "d.jsonl").symlink_to(tmp_path / "gone.jsonl")
    assert _refusal(tmp_path / "d.jsonl")[2] == f"is a link to {tmp_path / 'gone.jsonl'}, which does not exist"


def test_fifo_is_not_a_regular_file_and_is_never_opened(tmp_path):
    import os
    import threading

    path = tmp_path / "d.jsonl"
    os.mkfifo(path)
    got = []
    reader = threading.Thread(target=lambda: got.append(_refusal(path)), daemon=True)
    reader.start()
    reader.join(timeout=10)  # opening a FIFO with no writer would block here
    assert got == [(str(path), None, "is not a regular file: it is a named pipe (FIFO)")]


def test_link_to_dev_zero_is_not_a_regular_file(tmp_path):
    (tmp_path / "z.jsonl").symlink_to("/dev/zero")
    assert _refusal(tmp_path / "z.jsonl")[2] == "is not a regular file: it links to /dev/zero, a character device"


def test_permission_denied_names_the_file(tmp_path, monkeypatch, fixture_path):
    import builtins
    import errno

    real_open = builtins.open
    path = fixture_path("messages.jsonl")

    def denied(file, *args, **kwargs):
        if str(file) == path:
            raise PermissionError(errno.EACCES, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", denied)
    assert _refusal(path) == (path, None, "cannot be read: permission denied (see its owner and mode with `ls -l`)")


def test_chmod_000_names_the_file(tmp_path):
    import os

    if os.geteuid() == 0:
        pytest.skip("root reads any file; test_permission_denied_names_the_file covers this")
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "x"}\n')
    path.chmod(0)
    assert _refusal(path)[2].startswith("cannot be read: permission denied")


def test_oversized_jsonl_row_is_refused_before_parsing(tmp_path):
    from engine.data.readers import MAX_ROW_BYTES

    good = json.dumps({"text": "fine"})
    huge = json.dumps({"text": "x" * (MAX_ROW_BYTES + 500_000)})
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join([good, huge, good]) + "\n")
    result = load_conversations(str(path))
    assert [(p.line, p.message) for p in result.problems] == [(2, (
        f"row is {len(huge):,} bytes, over the {MAX_ROW_BYTES:,}-byte limit for one row "
        "(more text than any model's context holds)"))]
    assert [c.source_line for c in result.conversations] == [1, 3]


def test_oversized_record_of_other_sources_is_refused_before_tokenising(tmp_path, tokenizer):
    from engine.data import check
    from engine.data.readers import MAX_ROW_BYTES

    records = [{"instruction": "q", "output": "a"}, {"instruction": "q", "output": "y" * (MAX_ROW_BYTES + 1)}]
    path = tmp_path / "d.json"
    path.write_text(json.dumps(records))
    report = check(str(path), tokenizer=tokenizer)
    assert [(p.line, p.message) for p in report.problems] == [(2, (
        f"row holds {MAX_ROW_BYTES + 2:,} characters of text, over the {MAX_ROW_BYTES:,} limit for one row "
        "(more text than any model's context holds)"))]
    assert (report.rows, report.usable_rows, len(report.lengths)) == (2, 1, 1)


def test_too_deep_or_too_long_json_is_a_bad_row(tmp_path):
    good = json.dumps({"text": "fine"})
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join([good, "[" * 100_000, '{"text": ' + "9" * 5000 + "}", good]) + "\n")
    result = load_conversations(str(path))
    assert [(p.line, p.message) for p in result.problems] == [
        (2, "malformed JSON: nested too deeply"), (3, "malformed JSON: a number over 4300 digits long")]
    assert [c.source_line for c in result.conversations] == [1, 4]


def test_too_deep_json_array_is_refused(tmp_path):
    path = tmp_path / "d.json"
    path.write_text("[" * 100_000)
    with pytest.raises(DatasetError) as info:
        load_conversations(str(path))
    assert [(p.line, p.message) for p in info.value.problems] == [(None, "malformed JSON: nested too deeply")]


def test_strict_refuses_at_the_first_bad_row(tmp_path):
    good = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join([json.dumps(good), json.dumps({"messages": []}), "{oops", json.dumps(good)]) + "\n")
    assert len(load_conversations(str(path)).problems) == 2
    with pytest.raises(DatasetError) as info:
        load_conversations(str(path), strict=True)
    assert [(p.line, p.field) for p in info.value.problems] == [(2, "messages")]
    assert "strict" in str(info.value)


def test_unknown_format_name_is_refused(fixture_path):
    with pytest.raises(DatasetError, match="unknown format 'chatml'"):
        load_conversations(fixture_path("messages.jsonl"), "chatml")


@pytest.mark.slow
def test_hub_id_offline_says_so(tmp_path):
    import subprocess
    import sys

    code = ("from engine.data import load_conversations, DatasetError\n"
            "try: load_conversations('someone/some-dataset')\n"
            "except DatasetError as e: print(e.problems[0])\n")
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=str(tmp_path.parent),
                         check=True)
    assert out.stdout.startswith("someone/some-dataset: no such local file, and cannot reach the Hugging Face hub (offline?)")


def test_hub_id_that_does_not_exist(monkeypatch):
    import datasets
    from datasets.exceptions import DatasetNotFoundError

    def not_found(*args, **kwargs):
        raise DatasetNotFoundError("Dataset 'someone/nope' doesn't exist on the Hub or cannot be accessed.")

    monkeypatch.setattr(datasets, "load_dataset", not_found)
    # Left real, the split lookup waits out datasets' retries on this offline machine (20-35 s).
    monkeypatch.setattr(datasets, "get_dataset_split_names", not_found)
    monkeypatch.setattr("huggingface_hub.HfApi.dataset_info", lambda self, dataset_id, **_: None)
    with pytest.raises(DatasetError, match="no such local file, and no such dataset on the Hugging Face hub"):
        load_conversations("someone/nope")
