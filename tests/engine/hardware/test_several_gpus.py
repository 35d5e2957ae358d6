"""Several GPUs: the `gpus` and `strategy` settings, the per-GPU estimate under DDP and FSDP, and the
recommendation across GPUs (issue 13)."""

from __future__ import annotations

import json

import pytest

from cli.main import main
from engine.config.build import config_from_recommendation
from engine.config.presets import list_presets
from engine.config.schema import ConfigError, RunConfig, parse_gpus
from engine.hardware.catalog import get
from engine.hardware.estimate import COMM_BUFFERS_GIB, estimate, estimate_for
from engine.hardware.probe import GpuInfo, HardwareReport
from engine.hardware.recommend import recommend


@pytest.mark.parametrize(("text", "kind", "ids"), [
    ("", "", ()), ("0,1", "cuda", (0, 1)), (" 2, 3 ", "cuda", (2, 3)), ("cpu:2", "cpu", (0, 1)), ("1", "cuda", (1,)),
])
def test_gpus_reads_gpu_lists_and_cpu_processes(text, kind, ids):
    assert parse_gpus(text) == (kind, ids)
    assert RunConfig(gpus=text).world_size == max(1, len(ids))


@pytest.mark.parametrize(("text", "words"), [
    ("0,0", "names a GPU twice"), ("a,b", "not a list of GPU numbers"), ("cpu:0", "from 1 to"), ("cpu:x", "from 1 to"),
])
def test_bad_gpus_say_what_is_wrong(text, words):
    problems = [p for p in RunConfig(gpus=text).check() if p.field == "gpus"]
    assert problems and words in problems[0].message


def test_gpus_and_strategy_come_from_toml_values_and_set():
    assert RunConfig.from_dict({"gpus": [0, 1]}).gpus == "0,1"
    assert RunConfig.from_dict({"gpus": 3}).gpus == "3"
    assert RunConfig.from_dict({"strategy": "fsdp"}).strategy == "fsdp"
    with pytest.raises(ConfigError, match="not one of auto, ddp, fsdp"):
        RunConfig.from_dict({"strategy": "zero3"})


def test_oom_retry_warns_that_it_retries_in_one_process_only():
    problems = RunConfig(gpus="0,1", oom_retry=True).check()
    assert [p.level for p in problems if p.field == "oom_retry"] == ["warning"]
    assert not [p for p in RunConfig(gpus="0", oom_retry=True).check() if p.field == "oom_retry"]


def test_ddp_holds_on_each_gpu_what_one_gpu_holds_plus_the_groups_buffers():
    spec = get("llama-3.1-8b")
    one = estimate(spec, "lora", 2, 2048, grad_checkpointing=True)
    each = estimate(spec, "lora", 2, 2048, grad_checkpointing=True, world_size=4, strategy="ddp")
    assert each.strategy == "ddp" and one.strategy == ""
    assert each.peak_gib == pytest.approx(one.peak_gib + COMM_BUFFERS_GIB)
    for part in ("weights", "adapters", "gradients", "optimizer", "activations"):
        assert each.breakdown[part] == one.breakdown[part]


@pytest.mark.parametrize("method", ["lora", "qlora", "full"])
def test_fsdp_shards_weights_gradients_and_optimizer_but_not_activations(method):
    spec = get("llama-3.1-8b")
    one = estimate(spec, method, 1, 2048, grad_checkpointing=True)
    two = estimate(spec, method, 1, 2048, grad_checkpointing=True, world_size=2, strategy="fsdp")
    eight = estimate(spec, method, 1, 2048, grad_checkpointing=True, world_size=8, strategy="fsdp")
    assert sum(two.breakdown.values()) == pytest.approx(two.peak_gib)
    for part in ("gradients", "optimizer") if method == "full" else ("optimizer",):
        assert two.breakdown[part] == pytest.approx(one.breakdown[part] / 2)
        assert eight.breakdown[part] == pytest.approx(one.breakdown[part] / 8)
    if method != "full":  # adapters' gradients stay whole through a step's micro-batches (engine.train.parallel.wrap)
        assert two.breakdown["gradients"] == eight.breakdown["gradients"] == one.breakdown["gradients"]
    # The root's embeddings and lm_head stay whole on every GPU, so the weights shrink by less than N.
    assert one.breakdown["weights"] / 2 < two.breakdown["weights"] < one.breakdown["weights"]
    assert eight.breakdown["weights"] < two.breakdown["weights"]
    assert two.breakdown["activations"] == one.breakdown["activations"]
    assert two.breakdown["gathered"] > 0
    assert eight.peak_gib < two.peak_gib < one.peak_gib + COMM_BUFFERS_GIB


def test_8b_lora_halves_to_about_12_gib_per_gpu_on_two():
    """16.0 GiB of 16-bit weights, of which 1.96 GiB (embeddings and lm_head) stay whole: 8.5 GiB each."""
    spec = get("llama-3.1-8b")
    two = estimate(spec, "lora", 2, 2048, grad_checkpointing=True, world_size=2, strategy="fsdp")
    assert two.breakdown["weights"] == pytest.approx(8.46, abs=0.01)
    assert two.peak_gib == pytest.approx(12.5, abs=0.1)


def test_estimate_for_reads_gpus_and_strategy_from_the_config():
    base = RunConfig(model="llama-3.1-8b", batch_size=2, max_seq_len=2048, gradient_checkpointing=True)
    one = estimate_for(base)
    ddp = estimate_for(base.replace(gpus="0,1", strategy="ddp"))
    fsdp = estimate_for(base.replace(gpus="0,1", strategy="fsdp"))
    unsettled = estimate_for(base.replace(gpus="0,1"))
    assert one is not None and ddp is not None and fsdp is not None and unsettled is not None
    assert (one.strategy, ddp.strategy, fsdp.strategy, unsettled.strategy) == ("", "ddp", "fsdp", "ddp")
    assert fsdp.peak_gib < one.peak_gib < ddp.peak_gib


def gpu(total: float, index: int = 0, used: float = 0.4) -> GpuInfo:
    return GpuInfo(index, "NVIDIA GeForce RTX 4090", total, total - used, used, (8, 9), True)


def test_two_24_gib_cards_train_8b_lora_with_ddp_at_the_same_effective_batch():
    rec = recommend([], vram_gib=24, gpus=2)
    assert (rec.model, rec.method, rec.strategy, rec.gpus) == ("llama-3.1-8b", "lora", "ddp", "0,1")
    assert rec.batch_size * 2 * rec.grad_accum == 16
    assert rec.reason.startswith("DDP:") and "fits whole on each GPU" in rec.reason


def test_sharding_trains_a_bigger_plan_than_one_card_holds():
    """One 12 GiB card: 8B only in 4 bits. Four of them: 8B in 16 bits, sharded."""
    alone = recommend([], vram_gib=12)
    four = recommend([], vram_gib=12, gpus=4)
    assert (alone.model, alone.method, alone.strategy) == ("llama-3.1-8b-4bit", "qlora", "")
    assert (four.model, four.method, four.strategy) == ("llama-3.1-8b", "lora", "fsdp")
    assert four.reason.startswith("FSDP:") and "sharded across 4 GPUs" in four.reason
    assert "more than one GPU holds" in four.reason


def test_detected_gpus_alike_are_all_used_and_a_busy_one_is_left_out():
    both = recommend([gpu(24, 0), gpu(24, 1)])
    assert (both.gpus, both.strategy) == ("0,1", "ddp")
    busy = recommend([gpu(24, 0, used=16.0), gpu(24, 1), gpu(24, 2)])
    assert busy.gpus == "1,2"
    with pytest.raises(ValueError, match="3 GPUs asked for, 2 found"):
        recommend([gpu(24, 0), gpu(24, 1)], gpus=3)


@pytest.mark.parametrize(("size", "count"), [(24, 2), (12, 4), (8, 2), (80, 8)])
def test_the_plans_per_gpu_peak_is_the_forms_for_the_config_it_becomes(size, count):
    cards = tuple(gpu(size, i) for i in range(count))
    report = HardwareReport(cards, 16, 64.0, "550", "")
    rec = recommend(report)
    config, _ = config_from_recommendation(rec, report, list_presets(), RunConfig())
    assert (config.gpus, config.strategy, config.world_size) == (rec.gpus, rec.strategy, count)
    assert estimate_for(config).peak_gib == pytest.approx(rec.peak_gib, abs=0.01)


def test_ftui_recommend_gpus_n_vram_g(capsys):
    assert main(["recommend", "--gpus", "4", "--vram", "12"]) == 0
    out = capsys.readouterr().out
    assert "0,1,2,3 (FSDP" in out and "per GPU" in out and "FSDP:" in out
    assert main(["recommend", "--gpus", "2", "--vram", "24", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["strategy"], data["gpus"]) == ("ddp", "0,1")


def test_qlora_under_fsdp_is_refused_before_training_with_ddp_as_the_way():
    refused = [p for p in RunConfig(method="qlora", gpus="0,1", strategy="fsdp").check() if p.level == "error"]
    assert [p.field for p in refused] == ["strategy"]
    assert "fsdp cannot train method = qlora" in refused[0].message and "use strategy = ddp" in refused[0].message
    for fine in (dict(strategy="ddp"), dict(strategy="auto"), dict(gpus="0")):  # one process shards nothing
        config = RunConfig(method="qlora", **{"gpus": "0,1", "strategy": "fsdp", **fine})
        assert not [p for p in config.check() if p.level == "error"]


def test_auto_takes_ddp_for_qlora_without_weighing_fsdp(monkeypatch):
    from engine.train import launch

    def no_probe(*_args):
        raise AssertionError("qlora never needs the free memory that decides for fsdp")

    monkeypatch.setattr("engine.hardware.estimate.estimate_for", no_probe)
    monkeypatch.setattr("engine.hardware.probe", no_probe)
    assert launch.choose_strategy(RunConfig(method="qlora", gpus="0,1")) == "ddp"


def test_an_8bit_optimizer_under_fsdp_is_a_warning_and_the_estimate_counts_32bit_adamw():
    problems = RunConfig(optimizer="adamw_8bit", gpus="0,1", strategy="fsdp").check()
    assert [(p.field, p.level) for p in problems] == [("optimizer", "warning")]
    assert "32-bit AdamW" in problems[0].message and "strategy = ddp" in problems[0].message
    spec = get("llama-3.1-8b")
    eight_bit = estimate(spec, "full", 1, 2048, grad_checkpointing=True, optimizer="adamw_8bit", world_size=2,
                         strategy="fsdp")
    plain = estimate(spec, "full", 1, 2048, grad_checkpointing=True, world_size=2, strategy="fsdp")
    assert eight_bit.breakdown["optimizer"] == plain.breakdown["optimizer"]
    ddp = estimate(spec, "full", 1, 2048, grad_checkpointing=True, optimizer="adamw_8bit", world_size=2)
    assert ddp.breakdown["optimizer"] < plain.breakdown["optimizer"]


@pytest.mark.parametrize(("size", "count"), [(8, 2), (8, 4), (12, 2), (16, 2), (24, 4)])
def test_no_plan_across_gpus_shards_qlora(size, count):
    rec = recommend([], vram_gib=size, gpus=count)
    assert not (rec.method == "qlora" and rec.strategy == "fsdp"), rec.reason
