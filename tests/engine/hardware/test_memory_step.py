"""The estimator, part by part, against what torch really allocates for one training step on the CPU.

A Llama with a real vocabulary (SmolLM2's 49,152 and Llama 3's 128,256) and a small hidden size,
bf16 weights under bf16 autocast as on a GPU, LoRA on every projection, gradient checkpointing,
text data (every token trained), batch 4 x 1024: ftui's own method, loss and optimizer code runs
one step while `PeakAllocated` follows every tensor. The vocabulary makes the loss the largest
part, which is what the chunked loss changed; tests/engine/hardware/test_activations_hf.py checks the
per-layer activations at a larger hidden size.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from engine.config.schema import RunConfig  # noqa: E402
from engine.hardware.catalog import ModelSpec  # noqa: E402
from engine.hardware.estimate import GIB, HF_PEFT, HF_PEFT_FULL_LOGITS, estimate, loss_bytes  # noqa: E402
from tests.engine.hardware.allocations import PeakAllocated, tensor_bytes  # noqa: E402

pytestmark = pytest.mark.slow

HIDDEN, INTERMEDIATE, HEADS, KV_HEADS, LAYERS = 128, 344, 4, 2, 2
BATCH, LENGTH = 4, 1024


def build(vocab: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    from engine.train.methods import apply_method, build_optimizer

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        hidden_size=HIDDEN, intermediate_size=INTERMEDIATE, num_attention_heads=HEADS, num_key_value_heads=KV_HEADS,
        num_hidden_layers=LAYERS, vocab_size=vocab, max_position_embeddings=LENGTH, tie_word_embeddings=False,
    )).to(torch.bfloat16)
    params = sum(p.numel() for p in model.parameters())
    config = RunConfig.from_dict(dict(model="tiny", method="lora", lora_r=16, lora_alpha=32, lora_dropout=0.0,
                                      gradient_checkpointing=True, batch_size=BATCH, max_seq_len=LENGTH))
    model = apply_method(model, config)
    model.train()
    optimizer, _ = build_optimizer(model, config, "cpu")
    spec = ModelSpec("tiny", "tiny", "tiny", "hub", params, LAYERS, HIDDEN, HEADS, KV_HEADS, INTERMEDIATE, vocab,
                     False, LENGTH, "chatml", 16)
    return model, optimizer, spec


def one_step(model, optimizer, batch, n):
    from engine.train.loss import token_loss_sum

    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = token_loss_sum(model, batch, fast=True)
    (loss / n).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


@pytest.mark.parametrize("vocab", [49152, 128256])
def test_one_step_allocates_what_the_estimate_says_part_by_part(vocab):
    model, optimizer, spec = build(vocab)
    ids = torch.randint(3, vocab, (BATCH, LENGTH))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}
    n = BATCH * (LENGTH - 1)
    one_step(model, optimizer, batch, n)  # the first step creates the optimizer's moments

    est = estimate(spec, "lora", BATCH, LENGTH, grad_checkpointing=True, lora_r=16, runtime=HF_PEFT).breakdown
    weights = tensor_bytes(p for p in model.parameters() if not p.requires_grad)
    adapters = tensor_bytes(p for p in model.parameters() if p.requires_grad)
    moments = tensor_bytes(v for s in optimizer.state.values() for v in s.values() if v.ndim > 0)
    assert weights / GIB == pytest.approx(est["weights"], rel=0.01)
    assert adapters / GIB == pytest.approx(est["adapters"], rel=0.01)
    assert moments / GIB == pytest.approx(est["optimizer"], rel=0.01)

    # The loss alone, from the decoder's output on: one chunk of logits, never [tokens x vocab].
    base = model.get_base_model()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        hidden = base.get_decoder()(input_ids=ids).last_hidden_state
        from engine.train.loss import linear_cross_entropy

        with PeakAllocated() as loss_mem:
            loss = linear_cross_entropy(hidden[:, :-1].reshape(-1, HIDDEN), base.lm_head.weight, ids[:, 1:].reshape(-1))
            loss.backward()
    del hidden, loss
    peak, kept = loss_bytes(spec, n, HF_PEFT)
    assert loss_mem.peak == pytest.approx(peak + kept, rel=0.15)
    full_logits, _ = loss_bytes(spec, n, HF_PEFT_FULL_LOGITS)  # fp32 logits, log-softmax and gradient
    assert loss_mem.peak < full_logits / 10

    with PeakAllocated() as step_mem:
        one_step(model, optimizer, batch, n)
    # The estimate adds gradients to the peak as if accumulation kept them through the forward pass.
    predicted = est["gradients"] + est["activations"] + est["logits"]
    assert step_mem.peak / GIB == pytest.approx(predicted, rel=0.15)
