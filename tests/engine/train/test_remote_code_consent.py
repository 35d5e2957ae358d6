"""A run's own config.toml saying trust_remote_code = true is not consent: exporting, evaluating
or resuming a run someone else made asks for --trust-remote-code first (a shared run folder would
otherwise run its model repository's code unasked)."""

from __future__ import annotations

import threading
import tomllib
from pathlib import Path

import pytest

from cli.main import main
from engine.config.schema import RunConfig
from engine.eval.evaluate import evaluate
from engine.events import TrainFailed
from engine.train import train
from tests.engine.train.test_train_api import api_config

pytestmark = pytest.mark.slow


def trusting(config_file: Path) -> None:
    config = RunConfig.from_dict(tomllib.loads(config_file.read_text()))
    config_file.write_text(config.replace(trust_remote_code=True).to_toml())


def test_export_eval_and_resume_of_a_run_that_trusts_remote_code_ask_first(tmp_path, model_folder, capsys):
    done = train(api_config(tmp_path, model_folder, max_steps=2, save_interval=1), lambda e: None, threading.Event())
    run = Path(done.run_dir)
    trusting(run / "config.toml")
    for checkpoint in (run / "checkpoints").iterdir():
        trusting(checkpoint / "config.toml")

    assert main(["export", str(run), "--quant", "F16"]) != 0
    err = capsys.readouterr().err
    assert "its config.toml says trust_remote_code = true, so loading it runs Python code" in err
    assert "--trust-remote-code" in err and not (run / "export").exists()

    report = evaluate(run)
    assert report.failure is not None and "trust_remote_code = true" in report.failure.reason

    events: list = []
    result = train(RunConfig(), events.append, threading.Event(), resume=str(run))
    assert result.status == "failed" and isinstance(events[-1], TrainFailed)
    assert "trust_remote_code = true" in events[-1].reason and "--trust-remote-code" in events[-1].advice

    # With the user's own word it goes ahead: the merge runs (this tiny model's word-level tokenizer
    # then has no llama.cpp pre-tokenizer, which is another matter).
    main(["export", str(run), "--quant", "F16", "--trust-remote-code"])
    assert "trust_remote_code" not in capsys.readouterr().err
    assert (run / "export" / "merged" / "config.json").is_file()
