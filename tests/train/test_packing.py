"""Packed batches: examples end to end in rows as wide as the longest give the padded batch's loss
and gradients, with less padding and never a wider mask.

Tolerances, fp32 on the CPU: relative 1e-5 on the loss and 1e-4 of the largest gradient entry (the
same sums in another order: one row against several padded ones); over a short run, 1e-4 on each
step's loss (AdamW's normalised steps carry the rounding on).
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from engine.data.types import TokenizedExample  # noqa: E402
from engine.events import StepLogged, TrainStarted  # noqa: E402
from engine.train.batching import collate, pack_rows, pad_share  # noqa: E402
from engine.train.step import token_loss_sum  # noqa: E402
from tests.train.test_loss import adapted, grads  # noqa: E402
from tests.train.tiny import make_examples, run_tiny, tiny_config  # noqa: E402


def every_token_trained(examples):
    """As for text data: the label of every token is the token, so a boundary would be trained."""
    return [TokenizedExample(e.input_ids, e.input_ids, e.source_line) for e in examples]


@pytest.mark.parametrize("responses_only", [True, False])
@pytest.mark.parametrize("fast", [True, False])
def test_a_packed_row_gives_the_padded_loss_and_gradients(model_folder, responses_only, fast):
    examples = make_examples(8)
    if not responses_only:
        examples = every_token_trained(examples)
    model = adapted(model_folder, "lora")
    padded = token_loss_sum(model, collate(examples, 0), fast)
    want = grads(model, padded)
    packed_batch = collate(examples, 0, packed=True)
    packed = token_loss_sum(model, packed_batch, fast)
    got = grads(model, packed)

    rows, width = packed_batch["input_ids"].shape
    assert rows < len(examples) and width == max(len(e.input_ids) for e in examples)
    assert "attention_mask" not in packed_batch
    assert packed.item() == pytest.approx(padded.item(), rel=1e-5)
    for name, g in want.items():
        assert torch.allclose(got[name], g, atol=1e-4 * g.abs().max().item()), name


def counting(start: int, n: int) -> TokenizedExample:
    ids = tuple(3 + (start + k) % 60 for k in range(n))
    return TokenizedExample(ids, ids, 0)


def test_packed_examples_do_not_see_each_other(model_folder):
    # The long example sets the width; the two short ones share a row. Changing the first short one
    # must leave the second one's loss as it was alone.
    model = adapted(model_folder, "lora")
    long, first, second, other = counting(5, 30), counting(9, 12), counting(20, 14), counting(40, 12)
    assert len(collate([long, first, second], 0, packed=True)["input_ids"]) == 2

    def loss(batch_examples, packed=True):
        with torch.no_grad():
            return token_loss_sum(model, collate(batch_examples, 0, packed), True).item()

    alone = {e: loss([e], packed=False) for e in (long, first, second, other)}
    assert loss([long, first, second]) == pytest.approx(alone[long] + alone[first] + alone[second], rel=1e-5)
    assert loss([long, other, second]) == pytest.approx(alone[long] + alone[other] + alone[second], rel=1e-5)


def test_rows_hold_every_example_once_within_the_longest_width():
    lengths = [40, 9, 30, 12, 25, 8, 14, 33, 5]
    rows = pack_rows(range(len(lengths)), lengths)

    assert sorted(i for r in rows for i in r) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in r) <= max(lengths) for r in rows)
    assert len(rows) == 5  # 40 | 33+5 | 30+9 | 25+14 | 12+8: first fit from the longest
    assert pad_share([range(len(lengths))], lengths, packed=True) < pad_share([range(len(lengths))], lengths) / 2


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
