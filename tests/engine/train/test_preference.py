"""DPO and ORPO in ftui's loop on a tiny real Llama: the losses by hand, the reference, learning, resume."""

from __future__ import annotations

import math
import random

import pytest

from engine.data.types import PreparedData, TokenizedExample
from engine.events import EvalLogged, StepLogged
from engine.runs import read_events
from engine.train.preference import (
    collate_pairs,
    dpo_from_logps,
    dpo_loss,
    orpo_from_logps,
    precompute_references,
    sequence_logps,
)
from tests.engine.train.tiny import VOCAB, make_examples, run_tiny, tiny_config


def make_pairs(n: int, seed: int = 0) -> tuple[TokenizedExample, ...]:
    """Chosen: the counting sequence; rejected: the same prompt and a scrambled reply of the same length."""
    rng = random.Random(seed + 100)
    out = []
    for chosen in make_examples(n, seed):
        prompt = sum(1 for label in chosen.labels if label == -100)
        reply = [rng.randrange(3, VOCAB) for _ in chosen.input_ids[prompt:-1]]
        ids = chosen.input_ids[:prompt] + tuple(reply) + (1,)
        rejected = TokenizedExample(ids, (-100,) * prompt + ids[prompt:], chosen.source_line)
        out.append(TokenizedExample(chosen.input_ids, chosen.labels, chosen.source_line, rejected))
    return tuple(out)


def pair_data(n_train: int = 32, n_val: int = 8) -> PreparedData:
    return PreparedData(make_pairs(n_train), make_pairs(n_val, seed=1), format="preference")


def load_tiny(folder):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder).eval()


def by_hand(model, example: TokenizedExample) -> float:
    """The summed log-probability of the labelled tokens, one full forward, no masking tricks."""
    import torch

    ids = torch.tensor([example.input_ids])
    with torch.no_grad():
        logps = torch.log_softmax(model(ids).logits[0, :-1].double(), dim=-1)
    return sum(float(logps[i, t]) for i, t in enumerate(example.labels[1:]) if t != -100)


@pytest.mark.parametrize("fast", [True, False])
def test_sequence_log_probs_sum_the_reply_tokens_only(model_folder, fast):
    import torch

    model = load_tiny(model_folder)
    pairs = make_pairs(3)
    with torch.no_grad():
        logps, counts = sequence_logps(model, collate_pairs(pairs, 0), fast)
    rows = [*pairs, *(p.rejected for p in pairs)]
    assert logps.tolist() == pytest.approx([by_hand(model, e) for e in rows], rel=1e-4)
    assert counts.tolist() == [sum(1 for t in e.labels[1:] if t != -100) for e in rows]


@pytest.mark.parametrize("short_path", [True, False])
@pytest.mark.parametrize("fast", [True, False])
def test_packed_pairs_give_the_padded_dpo_loss_and_gradients_without_padding(model_folder, monkeypatch, fast,
                                                                              short_path):
    """One packed row of the pairs, each prompt once with its two replies after it, kept apart by
    per-example attention: the padded batch's log-probabilities, DPO loss, metrics and LoRA
    gradients, with no padding and no second copy of a prompt run."""
    import torch

    from engine.train import varlen_attention
    from tests.engine.train.test_loss import adapted, grads

    # The pairs are 9-41 tokens a side: all take the CPU's short-sequence attention, or all SDPA.
    monkeypatch.setattr(varlen_attention, "SHORT_ON_CPU", 128 if short_path else 0)
    model = adapted(model_folder, "lora")
    varlen_attention.use_varlen_attention(model)
    pairs = make_pairs(6)
    padded_batch, packed_batch = collate_pairs(pairs, 0), collate_pairs(pairs, 0, packed=True)
    seen = []
    embed = model.get_base_model().get_input_embeddings()
    hook = embed.register_forward_hook(lambda _m, args, _out: seen.append(args[0].numel()))
    try:
        with torch.no_grad():
            (packed_logps, packed_counts), (padded_logps, padded_counts) = (
                sequence_logps(model, b, fast) for b in (packed_batch, padded_batch))
        assert torch.allclose(packed_logps, padded_logps, rtol=1e-5)
        assert packed_counts.tolist() == padded_counts.tolist()
        padded_loss, padded_metrics = dpo_loss(model, padded_batch, fast, beta=0.1, variant="sigmoid")
        want = grads(model, padded_loss)
        packed_loss, packed_metrics = dpo_loss(model, packed_batch, fast, beta=0.1, variant="sigmoid")
        got = grads(model, packed_loss)
    finally:
        hook.remove()

    prompts = sum(sum(1 for label in p.labels if label == -100) for p in pairs)
    assert seen[0] <= sum(len(p.input_ids) + len(p.rejected.input_ids) for p in pairs) - prompts
    assert seen[1] == padded_batch["input_ids"].numel()
    assert packed_loss.item() == pytest.approx(padded_loss.item(), rel=1e-5)
    # The rewards are differences of summed log-probabilities near -100: fp32 leaves ~1e-5 of them.
    assert packed_metrics.tolist() == pytest.approx(padded_metrics.tolist(), abs=1e-5)
    for name, g in want.items():
        assert torch.allclose(got[name], g, atol=1e-4 * g.abs().max().item()), name


def test_dpo_and_orpo_losses_equal_a_hand_computation(model_folder):
    import torch

    model = load_tiny(model_folder)
    pairs = make_pairs(2)
    policy = [(by_hand(model, p), by_hand(model, p.rejected)) for p in pairs]
    ref = [(c - 0.5, r + 0.25) for c, r in policy]  # any reference: the loss only reads the differences
    counts = [(sum(1 for t in p.labels[1:] if t != -100), sum(1 for t in p.rejected.labels[1:] if t != -100))
              for p in pairs]
    beta, lam = 0.1, 0.1
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731

    want_dpo = sum(-math.log(sig(beta * ((c - rc) - (r - rr)))) for (c, r), (rc, rr) in zip(policy, ref, strict=True))
    want_ipo = sum((((c - rc) / nc - (r - rr) / nr) - 1 / (2 * beta)) ** 2
                   for (c, r), (rc, rr), (nc, nr) in zip(policy, ref, counts, strict=True))

    def odds(mean):
        return mean - math.log(1 - math.exp(mean))

    want_orpo = sum(-c / nc - lam * math.log(sig(odds(c / nc) - odds(r / nr)))
                    for (c, r), (nc, nr) in zip(policy, counts, strict=True))

    with torch.no_grad():
        logps, n = sequence_logps(model, collate_pairs(pairs, 0), True)
    reference = torch.tensor([c for c, _ in ref] + [r for _, r in ref])
    dpo, metrics = dpo_from_logps(logps, reference, n, beta, "sigmoid")
    ipo, _ = dpo_from_logps(logps, reference, n, beta, "ipo")
    rpo, _ = dpo_from_logps(logps, reference, n, beta, "sigmoid", sft_weight=0.5)
    orpo, _ = orpo_from_logps(logps, n, lam)
    assert float(dpo) == pytest.approx(want_dpo, rel=1e-4)
    assert float(ipo) == pytest.approx(want_ipo, rel=1e-4)
    assert float(rpo) == pytest.approx(want_dpo - 0.5 * sum(c / nc for (c, _), (nc, _) in zip(policy, counts,
                                                                                             strict=True)), rel=1e-4)
    assert float(orpo) == pytest.approx(want_orpo, rel=1e-4)
    chosen = [beta * (c - rc) for (c, _), (rc, _) in zip(policy, ref, strict=True)]
    rejected = [beta * (r - rr) for (_, r), (_, rr) in zip(policy, ref, strict=True)]
    assert metrics.tolist() == pytest.approx([sum(chosen), sum(rejected), sum(chosen) - sum(rejected),
                                              sum(c > r for c, r in zip(chosen, rejected, strict=True))], rel=1e-4)


@pytest.mark.slow
def test_a_policy_equal_to_its_reference_has_loss_log_2_and_no_margin(tmp_path, model_folder):
    """At step 1 the LoRA policy is the base (B = 0): the adapters-off reference gives log(2) per pair."""
    config = tiny_config(tmp_path, objective="dpo", max_steps=1, grad_accum=1, lora_dropout=0.0)
    result, events = run_tiny(config, model_folder, data=pair_data())
    assert result.status == "finished", result.reason
    (first,) = [e for e in events if isinstance(e, StepLogged)]
    assert first.loss == pytest.approx(math.log(2), abs=1e-6)
    assert first.metrics["margin"] == pytest.approx(0, abs=1e-6)
    assert first.metrics["reward_chosen"] == pytest.approx(0, abs=1e-6)
    assert first.metrics["accuracy"] == 0  # no pair's chosen reply wins yet


@pytest.mark.slow
def test_dpo_sft_weight_adds_the_chosen_replies_nll_to_the_loss(tmp_path, model_folder):
    """RPO at step 1: log(2) per pair plus the random model's mean token NLL of the chosen reply
    (about ln 60 on the 64-token vocabulary), the same margin as plain DPO."""
    config = tiny_config(tmp_path, objective="dpo", max_steps=1, grad_accum=1, lora_dropout=0.0, dpo_sft_weight=1.0)
    result, events = run_tiny(config, model_folder, data=pair_data())
    assert result.status == "finished", result.reason
    (first,) = [e for e in events if isinstance(e, StepLogged)]
    assert math.log(2) + 3 < first.loss < math.log(2) + 6
    assert first.metrics["margin"] == pytest.approx(0, abs=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("objective", ["dpo", "orpo"])
def test_a_few_steps_raise_the_held_out_margin(tmp_path, model_folder, objective):
    config = tiny_config(tmp_path, objective=objective, learning_rate=5e-3, max_steps=12, eval_interval=6,
                         grad_accum=1, dpo_beta=0.5)
    result, events = run_tiny(config, model_folder, data=pair_data())
    assert result.status == "finished", result.reason
    evals = [e for e in events if isinstance(e, EvalLogged)]
    steps = [e for e in events if isinstance(e, StepLogged)]
    assert set(steps[0].metrics) == {"reward_chosen", "reward_rejected", "margin", "accuracy"}
    assert evals[-1].metrics["margin"] > evals[0].metrics["margin"] > 0
    assert evals[-1].metrics["accuracy"] >= 0.75
    assert steps[-1].loss < steps[0].loss
    # The run's metrics file holds the same figures, as the runs overlay and `ftui runs` read them.
    logged = [e for e in read_events(result.run_dir) if isinstance(e, StepLogged)]
    assert [e.metrics for e in logged] == [e.metrics for e in steps]


@pytest.mark.slow
def test_full_fine_tuning_keeps_reference_log_probs_from_the_base(tmp_path, model_folder):
    config = tiny_config(tmp_path, objective="dpo", method="full", learning_rate=1e-3, max_steps=1,
                         grad_accum=1)
    result, events = run_tiny(config, model_folder, data=pair_data())
    assert result.status == "finished", result.reason
    (first,) = [e for e in events if isinstance(e, StepLogged)]
    assert first.loss == pytest.approx(math.log(2), abs=1e-5)
    model = load_tiny(model_folder)
    refs = precompute_references(model, make_pairs(2), 2, 0, "cpu", _nothing, True)
    assert [x for v in refs.values() for x in v] == pytest.approx(
        [x for p in make_pairs(2) for x in (by_hand(model, p), by_hand(model, p.rejected))], rel=1e-4)


def _nothing():
    import contextlib

    return contextlib.nullcontext()


@pytest.mark.slow
@pytest.mark.parametrize("method", ["lora", "full"])
def test_a_resumed_dpo_run_matches_an_uninterrupted_one(tmp_path, model_folder, method):
    changes = dict(objective="dpo", method=method, max_steps=6, save_interval=3, grad_accum=1, eval_interval=100,
                   learning_rate=1e-3 if method == "lora" else 1e-4)
    _, whole = run_tiny(tiny_config(tmp_path / "a", **changes), model_folder, data=pair_data())

    def stop_after_3(event, stop):
        if isinstance(event, StepLogged) and event.step == 3:
            stop.set()

    first, _ = run_tiny(tiny_config(tmp_path / "b", **changes), model_folder, data=pair_data(), on_step=stop_after_3)
    assert first.status == "stopped"
    second, resumed = run_tiny(tiny_config(tmp_path / "b", **changes), model_folder, data=pair_data(),
                               resume=first.run_dir)
    assert second.status == "finished", second.reason
    want = {e.step: (e.loss, e.metrics["margin"]) for e in whole if isinstance(e, StepLogged)}
    got = {e.step: (e.loss, e.metrics["margin"]) for e in resumed if isinstance(e, StepLogged)}
    assert sorted(got) == [4, 5, 6]
    for step, (loss, margin) in got.items():
        assert loss == pytest.approx(want[step][0], rel=1e-4) and margin == pytest.approx(want[step][1], abs=1e-5)


def test_the_cli_and_the_trackers_show_the_margin_and_accuracy():
    import io

    from cli.commands.train import ProgressView
    from engine.train.tracking import metrics

    figures = {"reward_chosen": 0.2, "reward_rejected": -0.1, "margin": 0.3, "accuracy": 0.75}
    event = StepLogged(3, 10, 0.3, 0.6, 1e-4, 1.0, 900.0, 3.0, 7.0, 1.2, metrics=figures)
    out = io.StringIO()
    ProgressView(out).show(event)
    assert "loss 0.6000  margin 0.300  acc 75%" in out.getvalue()
    _, logged = metrics(event)
    assert logged["train/margin"] == 0.3 and logged["train/accuracy"] == 0.75
    _, held = metrics(EvalLogged(3, 0.5, 0.5, {"margin": 0.4}))
    assert held["eval/margin"] == 0.4


@pytest.mark.slow
def test_dpo_on_a_4bit_base_starts_at_log_2_and_raises_the_margin(tmp_path, wide_model_folder):
    """QLoRA: the reference is the nf4 base with the adapters off, so the first step is log(2) there too."""
    config = tiny_config(tmp_path, objective="dpo", method="qlora", learning_rate=5e-3, max_steps=8, eval_interval=4,
                         grad_accum=1, dpo_beta=0.5, lora_dropout=0.0)
    result, events = run_tiny(config, wide_model_folder, data=pair_data())
    assert result.status == "finished", result.reason
    steps = [e for e in events if isinstance(e, StepLogged)]
    evals = [e for e in events if isinstance(e, EvalLogged)]
    assert steps[0].loss == pytest.approx(math.log(2), abs=1e-5)
    assert evals[-1].metrics["margin"] > evals[0].metrics["margin"] > 0
    assert steps[-1].loss < steps[0].loss
