"""What goes wrong becomes a TrainFailed a person can act on; early stopping keeps the best adapter."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

from engine.data.types import PreparedData, TokenizedExample
from engine.events import CheckpointSaved, Diagnosis, EvalLogged, Progress, StepLogged, TrainFailed, TrainFinished
from engine.hardware.catalog import get
from engine.train.preflight import suggest_smaller
from engine.train.varlen_attention import SEGMENTS
from tests.engine.train.tiny import VOCAB, make_examples, make_tokenizer, run_tiny, tiny_config


def oom_above(limit: int):
    """A model whose forward raises CUDA's out-of-memory error for batches of more than `limit`
    examples (padded rows, or the examples of a packed row)."""
    import torch

    def wrap(model, config):
        def hook(module, args, kwargs):
            bounds = kwargs.get(SEGMENTS)
            if (len(bounds) - 1 if bounds else kwargs["input_ids"].shape[0]) > limit:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

        model.get_decoder().register_forward_pre_hook(hook, with_kwargs=True)
        return model

    return wrap


def even_lengths() -> PreparedData:
    """Equal lengths: no batch exceeds the token budget, so batches reach the model whole."""
    return PreparedData(counting(48, 0, 1), counting(8, 1, 1), format="messages")


@pytest.mark.slow
def test_out_of_memory_fails_naming_the_setting_and_a_smaller_one(tmp_path, model_folder):
    result, events = run_tiny(tiny_config(tmp_path, batch_size=4, grad_accum=2), model_folder, wrap=oom_above(2),
                              data=even_lengths())

    assert result.status == "failed"
    failed = events[-1]
    assert isinstance(failed, TrainFailed) and failed.step == 1
    assert "out of memory" in failed.reason and "batch_size 4" in failed.reason
    assert "24-token sequence (max_seq_len 64)" in failed.reason
    assert "batch_size = 2, grad_accum = 4" in failed.advice and "oom_retry" in failed.advice
    assert not any(isinstance(e, StepLogged) for e in events)
    assert json.loads((Path(result.run_dir) / "run.json").read_text())["status"] == "failed"


@pytest.mark.slow
def test_oom_retry_runs_again_at_half_the_batch_with_double_accumulation(tmp_path, model_folder):
    config = tiny_config(tmp_path, batch_size=4, grad_accum=2, oom_retry=True)
    result, events = run_tiny(config, model_folder, wrap=oom_above(2), data=even_lengths())

    assert result.status == "finished"
    retry = [e for e in events if isinstance(e, Progress) and e.stage == "oom-retry"]
    assert len(retry) == 1 and "batch_size 2 and grad_accum 4" in retry[0].message
    saved = (Path(result.run_dir) / "config.toml").read_text()
    assert "batch_size = 2\n" in saved and "grad_accum = 4\n" in saved


@pytest.mark.slow
def test_oom_retry_happens_once_then_fails(tmp_path, model_folder):
    result, events = run_tiny(tiny_config(tmp_path, batch_size=4, oom_retry=True), model_folder, wrap=oom_above(1),
                              data=even_lengths())
    assert result.status == "failed" and "batch_size 2" in result.reason
    assert sum(isinstance(e, Progress) and e.stage == "oom-retry" for e in events) == 1


def test_the_estimator_names_a_smaller_setting_predicted_to_fit():
    config = tiny_config(Path("."), method="lora", batch_size=16, grad_accum=1, max_seq_len=2048)
    advice = suggest_smaller(config, get("llama-3.2-1b"), 16, 2048, free_gib=8.0)
    assert "predicted to fit" in advice and "set batch_size = " in advice
    batch = int(advice.split("set batch_size = ")[1].split(",")[0])
    accum = int(advice.split("grad_accum = ")[1].split(",")[0].split()[0])
    assert batch < 16 and batch * accum >= 16


def cuda_oom(*_args, **_kwargs):
    import torch

    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


@pytest.mark.slow
@pytest.mark.parametrize("where", ["torch.optim.AdamW.step", "torch.nn.utils.clip_grad_norm_"])
def test_out_of_memory_in_the_optimizer_step_names_it_and_smaller_states(tmp_path, model_folder, monkeypatch, where):
    monkeypatch.setattr(where, cuda_oom)
    result, events = run_tiny(tiny_config(tmp_path, oom_retry=True), model_folder, data=even_lengths())

    assert result.status == "failed" and not result.reason.startswith("unexpected error")
    assert "ran out of memory at step 1 in the optimizer step" in result.reason
    assert "optimizer = adamw_8bit" in result.advice and "lora_r (now 4)" in result.advice
    assert not any(isinstance(e, Progress) and e.stage == "oom-retry" for e in events)  # a smaller batch won't help
    assert isinstance(events[-1], TrainFailed) and events[-1].step == 1


def oom_when_evaluating(model, config):
    import torch

    def hook(module, args):
        if not torch.is_grad_enabled():
            cuda_oom()

    model.get_decoder().register_forward_pre_hook(hook)
    return model


@pytest.mark.slow
def test_out_of_memory_while_evaluating_names_the_validation_batch(tmp_path, model_folder):
    result, events = run_tiny(tiny_config(tmp_path), model_folder, wrap=oom_when_evaluating, data=even_lengths())

    assert result.status == "failed" and not result.reason.startswith("unexpected error")
    assert "ran out of memory evaluating at step 3: a validation batch of 4 examples padded to 24 tokens" in result.reason
    assert "batch_size = 2" in result.advice and "oom_retry" in result.advice
    assert [e.step for e in events if isinstance(e, StepLogged)] == [1, 2, 3]


@pytest.mark.slow
def test_out_of_memory_while_the_run_sets_up_is_no_unexpected_error(tmp_path, model_folder, monkeypatch):
    import engine.train.setup as setup

    monkeypatch.setattr(setup, "build_optimizer", cuda_oom)
    result, events = run_tiny(tiny_config(tmp_path), model_folder)

    assert result.status == "failed" and "ran out of memory before the first step" in result.reason
    assert "method = qlora" in result.advice
    assert not (Path(result.run_dir) / "error.log").exists()


def test_a_model_that_does_not_fit_when_moved_to_the_device_is_a_load_error(model_folder, monkeypatch):
    from transformers import PreTrainedModel

    from engine.models import ModelLoadError, load_causal_lm, resolve_model

    monkeypatch.setattr(PreTrainedModel, "to", cuda_oom)
    with pytest.raises(ModelLoadError, match="does not fit in cpu memory"):
        load_causal_lm(resolve_model(str(model_folder)))


def nan_from_call(n: int):
    """The decoder's output turns NaN from its n-th training forward on."""

    def wrap(model, config):
        calls = [0]

        def hook(module, args, output):
            if module.training:
                calls[0] += 1
                if calls[0] >= n:
                    output.last_hidden_state = output.last_hidden_state * float("nan")
            return output

        model.get_decoder().register_forward_hook(hook)
        return model

    return wrap


@pytest.mark.slow
def test_a_nan_loss_stops_the_run_with_the_cause(tmp_path, model_folder):
    # grad_accum 2: the 5th forward is the first of step 3.
    result, events = run_tiny(tiny_config(tmp_path, val_split=0.0), model_folder, wrap=nan_from_call(5),
                              data=even_lengths())

    assert result.status == "failed" and result.steps == 3
    assert [e.step for e in events if isinstance(e, StepLogged)] == [1, 2]
    diagnosis = next(e for e in events if isinstance(e, Diagnosis))
    assert diagnosis.kind == "divergence" and "nan" in diagnosis.message and "learning_rate" in diagnosis.advice
    assert isinstance(events[-1], TrainFailed) and "diverged" in events[-1].reason
    assert json.loads((Path(result.run_dir) / "run.json").read_text())["status"] == "failed"


@pytest.mark.slow
def test_a_full_disk_while_checkpointing_becomes_a_clear_failure(tmp_path, model_folder, monkeypatch):
    import engine.train.loop as loop

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(loop, "save_checkpoint", full_disk)
    result, events = run_tiny(tiny_config(tmp_path, save_interval=2, val_split=0.0), model_folder)

    assert result.status == "failed" and result.steps == 2
    assert "disk is full" in events[-1].reason and "free disk space" in events[-1].advice


@pytest.mark.slow
def test_too_little_disk_space_fails_before_the_first_step(tmp_path, model_folder, monkeypatch):
    import shutil

    import engine.train.preflight as preflight

    monkeypatch.setattr(preflight.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
    result, events = run_tiny(tiny_config(tmp_path), model_folder)

    assert result.status == "failed" and "not enough disk space" in result.reason
    assert not any(isinstance(e, StepLogged) for e in events)


def test_the_disk_check_counts_every_checkpoint_a_run_keeps_at_once(tmp_path, monkeypatch):
    import shutil

    import engine.train.preflight as preflight

    # keep 3: the newest three, the best one and the next one before pruning; never more than are written.
    assert preflight.checkpoints_on_disk(3, 1000, 50) == 5
    assert preflight.checkpoints_on_disk(3, 60, 50) == 2
    assert preflight.checkpoints_on_disk(0, 1000, 50) == 21
    trainable = 10**8  # 1.2 GB per checkpoint (weights and AdamW states)
    free = preflight.bytes_needed(trainable, 0, "lora") + 1
    monkeypatch.setattr(preflight.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**12, 10**12 - free, free))
    preflight.check_free_space(tmp_path, trainable, "lora", 0, checkpoints=1)
    with pytest.raises(preflight.PreflightError) as refused:
        preflight.check_free_space(tmp_path, trainable, "lora", 0, checkpoints=5)
    assert "5 checkpoints at once" in refused.value.reason and "keep_checkpoints" in refused.value.advice


def counting(n: int, seed: int, direction: int) -> tuple[TokenizedExample, ...]:
    """Sequences that count up (direction 1) or down (-1): learning one makes the other less likely."""
    import random

    rng = random.Random(seed)
    out = []
    for i in range(n):
        start = rng.randint(3, VOCAB - 1)
        ids = tuple(3 + (start + direction * k) % (VOCAB - 3) for k in range(24))
        out.append(TokenizedExample(ids, (-100,) * 4 + ids[4:], i + 1))
    return tuple(out)


@pytest.mark.slow
def test_early_stopping_keeps_the_adapter_of_the_best_evaluation(tmp_path, model_folder):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from engine.train.methods import choose_precision
    from engine.train.step import evaluate_loss

    # Trained on counting up, validated on counting down: validation loss rises as it learns.
    data = PreparedData(counting(64, 0, 1), counting(8, 1, -1), format="messages")
    config = tiny_config(tmp_path, eval_interval=1, early_stopping_patience=2, max_steps=30, grad_accum=1,
                         learning_rate=1e-3, warmup_steps=0, scheduler="constant")
    result, events = run_tiny(config, model_folder, data=data)

    evals = [e for e in events if isinstance(e, EvalLogged)]
    assert result.status == "stopped" and "early stopping" in result.reason
    assert len(evals) < 30
    best = min(evals, key=lambda e: e.val_loss)
    assert [e.val_loss > best.val_loss for e in evals[-2:]] == [True, True]
    assert result.best_val_loss == pytest.approx(best.val_loss)
    finished = events[-1]
    assert isinstance(finished, TrainFinished) and finished.stopped
    assert [c.reason for c in events if isinstance(c, CheckpointSaved)][-1] == "stop"

    base = AutoModelForCausalLM.from_pretrained(model_folder)
    tuned = PeftModel.from_pretrained(base, result.adapter_dir)
    with torch.no_grad():
        reloaded = evaluate_loss(tuned, data.val, 4, make_tokenizer().pad_token_id, choose_precision("lora", "cpu"),
                                 fast=True)
    assert reloaded == pytest.approx(best.val_loss, abs=1e-5)


@pytest.mark.slow
def test_training_loss_falls_on_learnable_data_with_full_fine_tuning(tmp_path, model_folder):
    data = PreparedData(make_examples(64), (), format="messages")
    config = tiny_config(tmp_path, method="full", val_split=0.0, max_steps=30, grad_accum=1, learning_rate=1e-3)
    result, events = run_tiny(config, model_folder, data=data)
    steps = [e.loss for e in events if isinstance(e, StepLogged)]
    assert result.status == "finished"
    assert sum(steps[-5:]) / 5 < 0.9 * sum(steps[:5]) / 5
