"""Other tools' dataset schemas: built-in recognition, column and role mapping, suggestions.

Each fixture is a few rows in the exact schema of a popular public dataset (Dolly-15k, Capybara,
OpenAssistant, TRL prompt/completion and preference, HH-RLHF).
"""

import json
import tomllib

import pytest

from cli.main import main
from engine.config.schema import RunConfig
from engine.data import check, load_conversations
from engine.data.load import PREFERENCE_NOTE
from engine.data.mapping import DataMapping, MappingError
from engine.data.render import render
from engine.data.types import Message

U, A, S = "user", "assistant", "system"


@pytest.mark.parametrize("name, fmt, schema, first", [
    ("dolly.jsonl", "alpaca", "dolly", [
        (U, "When did Virgin Australia start operating?\n\nVirgin Australia commenced services on 31 August 2000 "
            "as Virgin Blue."),
        (A, "Virgin Australia commenced services on 31 August 2000.")]),
    ("capybara.jsonl", "messages", "capybara", [(U, "What is 2+2?"), (A, "4."), (U, "And times 3?"), (A, "12.")]),
    ("oasst_roles.jsonl", "messages", "", [(U, "Hi there"), (A, "Hello! How can I help?")]),
    ("prompt_completion.jsonl", "prompt_completion", "", [(U, "The sky is"), (A, " blue.")]),
    ("prompt_completion_chat.jsonl", "prompt_completion", "", [(U, "What color is the sky?"), (A, "It is blue.")]),
    ("preference.jsonl", "preference", "", [(U, "The sky is"), (A, " blue.")]),
    ("preference_chat.jsonl", "preference", "", [(U, "What color is the sky?"), (A, "It is blue.")]),
    ("hh_rlhf.jsonl", "preference", "", [
        (U, "What are some good fruits?"), (A, "Apples and pears."), (U, "Which is sweeter?"), (A, "Pears, usually.")]),
])
def test_public_schemas_load_without_a_mapping(fixture_path, name, fmt, schema, first):
    result = load_conversations(fixture_path(name))
    assert (result.format, result.problems, result.mapping.schema) == (fmt, (), schema)
    assert result.conversations[0].messages == tuple(Message(r, c) for r, c in first)


def test_dolly_without_context_has_no_blank_input(fixture_path):
    second = load_conversations(fixture_path("dolly.jsonl")).conversations[1]
    assert second.messages == (Message(U, "Which is a species of fish? Tope or Rope"), Message(A, "Tope"))


def test_preference_trains_on_chosen_and_says_so(fixture_path, capsys):
    result = load_conversations(fixture_path("preference_chat.jsonl"))
    assert result.notes == (PREFERENCE_NOTE,)
    implicit = result.conversations[1].messages  # chosen holds the whole conversation, prompt included
    assert implicit == (Message(U, "Hi"), Message(A, "Hello."))
    assert main(["data", "check", fixture_path("hh_rlhf.jsonl"), "--no-tokenizer"]) == 0
    assert f"Note: {PREFERENCE_NOTE}" in capsys.readouterr().out


def test_hh_text_without_turns_is_a_bad_row(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"chosen": "just an answer", "rejected": "another"}) + "\n")
    (problem,) = load_conversations(str(path)).problems
    assert problem.field == "chosen" and "no 'prompt' field" in problem.message


def test_user_mapping_renames_columns_turn_keys_and_roles(tmp_path):
    path = tmp_path / "d.jsonl"
    row = {"dialog": [{"speaker": "client", "says": "Hi"}, {"speaker": "bot", "says": "Hello."}]}
    path.write_text(json.dumps(row) + "\n")
    mapping = DataMapping.parse(["role=speaker", "content=says"], ["user=client", "assistant=bot"], "dialog")
    result = load_conversations(str(path), mapping=mapping)
    assert result.conversations[0].messages == (Message(U, "Hi"), Message(A, "Hello."))
    assert result.mapping.describe() == ("columns role=speaker, content=says, messages=dialog; "
                                         "roles user=client, assistant=bot")


def test_problems_name_the_files_own_columns(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"dialog": [{"speaker": "client", "says": ""}, {"speaker": "bot", "says": "x"}]}) + "\n")
    mapping = DataMapping.parse(["role=speaker", "content=says"], ["user=client", "assistant=bot"], "dialog")
    (problem,) = load_conversations(str(path), mapping=mapping).problems
    assert (problem.field, problem.message) == ("dialog[0].says", "empty content")


def test_config_mapping_reaches_training_data(fixture_path, tokenizer):
    from engine.data import prepare

    path = fixture_path("bot_roles.jsonl")
    config = RunConfig(dataset=path, roles=("user=customer", "assistant=agent"), val_split=0)
    prepared = prepare(config, tokenizer)
    assert len(prepared.train) == 2 and not prepared.problems


@pytest.mark.parametrize("name, flags, toml, described", [
    ("qa_columns.jsonl", "--columns instruction=question,output=answer",
     'columns = {instruction = "question", output = "answer"}', "columns instruction=question, output=answer"),
    ("bot_roles.jsonl", "--roles user=customer,assistant=agent", 'roles = {user = ["customer"], assistant = ["agent"]}',
     "roles user=customer, assistant=agent"),
])
def test_check_suggests_a_mapping_that_works(fixture_path, capsys, name, flags, toml, described):
    assert main(["data", "check", fixture_path(name), "--no-tokenizer", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["suggestion"] == {"flags": flags, "toml": toml, "usable_rows": 2}
    assert main(["data", "check", fixture_path(name), "--no-tokenizer", *flags.split(" ")]) == 0
    assert f"Mapping: {described}\n" in capsys.readouterr().out
    # The suggested TOML is what a config file takes.
    config = RunConfig.from_dict(tomllib.loads(toml))
    assert RunConfig.from_dict(tomllib.loads(config.to_toml())) == config
    assert DataMapping.from_config(config).describe() == described


def test_check_prints_the_builtin_mapping(fixture_path, capsys):
    assert main(["data", "check", fixture_path("dolly.jsonl"), "--no-tokenizer"]) == 0
    assert "Mapping: dolly (columns output=response, input=context)" in capsys.readouterr().out


def test_bad_mapping_entries_are_refused_with_a_hint(fixture_path, capsys):
    with pytest.raises(MappingError, match=r"'outptu' is not one of ftui's fields \(did you mean 'output'\?\)"):
        DataMapping.parse(["outptu=response"])
    with pytest.raises(MappingError, match="'response' is not field=name"):
        DataMapping.parse(["response"])
    problems = RunConfig(roles=("usr=prompter",)).check()
    assert [(p.field, p.level) for p in problems] == [("roles", "error")] and "did you mean 'user'" in problems[0].message
    with pytest.raises(SystemExit) as exit_:
        main(["data", "check", fixture_path("dolly.jsonl"), "--no-tokenizer", "--roles", "bot"])
    assert exit_.value.code == 2 and "'bot' is not role=name (e.g. user=prompter)" in capsys.readouterr().err


def test_config_tables_round_trip(tmp_path):
    values = tomllib.loads('columns = {output = "response", input = "context"}\nroles = {user = ["prompter", "h"]}\n'
                           'messages_field = "conversation"')
    config = RunConfig.from_dict(values)
    assert config.columns == ("output=response", "input=context")
    assert config.roles == ("user=prompter", "user=h")
    assert 'columns = {output = "response", input = "context"}' in config.to_toml()
    assert RunConfig.from_dict(tomllib.loads(config.to_toml())) == config
    assert RunConfig.from_dict({"columns": "output=response, input=context"}).columns == config.columns


def test_chatml_text_rows_get_no_second_end_of_turn(fixture_path, tokenizer):
    (conversation,) = load_conversations(fixture_path("chatml_text.jsonl")).conversations
    rendered = render(tokenizer, conversation)
    assert rendered.text.count("<|im_end|>") == 2
    assert rendered.text == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n"


def test_check_with_tokenizer_renders_dolly_through_the_template(fixture_path, tokenizer):
    report = check(fixture_path("dolly.jsonl"), tokenizer=tokenizer, max_seq_len=256)
    trained = "".join(s.text for s in report.sample if s.trained)
    assert report.refusal is None and trained == "Virgin Australia commenced services on 31 August 2000.<|im_end|>"
    assert report.mapping == "dolly (columns output=response, input=context)"
