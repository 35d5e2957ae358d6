"""The memory estimator against published measurements, and the directions a user relies on."""

from __future__ import annotations

import pytest

from engine.hardware.catalog import get
from engine.hardware.estimate import (
    GIB,
    HF_PEFT,
    HF_PEFT_FULL_LOGITS,
    TORCHTUNE,
    TORCHTUNE_OFFLOAD,
    estimate,
    loss_bytes,
)

TT_8B_LORA = ("q_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
TT_8B_QLORA = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

# torchtune README (github.com/pytorch/torchtune, "Memory and training speed" and "Optimization
# flags"). Setups from its recipe configs: bf16, activation checkpointing, AdamW (32-bit),
# compiled with chunked cross-entropy; 8B rows: batch 2, packed to 2048 tokens,
# llama3_1/8B_lora_single_device (rank 8; q, v, output + MLP) and 8B_qlora_single_device (rank 8,
# k too), RTX 4090; 3B rows: batch 2, 4096 tokens, rank 64 (q, v, output + MLP), with activation
# offloading, A100. torchtune reports torch's allocator peak, so compare `tensors_gib` (no CUDA
# context, no fragmentation).
CALIBRATION = [
    ("llama-3.1-8b", "lora", 2, 2048, 8, TT_8B_LORA, TORCHTUNE, 16.2),
    ("llama-3.1-8b", "qlora", 2, 2048, 8, TT_8B_QLORA, TORCHTUNE, 7.4),
    ("llama-3.2-3b", "lora", 2, 4096, 64, TT_8B_LORA, TORCHTUNE_OFFLOAD, 8.5),
    ("llama-3.2-3b", "qlora", 2, 4096, 64, TT_8B_LORA, TORCHTUNE_OFFLOAD, 4.6),
]


@pytest.mark.parametrize(("model", "method", "batch", "seq", "rank", "targets", "runtime", "published"), CALIBRATION)
def test_within_20_percent_of_torchtune_measurements(model, method, batch, seq, rank, targets, runtime, published):
    est = estimate(get(model), method, batch, seq, grad_checkpointing=True, lora_r=rank,
                   target_modules=targets, runtime=runtime)
    assert est.tensors_gib == pytest.approx(published, rel=0.20)


def test_breakdown_adds_up_and_names_every_part():
    est = estimate(get("llama-3.1-8b"), "qlora", 2, 2048, grad_checkpointing=True)
    assert sum(est.breakdown.values()) == pytest.approx(est.peak_gib)
    for part in ("weights", "adapters", "gradients", "optimizer", "activations", "logits", "cuda_context"):
        assert part in est.breakdown
    assert all(v >= 0 for v in est.breakdown.values())


def test_weights_16bit_and_nf4():
    spec = get("llama-3.1-8b")
    lora = estimate(spec, "lora", 1, 512).breakdown["weights"]
    qlora = estimate(spec, "qlora", 1, 512, runtime=TORCHTUNE).breakdown["weights"]
    assert lora == pytest.approx(spec.params * 2 / 1024**3)
    # ~4.13 bits per quantised weight; embeddings and lm_head (1.05 B params) stay 16-bit.
    assert qlora == pytest.approx(5.31, abs=0.05)


@pytest.mark.parametrize("model", ["smollm2-135m", "llama-3.2-1b", "llama-3.2-3b", "llama-3.1-8b"])
@pytest.mark.parametrize("method", ["lora", "qlora", "dora", "full"])
def test_monotonic_in_batch_and_sequence(model, method):
    spec = get(model)
    by_batch = [estimate(spec, method, b, 1024).peak_gib for b in (1, 2, 4, 8)]
    by_seq = [estimate(spec, method, 2, s).peak_gib for s in (256, 512, 1024, 4096)]
    assert by_batch == sorted(by_batch) and len(set(by_batch)) == 4
    assert by_seq == sorted(by_seq) and len(set(by_seq)) == 4


@pytest.mark.parametrize("model", ["llama-3.2-1b", "llama-3.2-3b", "llama-3.1-8b"])
def test_four_bit_needs_less_than_16_bit(model):
    spec = get(model)
    assert estimate(spec, "qlora", 2, 2048).peak_gib < estimate(spec, "lora", 2, 2048).peak_gib
    # A -4bit catalog entry is 4-bit whatever the method says.
    four = get(model + "-4bit")
    assert estimate(four, "lora", 2, 2048).peak_gib < estimate(spec, "lora", 2, 2048).peak_gib


@pytest.mark.parametrize("method", ["lora", "qlora", "full"])
def test_checkpointing_needs_less(method):
    spec = get("llama-3.2-3b")
    with_ckpt = estimate(spec, method, 4, 2048, grad_checkpointing=True)
    without = estimate(spec, method, 4, 2048)
    assert with_ckpt.peak_gib < without.peak_gib
    assert with_ckpt.breakdown["activations"] < without.breakdown["activations"] / 5


def test_method_ordering_and_optimizer():
    spec = get("llama-3.2-1b")
    peak = {m: estimate(spec, m, 2, 1024, grad_checkpointing=True).peak_gib for m in ("qlora", "lora", "dora", "full")}
    assert peak["qlora"] < peak["lora"] < peak["dora"] < peak["full"]
    full32 = estimate(spec, "full", 2, 1024, optimizer="adamw").breakdown["optimizer"]
    full8 = estimate(spec, "full", 2, 1024, optimizer="adamw_8bit").breakdown["optimizer"]
    assert full32 == pytest.approx(4 * full8)  # 8 vs 2 bytes per trainable weight
    assert full32 == pytest.approx(spec.params * 8 / 1024**3)


def test_rank_and_targets_scale_the_adapters():
    spec = get("llama-3.1-8b")
    r16 = estimate(spec, "lora", 1, 512, lora_r=16).breakdown["adapters"]
    r64 = estimate(spec, "lora", 1, 512, lora_r=64).breakdown["adapters"]
    qv = estimate(spec, "lora", 1, 512, lora_r=16, target_modules=["q_proj", "v_proj"]).breakdown["adapters"]
    assert r64 == pytest.approx(4 * r16)
    assert qv < r16 / 5
    # All 7 projections at rank 16 on Llama 3.1 8B: 41.9 M fp32 adapter weights.
    assert r16 == pytest.approx(41_943_040 * 4 / 1024**3)


def test_large_vocabulary_logits_dominated_the_full_logits_loss():
    """Llama 3's 128,256-token vocabulary: with the full-logits loss ftui had before, the loss, not
    the layers, set the peak at batch 2; the chunked loss holds one chunk and its kept rows."""
    spec = get("llama-3.2-1b")
    before = estimate(spec, "lora", 2, 2048, grad_checkpointing=True, runtime=HF_PEFT_FULL_LOGITS)
    assert before.breakdown["logits"] > before.breakdown["activations"] + before.breakdown["weights"]
    now = estimate(spec, "lora", 2, 2048, grad_checkpointing=True, runtime=HF_PEFT)
    assert now.breakdown["logits"] < 0.2 < 4.5 < before.breakdown["logits"]
    # More tokens add kept rows (tokens x hidden), never a larger chunk of logits.
    assert loss_bytes(spec, 4096)[0] == loss_bytes(spec, 65536)[0] < 0.2 * GIB


def test_the_runtime_describes_the_loss_ftui_runs():
    from engine.train import loss

    assert HF_PEFT.loss_chunk_elements == loss.CHUNK_ELEMENTS
    assert HF_PEFT.loss_bytes_per_logit == loss.CHUNK_BYTES_PER_ELEMENT


def test_qlora_keeps_embeddings_16_bit():
    """Llama 3.1 8B: 1.05 B embedding and lm_head parameters at 2 bytes, not 4 as under the fp32 upcast."""
    spec = get("llama-3.1-8b")
    now = estimate(spec, "qlora", 1, 2048, grad_checkpointing=True).breakdown
    before = estimate(spec, "qlora", 1, 2048, grad_checkpointing=True, runtime=HF_PEFT_FULL_LOGITS).breakdown
    assert before["weights"] - now["weights"] == pytest.approx(1.96, abs=0.02)
    assert before["workspace"] - now["workspace"] == pytest.approx(0.98, abs=0.01)  # no 16-bit lm_head copy


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"method": "sft"}, "method 'sft'"),
    ({"optimizer": "sgd"}, "optimizer 'sgd'"),
    ({"target_modules": ["qkv"]}, "qkv"),
    ({"batch_size": 0}, "at least 1"),
])
def test_bad_arguments_say_what(kwargs, words):
    args = {"method": "lora", "batch_size": 1, **kwargs}
    with pytest.raises(ValueError, match=words):
        estimate(get("llama-3.2-1b"), args.pop("method"), args.pop("batch_size"), 512, **args)


def test_full_fine_tuning_refuses_four_bit_weights():
    with pytest.raises(ValueError, match="llama-3.2-1b"):
        estimate(get("llama-3.2-1b-4bit"), "full", 1, 512)


def test_preference_objectives_hold_two_sequences_per_pair():
    """A dpo or orpo batch of 4 pairs is 8 sequences: activations and loss memory of batch 8 of SFT,
    weights and optimizer as they were; DPO's no-grad reference pass adds nothing to the peak."""
    spec = get("llama-3.2-1b")
    sft8 = estimate(spec, "lora", 8, 1024)
    for objective in ("dpo", "orpo"):
        pairs4 = estimate(spec, "lora", 4, 1024, objective=objective)
        assert pairs4.breakdown == sft8.breakdown
    assert estimate(spec, "lora", 4, 1024, objective="sft").peak_gib < sft8.peak_gib
