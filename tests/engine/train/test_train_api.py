"""`train()` and the `ftui train` / `ftui runs` commands over a local model folder and a JSONL file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from cli.main import main
from engine.config.schema import RunConfig
from engine.events import StepLogged, TrainFailed, TrainFinished
from engine.train import train

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[3]


def write_jsonl(path: Path, n: int = 40, bad: int = 0) -> Path:
    lines = []
    for i in range(n):
        words = " ".join(f"t{3 + (i + k) % 60}" for k in range(4 + i % 6))
        lines.append(json.dumps({"messages": [{"role": "user", "content": words},
                                              {"role": "assistant", "content": words}]}))
    lines += ['{"messages": "not a list"}'] * bad
    path.write_text("\n".join(lines) + "\n")
    return path


def api_config(tmp_path: Path, model_folder: Path, **changes) -> RunConfig:
    values = dict(name="api", model=str(model_folder), dataset=str(write_jsonl(tmp_path / "data.jsonl")),
                  output_dir=str(tmp_path / "runs"), lora_r=4, lora_alpha=8, max_steps=3, batch_size=4,
                  grad_accum=1, max_seq_len=64, eval_interval=2, save_interval=10, val_split=0.1,
                  learning_rate=1e-3, retention_mix=0.0, precision="fp32")  # exact on any CPU, as tiny_config
    values.update(changes)
    return RunConfig.from_dict(values)


def collect(config: RunConfig, resume: str | None = None):
    events: list = []
    return train(config, events.append, threading.Event(), resume=resume), events


def test_train_resolves_prepares_and_trains_a_local_model(tmp_path, model_folder):
    result, events = collect(api_config(tmp_path, model_folder))

    assert result.status == "finished", result.reason
    assert isinstance(events[-1], TrainFinished)
    assert [e.step for e in events if isinstance(e, StepLogged)] == [1, 2, 3]
    status = json.loads((Path(result.run_dir) / "run.json").read_text())
    assert status["model_ref"] == str(model_folder.resolve())
    assert status["base_model_ref"] == str(model_folder.resolve())


@pytest.mark.parametrize("change, expected", [
    ({"dataset": "nowhere/missing.jsonl"}, "missing.jsonl"),
    ({"model": "/nonexistent/model-folder"}, "No model folder"),
    ({"learning_rate": 0.5}, "learning_rate"),
])
def test_bad_inputs_fail_before_any_run_directory_exists(tmp_path, model_folder, change, expected):
    result, events = collect(api_config(tmp_path, model_folder, **change))

    assert result.status == "failed" and expected in result.reason
    assert len([e for e in events if isinstance(e, TrainFailed)]) == 1 and events[-1].advice
    assert not any(isinstance(e, StepLogged) for e in events)
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())


def test_a_dataset_with_too_many_bad_rows_names_them(tmp_path, model_folder):
    data = write_jsonl(tmp_path / "bad.jsonl", n=10, bad=5)
    result, _ = collect(api_config(tmp_path, model_folder, dataset=str(data)))

    assert result.status == "failed"
    assert "bad.jsonl:11" in result.reason and "max_bad_share" in result.advice


def test_ftui_train_prints_progress_writes_the_run_and_ftui_runs_lists_it(tmp_path, model_folder, capsys):
    config = api_config(tmp_path, model_folder)
    config_file = tmp_path / "run.toml"
    config_file.write_text(config.to_toml())

    code = main(["train", "--config", str(config_file), "--set", "max_steps=2", "--set", "name=cli"])
    out = capsys.readouterr().out
    assert code == 0
    assert "step 2/2" in out and "loss" in out and "tok/s" in out and "ETA" in out
    assert "Finished" in out and "ftui export" in out

    assert main(["runs", "--dir", str(tmp_path / "runs"), "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)
    assert [(r["name"], r["status"], r["step"]) for r in runs] == [("cli", "finished", 2)]
    assert {"adapter", "tokenizer"} <= set(runs[0]["artifacts"])
    assert main(["runs", "--dir", str(tmp_path / "runs")]) == 0
    table = capsys.readouterr().out
    assert "finished" in table and "2/2" in table


def test_ftui_train_exits_non_zero_with_the_reason(tmp_path, model_folder, capsys):
    config_file = tmp_path / "run.toml"
    config_file.write_text(api_config(tmp_path, model_folder, dataset=str(tmp_path / "nope.jsonl")).to_toml())

    assert main(["train", "--config", str(config_file)]) == 1
    assert "training failed" in capsys.readouterr().err
    assert main(["train", "--config", str(config_file), "--set", "epochz=2"]) == 2
    assert "did you mean 'epochs'" in capsys.readouterr().err


def test_ctrl_c_stops_with_a_checkpoint_and_exits_130(tmp_path, model_folder):
    config_file = tmp_path / "run.toml"
    config_file.write_text(api_config(tmp_path, model_folder, max_steps=400, val_split=0.0).to_toml())
    code = "import sys, cli.main; sys.exit(cli.main.main(sys.argv[1:]))"
    proc = subprocess.Popen([sys.executable, "-c", code, "train", "--config", str(config_file)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if line.startswith("step 2/"):
            os.kill(proc.pid, signal.SIGINT)
            break
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "Interrupted: stopping after this step" in out and "saved stop checkpoint" in out and "Stopped" in out

    run = next((tmp_path / "runs").iterdir())
    assert json.loads((run / "run.json").read_text())["status"] == "stopped"
    assert main(["train", "--resume", str(run), "--set", "max_steps=5"]) == 2  # a resumed run keeps its config
