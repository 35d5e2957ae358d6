"""Other trainers' config keys: read as ftui's with a note, passed over with a reason, or the right hint."""

import pytest

from cli.main import main
from engine.config.build import build_config
from engine.config.schema import ConfigError, RunConfig, load_toml


@pytest.mark.parametrize("key, value, field, expected", [
    ("num_train_epochs", 3, "epochs", 3.0),
    ("num_epochs", 2, "epochs", 2.0),
    ("gradient_accumulation_steps", 8, "grad_accum", 8),
    ("per_device_train_batch_size", 2, "batch_size", 2),
    ("micro_batch_size", 2, "batch_size", 2),
    ("cutoff_len", 512, "max_seq_len", 512),
    ("sequence_len", 2048, "max_seq_len", 2048),
    ("max_seq_length", 768, "max_seq_len", 768),
    ("lr", 1e-4, "learning_rate", 1e-4),
    ("learning-rate", 1e-4, "learning_rate", 1e-4),
    ("Learning_Rate", 1e-4, "learning_rate", 1e-4),
    ("eval_steps", 10, "eval_interval", 10),
    ("save_steps", 25, "save_interval", 25),
    ("val_set_size", 0.05, "val_split", 0.05),
    ("val_size", 0.1, "val_split", 0.1),
    ("lora_target", "q_proj,v_proj", "target_modules", ("q_proj", "v_proj")),
    ("lora_target_modules", ["q_proj", "v_proj"], "target_modules", ("q_proj", "v_proj")),
    ("lora_rank", 32, "lora_r", 32),
    ("lr_scheduler_type", "constant_with_warmup", "scheduler", "constant"),
    ("optim", "adamw_bnb_8bit", "optimizer", "adamw_8bit"),
    ("optimizer", "paged_adamw_bnb_8bit", "optimizer", "paged_adamw_8bit"),
    ("base_model", "HuggingFaceTB/SmolLM2-135M-Instruct", "model", "HuggingFaceTB/SmolLM2-135M-Instruct"),
    ("model_name_or_path", "meta-llama/Llama-3.2-1B-Instruct", "model", "meta-llama/Llama-3.2-1B-Instruct"),
    ("finetuning_type", "full", "method", "full"),
    ("adapter", "qlora", "method", "qlora"),
    ("use_dora", True, "method", "dora"),
    ("train_on_inputs", False, "train_on_responses_only", True),
    ("datasets", [{"path": "data/train.jsonl", "type": "alpaca"}], "dataset", "data/train.jsonl"),
])
def test_other_tools_keys_are_read_as_ftuis_with_a_note(key, value, field, expected):
    notes = []
    config = RunConfig.from_dict({key: value}, notes=notes)
    assert getattr(config, field) == expected
    (note,) = notes
    assert (note.field, note.level) == (key, "warning") and field in note.message


@pytest.mark.parametrize("key, value, fragment", [
    ("bf16", True, "ftui picks bf16 where the GPU has it"),
    ("logging_steps", 10, "ftui logs every optimizer step"),
    ("lora_target", "all", "'all' is already ftui's default"),
    ("lora_target_linear", True, "already adapt every linear projection"),
    ("hub_model_id", "me/model", "ftui push RUN --repo"),
])
def test_settings_ftui_has_no_use_for_are_passed_over_with_the_reason(key, value, fragment):
    notes = []
    assert RunConfig.from_dict({key: value}, notes=notes) == RunConfig()
    assert fragment in notes[0].message


@pytest.mark.parametrize("values, fragment", [
    ({"deepspeed": "zero2.json"}, "deepspeed: HF TrainingArguments / Axolotl / LLaMA-Factory key, not supported: "
                                  "ftui trains on one GPU"),
    ({"val_set_size": 200}, "200 is a count of examples; ftui's val_split is a share"),
    ({"finetuning_type": "freeze"}, "'freeze' has no ftui method; choose from full, lora"),
    ({"num_epoch": 3}, "unknown key in config (did you mean 'epochs'?)"),
    ({"lora_targets": "q_proj"}, "(did you mean 'target_modules'?)"),
    ({"learnig_rate": 1e-4}, "(did you mean 'learning_rate'?)"),
])
def test_what_cannot_be_read_says_what_ftui_calls_it(values, fragment):
    with pytest.raises(ConfigError) as exc:
        RunConfig.from_dict(values)
    assert fragment in str(exc.value)


@pytest.mark.slow
def test_a_config_file_with_other_tools_keys_trains_and_prints_notes(tmp_path, capsys, monkeypatch):
    path = tmp_path / "lf.toml"
    path.write_text("num_train_epochs = 2\ncutoff_len = 512\nlora_target = \"all\"\n")
    notes = []
    config = build_config(config_file=path, sets=["per_device_train_batch_size=2"], notes=notes)
    assert (config.epochs, config.max_seq_len, config.batch_size) == (2.0, 512, 2)
    assert [n.field for n in notes] == ["num_train_epochs", "cutoff_len", "lora_target", "per_device_train_batch_size"]

    import engine.train

    trained = []
    monkeypatch.setattr(engine.train, "train", lambda config, on_event, stop, **_: trained.append(config))
    main(["train", "--config", str(path)])
    err = capsys.readouterr().err
    assert [c.epochs for c in trained] == [2.0]
    assert "ftui: note: num_train_epochs: HF TrainingArguments / LLaMA-Factory key, read as ftui's epochs" in err


AXOLOTL_YAML = """\
base_model: HuggingFaceTB/SmolLM2-135M-Instruct
datasets:
  - path: data/train.jsonl
    type: alpaca
val_set_size: 0.05
sequence_len: 2048
adapter: lora
lora_r: 16
lora_target_linear: true
gradient_accumulation_steps: 4
micro_batch_size: 2
num_epochs: 3
optimizer: adamw_bnb_8bit
bf16: auto
deepspeed: zero2.json
wandb_projekt: x
"""


@pytest.mark.parametrize("name", ["axolotl.yaml", "axolotl.toml"])
def test_a_yaml_config_is_refused_with_its_settings_in_ftuis_toml(tmp_path, name):
    path = tmp_path / name
    path.write_text(AXOLOTL_YAML)
    with pytest.raises(ConfigError) as exc:
        load_toml(path)
    message = str(exc.value)
    assert message.startswith(f"error: {path}: is YAML; ftui reads TOML config files (key = value)")
    toml_lines = [line.split("  #")[0].strip() for line in message.splitlines() if line.startswith("    ")]
    assert toml_lines == ['model = "HuggingFaceTB/SmolLM2-135M-Instruct"', 'dataset = "data/train.jsonl"',
                          "val_split = 0.05", "max_seq_len = 2048", 'method = "lora"', "lora_r = 16", "grad_accum = 4",
                          "batch_size = 2", "epochs = 3", 'optimizer = "adamw_8bit"']
    assert "deepspeed (HF TrainingArguments / Axolotl / LLaMA-Factory key, not supported" in message
    assert "wandb_projekt (unknown)" in message
    assert "save the lines above as axolotl.toml" in message
    # The lines it prints are a config ftui reads.
    import tomllib

    RunConfig.from_dict(tomllib.loads("\n".join(toml_lines)))
