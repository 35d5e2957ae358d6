"""What FSDP cannot shard is refused or replaced before training, with the reason and the way out:
QLoRA's 4-bit weights, bitsandbytes' 8-bit optimizers, fp16 loss scaling; and adapters' gradients are
reduce-scattered once per step, not per micro-batch (issue 26)."""

from __future__ import annotations

import threading

import pytest
import torch

import engine.train.load as load
from engine.events import TrainFailed
from engine.train.load import train_here
from engine.train.methods import Precision, build_optimizer
from engine.train.parallel import Ranks
from tests.engine.train.test_train_api import api_config

FSDP_RANK = Ranks(rank=0, world=2, strategy="fsdp")
"""Rank 0 of two under FSDP, as torchrun's `--strategy fsdp` or a resumed FSDP checkpoint sets it, even when
the config says `auto`. Every refusal here comes before the process group is used."""


def refusal(config, ranks=FSDP_RANK) -> TrainFailed:
    events: list = []
    result = train_here(config, events.append, threading.Event(), ranks=ranks)
    assert result.status == "failed"
    assert isinstance(events[-1], TrainFailed)
    return events[-1]


def test_qlora_under_fsdp_is_refused_whatever_the_config_says(tmp_path, model_folder):
    failed = refusal(api_config(tmp_path, model_folder, method="qlora"))
    assert "fsdp cannot train method = qlora" in failed.reason and "use strategy = ddp" in failed.reason
    assert not (tmp_path / "runs").exists()  # refused before a run directory or a model


def test_fp16_loss_scaling_under_fsdp_is_refused(tmp_path, model_folder, monkeypatch):
    t4 = Precision("cuda", torch.float16, torch.float16, True)
    monkeypatch.setattr(load, "choose_precision", lambda *a, **k: t4)
    failed = refusal(api_config(tmp_path, model_folder))
    assert "fp16 with loss scaling" in failed.reason
    assert "strategy = ddp" in failed.advice


def test_an_8bit_optimizer_over_fsdp_shards_falls_back_to_torch_adamw_with_a_note(model_folder, monkeypatch):
    import bitsandbytes
    from transformers import AutoModelForCausalLM

    def no_dtensor_support(*_args, **_kwargs):
        raise AssertionError("bitsandbytes cannot update DTensor shards")

    monkeypatch.setattr(bitsandbytes.optim, "AdamW8bit", no_dtensor_support)
    monkeypatch.setattr(bitsandbytes.optim, "PagedAdamW8bit", no_dtensor_support)
    model = AutoModelForCausalLM.from_pretrained(model_folder)
    for name in ("adamw_8bit", "paged_adamw_8bit"):
        config = api_config(model_folder.parent, model_folder, optimizer=name)
        optimizer, note = build_optimizer(model, config, "cuda", sharded=True)
        assert type(optimizer) is torch.optim.AdamW
        assert f"{name} cannot update FSDP's sharded parameters" in note and "32-bit AdamW" in note
    with pytest.raises(AssertionError, match="DTensor"):  # unsharded, on CUDA, it is bitsandbytes' own
        build_optimizer(model, api_config(model_folder.parent, model_folder, optimizer="adamw_8bit"), "cuda")


@pytest.mark.slow
def test_several_processes_refuse_a_config_error_before_they_start(tmp_path, model_folder):
    """`ftui train --set method=qlora --set strategy=fsdp --gpus cpu:2` trained to a validation loss of 15.9
    where DDP reached 2.3; it is refused in the launching process, so no process is named as its cause."""
    from engine.train import train

    events: list = []
    config = api_config(tmp_path, model_folder, method="qlora", strategy="fsdp", gpus="cpu:2")
    result = train(config, events.append, threading.Event())
    assert result.status == "failed" and [type(e) for e in events] == [TrainFailed]
    assert "fsdp cannot train method = qlora" in result.reason and "(process" not in result.reason


@pytest.fixture
def one_process_group():
    """A gloo group of this process alone: enough for fully_shard, no second process to start."""
    import socket

    import torch.distributed as dist

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


@pytest.mark.parametrize("method", ["lora", "full"])
def test_fsdp_reduce_scatters_adapter_gradients_once_per_step(model_folder, monkeypatch, one_process_group, method):
    import torch.distributed.fsdp._fully_shard._fsdp_param_group as param_group
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from engine.train.batching import collate
    from engine.train.parallel import wrap
    from tests.engine.train.tiny import make_examples

    reductions: list = []
    real = param_group.foreach_reduce
    monkeypatch.setattr(param_group, "foreach_reduce", lambda *a, **k: reductions.append(1) or real(*a, **k))
    model = AutoModelForCausalLM.from_pretrained(model_folder)
    if method == "lora":
        model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    loss, accumulate = wrap(model, True, FSDP_RANK, adapters=method == "lora")
    batch = collate(make_examples(2), 0)
    with accumulate():  # a micro-batch but the step's last
        loss(batch).backward()
    held = len(reductions)
    loss(batch).backward()  # the last
    assert len(reductions) > held
    if method == "lora":
        assert held == 0
    else:
        assert held > 0  # holding every weight's whole gradient is what FSDP exists to avoid
