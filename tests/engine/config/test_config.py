"""The run config: what a user typing values into a form or a preset file is told."""

import tomllib
from dataclasses import fields

import pytest

from engine.config.schema import ConfigError, RunConfig, field_docs, parse_duration, parse_set


def _messages(config: RunConfig, **kw) -> dict[str, str]:
    return {p.field: f"{p.level}: {p.message}" for p in config.check(**kw)}


def test_defaults_are_valid():
    assert [p for p in RunConfig().check() if p.level == "error"] == []


@pytest.mark.parametrize(
    ("changes", "field", "fragment"),
    [
        ({"learning_rate": 5e-3}, "learning_rate", "outside 1e-6..1e-3"),
        ({"learning_rate": 1e-7}, "learning_rate", "2e-4 is typical for LoRA"),
        ({"lora_dropout": 0.7}, "lora_dropout", "outside 0..0.5"),
        ({"warmup_ratio": 0.5}, "warmup_ratio", "outside 0..0.2"),
        ({"weight_decay": 0.3}, "weight_decay", "outside 0..0.2"),
        ({"batch_size": 0}, "batch_size", "at least 1"),
        ({"val_split": 0.0, "early_stopping_patience": 2}, "early_stopping_patience", "needs a validation split"),
        ({"export_quants": ("Q3_X",)}, "export_quants", "unknown type(s) Q3_X"),
        ({"name": "a/b"}, "name", "path separators"),
    ],
)
def test_out_of_range_values_are_errors_that_say_why(changes, field, fragment):
    msgs = _messages(RunConfig().replace(**changes))
    assert msgs[field].startswith("error") and fragment in msgs[field]


def test_unusual_alpha_rank_ratio_is_a_warning_not_an_error():
    msgs = _messages(RunConfig(lora_r=64, lora_alpha=16))
    assert msgs["lora_alpha"].startswith("warning") and "0.25" in msgs["lora_alpha"]


def test_sequence_length_must_fit_the_model_context():
    msgs = _messages(RunConfig(max_seq_len=16384), context_length=8192)
    assert "exceeds the model's context of 8192" in msgs["max_seq_len"]


def test_warmup_steps_over_a_fifth_of_the_run_is_refused():
    msgs = _messages(RunConfig(warmup_steps=30), total_steps=100)
    assert "over 20% of the 100 steps" in msgs["warmup_steps"]


def test_full_fine_tuning_with_a_lora_learning_rate_warns():
    msgs = _messages(RunConfig(method="full", learning_rate=2e-4))
    assert msgs["learning_rate"].startswith("warning")


def test_unknown_key_suggests_the_close_one():
    with pytest.raises(ConfigError) as exc:
        RunConfig.from_dict({"learnig_rate": 1e-4})
    assert "did you mean 'learning_rate'" in str(exc.value)


def test_wrong_types_and_choices_are_reported_together():
    with pytest.raises(ConfigError) as exc:
        RunConfig.from_dict({"batch_size": "four", "method": "adapter", "gradient_checkpointing": "yes"})
    fields = {p.field for p in exc.value.problems}
    assert fields == {"batch_size", "method", "gradient_checkpointing"}
    assert "one of lora, qlora, dora, full" in str(exc.value)


def test_validate_raises_on_errors_and_returns_warnings():
    with pytest.raises(ConfigError):
        RunConfig(batch_size=0).validate()
    warnings = RunConfig(lora_r=8, lora_alpha=64).validate()
    assert [w.field for w in warnings] == ["lora_alpha"]


def test_toml_round_trip_keeps_every_value():
    import tomllib

    config = RunConfig(name="x", system_prompt='say "hi"\nbriefly', target_modules=("q_proj",), learning_rate=3e-5)
    assert RunConfig.from_dict(tomllib.loads(config.to_toml())) == config


def test_set_values_are_read_as_toml_scalars():
    assert parse_set(["batch_size=8", "learning_rate=1e-4", "method=qlora", "gradient_checkpointing=true"]) == {
        "batch_size": 8, "learning_rate": 1e-4, "method": "qlora", "gradient_checkpointing": True,
    }
    with pytest.raises(ConfigError):
        parse_set(["batch_size"])


def test_every_field_has_a_hint_for_the_form():
    docs = field_docs()
    missing = [f for f in RunConfig.__dataclass_fields__ if not docs.get(f)]
    assert missing == []


@pytest.mark.parametrize("field", [f.name for f in fields(RunConfig) if isinstance(getattr(RunConfig(), f.name), float)])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_a_float_that_is_not_a_finite_number_is_one_error(field, value):
    # NaN passes `x <= 0` style checks (max_grad_norm = nan ran and diverged at step 2).
    config = RunConfig.from_dict(tomllib.loads(f"{field} = {value}"))
    problems = [p for p in config.check() if p.field == field]
    assert [(p.level, p.message) for p in problems] == [("error", f"{float(value)} is not a finite number")]


@pytest.mark.parametrize("seed", [-1, 2**32])
def test_seed_outside_what_numpy_takes_is_an_error(seed):
    assert "outside 0..4294967295" in _messages(RunConfig(seed=seed))["seed"]


def test_seed_bounds_are_the_ones_the_training_seeding_accepts():
    from transformers import set_seed

    for seed in (0, 2**32 - 1):
        assert "seed" not in _messages(RunConfig(seed=seed))
        set_seed(seed)
    with pytest.raises(ValueError):
        set_seed(2**32)


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("", "is empty"),
        ("  ", "is empty"),
        ("a\x00b", r"contains '\x00'"),
        ("a\nb", r"contains '\n'"),
        ("a\\b", "path separators"),
        (".", "reads as a path part"),
        ("..", "reads as a path part"),
        ("x" * 201, "is 201 bytes long"),
        ("x;touch PWNED", "contains ' ' ';': a run name holds letters, digits and . - _ + only"),
        ("x$(id)", "contains '$' '(' ')'"),
        ("a|b", "contains '|'"),
    ],
)
def test_a_name_that_cannot_be_a_folder_name_is_an_error(name, fragment):
    msgs = _messages(RunConfig(name=name))
    assert msgs["name"].startswith("error") and fragment in msgs["name"]


def test_a_name_with_dots_and_unicode_inside_is_fine():
    assert "name" not in _messages(RunConfig(name="v1.2-Ölmodell"))


def test_a_number_too_large_for_a_float_is_reported_not_raised():
    with pytest.raises(ConfigError) as exc:
        RunConfig.from_dict({"weight_decay": 10**400})
    assert [p.field for p in exc.value.problems] == ["weight_decay"]
    assert "too large" in str(exc.value)


@pytest.mark.parametrize("field", ["model", "dataset", "output_dir"])
def test_a_nul_byte_in_a_path_is_an_error(field):
    msgs = _messages(RunConfig().replace(**{field: "runs\x00x"}))
    assert msgs[field] == "error: contains a NUL byte, which no file or folder name can hold"


@pytest.mark.parametrize(("value", "seconds"), [
    ("2h", 7200), ("90m", 5400), ("1h30m", 5400), ("45s", 45), ("1.5h", 5400), ("1d", 86400), (5400, 5400),
    ("5400", 5400),
])
def test_a_time_budget_reads_hours_minutes_seconds_or_plain_seconds(value, seconds):
    config = RunConfig.from_dict({"max_time": value})
    assert [p for p in config.check() if p.field == "max_time"] == []
    assert parse_duration(config.max_time) == seconds


@pytest.mark.parametrize(("value", "fragment"), [
    ("2 hours", "write it as 2h, 90m, 1h30m, 45s or a number of seconds"),
    ("h", "is not a time"),
    ("0", "outside 1s..30 days"),
    ("31d", "outside 1s..30 days"),
])
def test_a_time_budget_that_is_not_one_says_how_to_write_it(value, fragment):
    assert fragment in _messages(RunConfig(max_time=value))["max_time"]
