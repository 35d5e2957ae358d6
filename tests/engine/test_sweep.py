"""Sweeps: variants trained one after another in one folder, the best chosen by validation loss
among those that keep the base model's general answers, listed as a group."""

from __future__ import annotations

import json

import pytest

from cli.main import main
from engine.config.schema import ConfigError, RunConfig
from engine.runs import list_runs
from engine.sweep import VariantResult, choose, expand, parse_grid, run_sweep, suggested_rates
from tests.engine.train.test_train_api import api_config
from tests.engine.train.tiny import make_model_folder


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    return make_model_folder(tmp_path_factory.mktemp("tiny-llama"))


def test_the_grid_is_every_combination(tmp_path, model_folder):
    config = api_config(tmp_path, model_folder)
    variants = expand(config, {"learning_rate": [1e-5, 5e-5], "lora_r": [4, 8]})
    assert [v.label for v in variants] == ["learning_rate=1e-05,lora_r=4", "learning_rate=1e-05,lora_r=8",
                                           "learning_rate=5e-05,lora_r=4", "learning_rate=5e-05,lora_r=8"]
    assert variants[3].config.lora_r == 8 and variants[3].config.learning_rate == 5e-5
    with pytest.raises(ConfigError, match="learning_rate"):
        expand(config, {"learning_rate": [1e-5, 7.0]})


def test_a_variant_that_forgets_loses_to_one_that_keeps():
    forgets = VariantResult("lr=2e-4", "a", "finished", 0.30, 0.55, ("keeps 11 of 20",))
    keeps = VariantResult("lr=5e-5", "b", "finished", 0.41, 0.95, ())
    failed = VariantResult("lr=1e-2", "c", "failed", None, None, ())
    best, why = choose([forgets, keeps, failed])
    assert best == "lr=5e-5" and "kept the base model's general answers" in why
    assert choose([failed]) == (None, "no variant finished with a validation loss")


@pytest.mark.slow
def test_ftui_sweep_trains_two_variants_and_picks_the_one_that_learned(tmp_path, model_folder, capsys):
    config_file = tmp_path / "base.toml"
    config_file.write_text(api_config(tmp_path, model_folder, max_steps=6, eval_interval=3).to_toml())

    code = main(["sweep", "--config", str(config_file), "--set", "learning_rate=1e-6,1e-3"])
    out = capsys.readouterr().out
    assert code == 0
    [folder] = (tmp_path / "runs").iterdir()
    sweep = json.loads((folder / "sweep.json").read_text())
    assert [v["label"] for v in sweep["variants"]] == ["learning_rate=1e-06", "learning_rate=0.001"]
    assert sweep["best"] == "learning_rate=0.001"
    assert "validation loss by step" in out and "Best: learning_rate=0.001" in out
    runs = list_runs(tmp_path / "runs")
    assert len(runs) == 2 and {r.group for r in runs} == {folder.name}


@pytest.mark.slow
def test_typed_values_become_numbers_and_a_variant_left_training_ends_the_sweep(tmp_path):
    assert parse_grid(["learning_rate=1e-5, 5e-5,", "epochs=1"]) == (["epochs=1"], {"learning_rate": [1e-5, 5e-5]})
    assert suggested_rates(RunConfig(learning_rate=2e-4)) == [1e-5, 5e-5, 2e-4]
    assert suggested_rates(RunConfig(learning_rate=2e-5)) == [1e-6, 5e-6, 2e-5]
    trained = []

    def left_training(config, on_event, stop):
        trained.append(config.learning_rate)

    result = run_sweep(expand(RunConfig(), {"learning_rate": [1e-5, 5e-5]}), tmp_path, trainer=left_training)
    assert trained == [1e-5] and result.variants == () and result.best is None
