"""The training loop on a tiny real Llama: events, run directory, determinism, stop and resume."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from engine.config.schema import RunConfig
from engine.events import (
    CheckpointSaved,
    EvalLogged,
    StepLogged,
    TrainFinished,
    TrainStarted,
)
from engine.runs import complete_checkpoints, read_events
from tests.engine.train.tiny import run_tiny, tiny_config


def kinds(events):
    return [type(e).__name__ for e in events]


def losses(events):
    return {e.step: e.loss for e in events if isinstance(e, StepLogged)}


@pytest.mark.slow
def test_a_short_run_reports_each_stage_in_order(tmp_path, model_folder):
    result, events = run_tiny(tiny_config(tmp_path), model_folder)

    assert result.status == "finished" and result.steps == 6
    names = [n for n in kinds(events) if n != "Progress"]
    assert names == [
        "TrainStarted",
        "StepLogged", "StepLogged", "StepLogged", "EvalLogged", "CheckpointSaved",
        "StepLogged", "CheckpointSaved",
        "StepLogged", "StepLogged", "EvalLogged", "CheckpointSaved", "CheckpointSaved",
        "TrainFinished",
    ]
    started = events[kinds(events).index("TrainStarted")]
    assert started.total_steps == 6 and started.train_examples == 48 and started.val_examples == 8
    assert 0 < started.trainable_params < started.total_params
    assert started.device == "cpu fp32"
    assert started.pad_share == 0.0  # packed rows by default
    steps = [e for e in events if isinstance(e, StepLogged)]
    assert [s.step for s in steps] == [1, 2, 3, 4, 5, 6]
    assert all(s.tokens_per_s > 0 and s.peak_mem_gib > 0 and s.grad_norm > 0 for s in steps)
    assert steps[-1].eta_s == 0 and steps[-1].epoch == 1.0
    assert [c.reason for c in events if isinstance(c, CheckpointSaved)] == ["best", "interval", "best", "final"]


@pytest.mark.slow
def test_the_run_directory_holds_config_metrics_checkpoints_adapter_and_tokenizer(tmp_path, model_folder):
    config = tiny_config(tmp_path)
    result, events = run_tiny(config, model_folder)
    run = Path(result.run_dir)

    assert run.parent == tmp_path / "runs" and run.name.endswith("-tiny")
    saved = RunConfig.from_dict(tomllib.loads((run / "config.toml").read_text()))
    assert saved == config
    status = json.loads((run / "run.json").read_text())
    assert status["status"] == "finished" and status["step"] == 6 and status["total_steps"] == 6
    assert status["best_val_loss"] == pytest.approx(result.best_val_loss)
    assert status["model_ref"] == str(model_folder) and status["method"] == "lora"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["event"] for r in records] == kinds(events)
    # The runs screen redraws a past run's charts from these lines.
    assert read_events(run) == events
    assert [p.name for p in complete_checkpoints(run)] == ["step-4", "step-6"]
    for ckpt in complete_checkpoints(run):
        assert {"trainable.safetensors", "optimizer.pt", "scheduler.pt", "rng.pt", "state.json",
                "config.toml"} <= {p.name for p in ckpt.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in (run / "adapter").iterdir()}
    assert (run / "tokenizer" / "tokenizer_config.json").exists()
    assert not list(run.rglob("*.partial"))


@pytest.mark.slow
def test_the_adapter_loads_with_peft_in_a_fresh_process_and_changes_the_output(tmp_path, model_folder):
    result, _ = run_tiny(tiny_config(tmp_path, learning_rate=1e-3), model_folder)
    code = f"""
import torch
from transformers import AutoModelForCausalLM
from peft import PeftModel
base = AutoModelForCausalLM.from_pretrained({str(model_folder)!r})
ids = torch.tensor([[5, 6, 7, 8, 9, 10]])
before = base(ids).logits
tuned = PeftModel.from_pretrained(base, {result.adapter_dir!r})
after = tuned(ids).logits
print((after - before).abs().max().item())
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert float(out.stdout.strip().splitlines()[-1]) > 1e-4


@pytest.mark.slow
def test_the_same_seed_gives_the_same_losses_and_another_seed_does_not(tmp_path, model_folder):
    config = tiny_config(tmp_path, lora_dropout=0.1, val_split=0.0)
    _, first = run_tiny(config, model_folder)
    _, second = run_tiny(config, model_folder)
    _, other = run_tiny(config.replace(seed=7), model_folder)
    assert losses(first) == losses(second)
    assert losses(first) != losses(other)


@pytest.mark.slow
def test_stop_ends_within_a_step_with_a_checkpoint(tmp_path, model_folder):
    def stop_at_2(event, stop):
        if isinstance(event, StepLogged) and event.step == 2:
            stop.set()

    result, events = run_tiny(tiny_config(tmp_path, save_interval=100), model_folder, on_step=stop_at_2)

    assert result.status == "stopped" and result.steps == 2
    assert [e.step for e in events if isinstance(e, StepLogged)] == [1, 2]
    saved = [e for e in events if isinstance(e, CheckpointSaved)]
    assert [(c.step, c.reason) for c in saved] == [(2, "stop"), (2, "final")]
    finished = events[-1]
    assert isinstance(finished, TrainFinished) and finished.stopped
    assert json.loads((Path(result.run_dir) / "run.json").read_text())["status"] == "stopped"
    assert Path(result.adapter_dir, "adapter_model.safetensors").exists()


@pytest.mark.slow
def test_resume_continues_with_the_losses_of_an_uninterrupted_run(tmp_path, model_folder):
    # Dropout on: the resumed run must also restore the random state, not just the weights.
    config = tiny_config(tmp_path, lora_dropout=0.1, epochs=2.0, save_interval=100, eval_interval=5)
    _, whole = run_tiny(config, model_folder)

    def stop_at_5(event, stop):
        if isinstance(event, StepLogged) and event.step == 5:
            stop.set()

    first, _ = run_tiny(config, model_folder, on_step=stop_at_5)
    resumed, events = run_tiny(config, model_folder, resume=first.run_dir)

    assert resumed.status == "finished" and resumed.run_dir == first.run_dir
    started = next(e for e in events if isinstance(e, TrainStarted))
    assert started.start_step == 5
    after = losses(events)
    assert sorted(after) == list(range(6, 13))
    for step, loss in after.items():
        assert loss == pytest.approx(losses(whole)[step], abs=1e-4)
    evals = [e.val_loss for e in events if isinstance(e, EvalLogged)]
    assert evals == pytest.approx([e.val_loss for e in whole if isinstance(e, EvalLogged) and e.step > 5], abs=1e-4)
    records = [json.loads(line) for line in (Path(first.run_dir) / "metrics.jsonl").read_text().splitlines()]
    logged = [r["step"] for r in records if r["event"] == "StepLogged"]
    assert logged == list(range(1, 13))


KILLED_RUN = """
import os, signal, sys, threading
sys.path.insert(0, {root!r})
from pathlib import Path
from engine.events import CheckpointSaved, StepLogged
from tests.engine.train.tiny import loaded_for, tiny_config
from engine.train import run_loaded
config = tiny_config(Path({tmp!r}), lora_dropout=0.1, epochs=2.0, save_interval=4, eval_interval=5)
def on_event(event):
    if isinstance(event, CheckpointSaved) and event.reason == "interval" and event.step == 8:
        os.kill(os.getpid(), signal.SIGKILL)
run_loaded(config, loaded_for(Path({model!r})), on_event, threading.Event())
"""


@pytest.mark.slow
def test_a_run_killed_with_sigkill_resumes_from_its_last_complete_checkpoint(tmp_path, model_folder):
    root = str(Path(__file__).resolve().parents[3])
    code = KILLED_RUN.format(root=root, tmp=str(tmp_path), model=str(model_folder))
    killed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180, cwd=root)
    assert killed.returncode == -9, killed.stderr[-2000:]
    run = next((tmp_path / "runs").iterdir())
    assert json.loads((run / "run.json").read_text())["status"] == "running"
    # A checkpoint cut short by the kill keeps its temporary name and is never picked.
    (run / "checkpoints" / ".step-12.abc.partial").mkdir()
    assert [p.name for p in complete_checkpoints(run)] == ["step-4", "step-8"]

    from engine.runs import read_run
    assert read_run(run).status == "interrupted"

    config = tiny_config(tmp_path, lora_dropout=0.1, epochs=2.0, save_interval=4, eval_interval=5)
    resumed, events = run_tiny(config, model_folder, resume=str(run))
    _, whole = run_tiny(config.replace(output_dir=str(tmp_path / "whole")), model_folder)

    assert resumed.status == "finished"
    assert next(e for e in events if isinstance(e, TrainStarted)).start_step == 8
    for step, loss in losses(events).items():
        assert loss == pytest.approx(losses(whole)[step], abs=1e-4)
    assert read_run(run).status == "finished"


@pytest.mark.slow
def test_resume_without_a_checkpoint_fails_with_a_reason(tmp_path, model_folder):
    result, events = run_tiny(tiny_config(tmp_path), model_folder, resume=str(tmp_path / "nowhere"))
    assert result.status == "failed" and "no complete checkpoint" in result.reason
    assert kinds(events) == ["TrainFailed"]


def test_long_batches_are_split_into_forwards_within_the_token_budget():
    from engine.train.batching import Schedule

    lengths = tuple([20] * 30 + [60] * 6)
    schedule = Schedule(lengths, batch_size=4, grad_accum=1, seed=0, epochs=1.0, max_steps=0)
    budget = schedule.token_budget
    assert budget == 4 * 27  # mean length 26.7, rounded up
    seen = []
    for step in range(1, schedule.total_steps + 1):
        for forward in schedule.step_batches(step):
            assert len(forward) * max(lengths[i] for i in forward) <= budget
            seen.extend(forward)
    assert sorted(seen) == list(range(len(lengths)))  # every example once per epoch
