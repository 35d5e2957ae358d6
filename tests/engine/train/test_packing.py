"""Packed batches: examples end to end in one row, kept apart by per-example attention, give the
padded batch's loss and gradients without padding and without a [tokens x tokens] mask.

Tolerances, fp32 on the CPU: relative 1e-5 on the loss and 1e-4 of the largest gradient entry (the
same sums in another order: one row against several padded ones); over a short run, 1e-4 on each
step's loss (AdamW's normalised steps carry the rounding on).
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from engine.data.types import TokenizedExample  # noqa: E402
from engine.events import StepLogged, TrainStarted  # noqa: E402
from engine.train import varlen_attention  # noqa: E402
from engine.train.batching import collate, pad_share, split_by_tokens  # noqa: E402
from engine.train.loss import token_loss_sum  # noqa: E402
from engine.train.varlen_attention import SEGMENTS, use_varlen_attention  # noqa: E402
from tests.engine.train.test_loss import adapted, grads  # noqa: E402
from tests.engine.train.tiny import make_examples, run_tiny, tiny_config  # noqa: E402


def every_token_trained(examples):
    """As for text data: the label of every token is the token, so a boundary would be trained."""
    return [TokenizedExample(e.input_ids, e.input_ids, e.source_line) for e in examples]


@pytest.mark.slow
@pytest.mark.parametrize("short_path", [True, False])
@pytest.mark.parametrize("responses_only", [True, False])
@pytest.mark.parametrize("fast", [True, False])
def test_a_packed_row_gives_the_padded_loss_and_gradients(model_folder, monkeypatch, responses_only, fast, short_path):
    # The examples are 9-41 tokens: all take the CPU's short-sequence attention, or all SDPA.
    monkeypatch.setattr(varlen_attention, "SHORT_ON_CPU", 128 if short_path else 0)
    examples = make_examples(8)
    if not responses_only:
        examples = every_token_trained(examples)
    model = adapted(model_folder, "lora")
    use_varlen_attention(model)
    padded = token_loss_sum(model, collate(examples, 0), fast)
    want = grads(model, padded)
    packed_batch = collate(examples, 0, packed=True)
    packed = token_loss_sum(model, packed_batch, fast)
    got = grads(model, packed)

    assert packed_batch["input_ids"].shape == (1, sum(len(e.input_ids) for e in examples))
    assert "attention_mask" not in packed_batch
    assert packed.item() == pytest.approx(padded.item(), rel=1e-5)
    for name, g in want.items():
        assert torch.allclose(got[name], g, atol=1e-4 * g.abs().max().item()), name


@pytest.fixture
def fake_flash(monkeypatch):
    """flash-attn's varlen kernel with its signature and [tokens, heads, dim] layout, computed per example
    with SDPA, on devices it is told to run on; returns the calls it took."""
    import sys
    import types

    import torch.nn.functional as F

    calls: list = []

    def flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p=0.0,
                               softmax_scale=None, causal=False):
        calls.append((cu_seqlens_q.dtype, cu_seqlens_q.tolist(), cu_seqlens_k.tolist(), max_seqlen_q, max_seqlen_k,
                      causal))
        bounds = cu_seqlens_q.tolist()
        pieces = [F.scaled_dot_product_attention(*(t[a:b].transpose(0, 1) for t in (q, k, v)), is_causal=causal,
                                                 scale=softmax_scale, enable_gqa=True).transpose(0, 1)
                  for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        return torch.cat(pieces)

    module = types.ModuleType("flash_attn")
    module.flash_attn_varlen_func = flash_attn_varlen_func
    monkeypatch.setitem(sys.modules, "flash_attn", module)
    varlen_attention._flash_varlen.cache_clear()
    yield calls
    varlen_attention._flash_varlen.cache_clear()


def test_a_packed_row_takes_flash_attns_varlen_kernel_in_one_call_where_it_runs(fake_flash, monkeypatch):
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(1, 4, 30, 8, generator=gen).bfloat16()
    k, v = (torch.randn(1, 2, 30, 8, generator=gen).bfloat16() for _ in range(2))  # grouped kv heads
    bounds = {SEGMENTS: (0, 10, 14, 30)}
    loop, _ = varlen_attention.varlen_attention(None, q, k, v, None, **bounds)
    assert fake_flash == []  # the CPU is not where flash-attn runs

    monkeypatch.setattr(varlen_attention, "FLASH_DEVICES", ("cpu",))
    flash, _ = varlen_attention.varlen_attention(None, q, k, v, None, **bounds)
    assert fake_flash == [(torch.int32, [0, 10, 14, 30], [0, 10, 14, 30], 16, 16, True)]
    assert flash.shape == loop.shape == (1, 30, 4, 8)
    assert torch.allclose(flash.float(), loop.float(), atol=2e-2)
    varlen_attention.varlen_attention(None, q.float(), k.float(), v.float(), None, **bounds)
    assert len(fake_flash) == 1  # it takes 16-bit inputs only: fp32 goes per example


def counting(start: int, n: int) -> TokenizedExample:
    ids = tuple(3 + (start + k) % 60 for k in range(n))
    return TokenizedExample(ids, ids, 0)


@pytest.mark.slow
def test_packed_examples_do_not_see_each_other(model_folder):
    # Changing the example before another in the row must leave the other's loss as it was alone.
    model = adapted(model_folder, "lora")
    use_varlen_attention(model)
    long, first, second, other = counting(5, 30), counting(9, 12), counting(20, 14), counting(40, 12)

    def loss(batch_examples, packed=True):
        with torch.no_grad():
            return token_loss_sum(model, collate(batch_examples, 0, packed), True).item()

    alone = {e: loss([e], packed=False) for e in (long, first, second, other)}
    assert loss([long, first, second]) == pytest.approx(alone[long] + alone[first] + alone[second], rel=1e-5)
    assert loss([long, other, second]) == pytest.approx(alone[long] + alone[other] + alone[second], rel=1e-5)


def test_a_packed_row_builds_no_attention_mask(model_folder, monkeypatch):
    # transformers' SDPA path would keep the examples apart with a [tokens x tokens] mask.
    import transformers.masking_utils as masking

    built = []
    real = masking.sdpa_mask
    monkeypatch.setattr(masking, "sdpa_mask", lambda *a, **k: built.append(k["q_length"]) or real(*a, **k))
    model = adapted(model_folder, "lora")
    use_varlen_attention(model)
    examples = make_examples(4)
    with torch.no_grad():
        token_loss_sum(model, collate(examples, 0, packed=True), True)
        assert built == []
        token_loss_sum(model, collate(examples, 0), True)  # a padded batch still gets its padding mask
    assert built == [max(len(e.input_ids) for e in examples)]


def test_the_row_bounds_are_the_examples():
    examples = [counting(0, 5), counting(1, 3), counting(2, 4)]
    batch = collate(examples, 0, packed=True)

    assert batch[SEGMENTS] == (0, 5, 8, 12)
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 4, 0, 1, 2, 0, 1, 2, 3]]
    assert batch["labels"][0, [0, 5, 8]].tolist() == [-100, -100, -100]


def test_packed_micro_batches_fill_the_token_budget():
    lengths = [40, 9, 30, 12, 25, 8, 14, 33, 5]
    padded = split_by_tokens(range(len(lengths)), lengths, budget=100)
    packed = split_by_tokens(range(len(lengths)), lengths, budget=100, packed=True)

    assert sorted(i for piece in packed for i in piece) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in piece) <= 100 for piece in packed)
    assert len(packed) == 2 < len(padded)  # 176 tokens: two rows of at most 100, where padding needs 5 pieces
    assert pad_share(packed, lengths, packed=True) == 0.0 < pad_share(padded, lengths)


@pytest.mark.slow
def test_a_packed_run_trains_the_padded_run_without_padding(tmp_path, model_folder):
    runs = {}
    for packing in (False, True):
        config = tiny_config(tmp_path / str(packing), packing=packing, max_steps=4, grad_accum=1, batch_size=8,
                             retention_mix=0.0)
        result, events = run_tiny(config, model_folder)
        assert result.status == "finished", result.reason
        runs[packing] = events
    started = {k: next(e for e in v if isinstance(e, TrainStarted)) for k, v in runs.items()}
    steps = {k: [e for e in v if isinstance(e, StepLogged)] for k, v in runs.items()}

    assert started[True].pad_share < started[False].pad_share
    assert [s.loss for s in steps[True]] == pytest.approx([s.loss for s in steps[False]], abs=1e-4)
    assert steps[True][0].loss == pytest.approx(steps[False][0].loss, rel=1e-5)
