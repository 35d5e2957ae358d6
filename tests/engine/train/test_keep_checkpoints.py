"""keep_checkpoints: old checkpoints are pruned after each save (0 keeps all), and the checkpoint
of the best evaluation, which early stopping's adapter comes from, is never pruned."""

from __future__ import annotations

import json

import pytest

from engine.config.schema import RunConfig
from engine.runs import complete_checkpoints
from engine.train.checkpoint import prune_checkpoints
from tests.engine.train.tiny import run_tiny, tiny_config


def steps(run_dir) -> list[int]:
    return [int(p.name.split("-")[1]) for p in complete_checkpoints(run_dir)]


def make_checkpoints(run_dir, numbers):
    for n in numbers:
        folder = run_dir / "checkpoints" / f"step-{n}"
        folder.mkdir(parents=True)
        (folder / "state.json").write_text(json.dumps({"step": n}))


def test_the_newest_are_kept_and_the_protected_one_too(tmp_path):
    make_checkpoints(tmp_path, [2, 4, 6, 8, 10])
    removed = prune_checkpoints(tmp_path, keep=2, protect=4)
    assert [p.name for p in removed] == ["step-2", "step-6"]
    assert steps(tmp_path) == [4, 8, 10]
    assert [p.name for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".")] == []


def test_zero_keeps_every_checkpoint(tmp_path):
    make_checkpoints(tmp_path, [1, 2, 3])
    assert prune_checkpoints(tmp_path, keep=0, protect=None) == []
    assert steps(tmp_path) == [1, 2, 3]


@pytest.mark.slow
def test_a_run_keeps_its_newest_checkpoints_and_its_best_one(tmp_path, model_folder):
    config = tiny_config(tmp_path, save_interval=1, eval_interval=2, keep_checkpoints=2)
    result, _ = run_tiny(config, model_folder)
    run = result.run_dir
    best = json.loads((complete_checkpoints(run)[-1] / "state.json").read_text())["best_step"]
    assert best in (2, 4, 6)
    assert steps(run) == sorted({best, 5, 6})


@pytest.mark.slow
def test_keep_all_with_zero(tmp_path, model_folder):
    result, _ = run_tiny(tiny_config(tmp_path, save_interval=1, keep_checkpoints=0), model_folder)
    assert steps(result.run_dir) == [1, 2, 3, 4, 5, 6]


def test_the_default_keeps_three():
    assert RunConfig().keep_checkpoints == 3


@pytest.mark.parametrize("value, level, fragment", [
    (-1, "error", "0 (keep all) or more"),
    (1, "warning", "nothing to fall back to"),
])
def test_the_setting_is_checked(value, level, fragment):
    problems = [p for p in RunConfig(keep_checkpoints=value).check() if p.field == "keep_checkpoints"]
    assert len(problems) == 1 and problems[0].level == level and fragment in problems[0].message
