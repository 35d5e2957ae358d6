"""GRPO in ftui's loop on the tiny Llama: it learns what a reward prefers, fails clearly on a broken
reward, resumes the same sampling stream, and its advantages and loss are the textbook ones."""

from __future__ import annotations

import math
import threading
from pathlib import Path

import pytest

from engine.data.rl_prompts import RlPrompt
from engine.data.types import PreparedData, TokenizedExample
from engine.events import CheckpointSaved, RewardLogged, StepLogged, TrainFailed, TrainStarted
from engine.train import Loaded, run_loaded
from tests.engine.train.tiny import loaded_for, tiny_config

PREFERRED = 7
"""Token t7: the reward below pays for it."""


def rl_loaded(folder: Path, n: int = 8, expected: str = "t7") -> Loaded:
    prompts = [(3 + i, 10 + i, 20 + i) for i in range(n)]
    train = tuple(TokenizedExample(p, (-100,) * len(p), i + 1) for i, p in enumerate(prompts))
    rows = tuple(RlPrompt(f"t{p[0]} t{p[1]} t{p[2]}", expected, f"prompts.jsonl:{i + 1}")
                 for i, p in enumerate(prompts))
    base = loaded_for(folder)
    return Loaded(base.build_model, base.tokenizer, PreparedData(train, (), "prompts"), str(folder), rl_prompts=rows)


def reward_file(tmp_path: Path, body: str, name: str = "my_reward.py") -> str:
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    return str(path)


PREFERS_T7 = "def reward(prompt, completion, expected):\n    words = completion.split()\n" \
             "    return sum(w == 't7' for w in words) / max(len(words), 1)\n"


def grpo_config(tmp_path: Path, **changes):
    values = dict(objective="grpo", rewards=["code"], reward_file=reward_file(tmp_path, PREFERS_T7, "prefers_t7.py"),
                  grpo_group_size=8, grpo_max_completion_tokens=4, grpo_temperature=1.0, grpo_kl_beta=0.0,
                  learning_rate=5e-3, batch_size=4, grad_accum=1, max_steps=12, warmup_steps=0,
                  scheduler="constant", val_split=0.0, save_interval=100)
    values.update(changes)
    return tiny_config(tmp_path, **values)


def run(config, loaded: Loaded, stop=None, resume=None, on_step=None):
    events: list = []
    stop = stop or threading.Event()

    def on_event(event):
        events.append(event)
        if on_step is not None:
            on_step(event, stop)

    return run_loaded(config, loaded, on_event, stop, resume=resume), events


def preferred_probability(model, prompts) -> float:
    import torch

    with torch.no_grad():
        probs = [torch.softmax(model(torch.tensor([p])).logits[0, -1], -1)[PREFERRED] for p in prompts]
    return float(sum(probs) / len(probs))


@pytest.mark.slow
def test_a_reward_for_one_token_raises_its_probability(tmp_path, model_folder):
    from transformers import AutoModelForCausalLM

    loaded = rl_loaded(model_folder)
    prompts = [e.input_ids for e in loaded.data.train]
    before = preferred_probability(AutoModelForCausalLM.from_pretrained(model_folder), prompts)
    # Full fine-tuning: on a random 64-token model t7 starts at 1/60, and LoRA's few weights move it slowly.
    result, events = run(grpo_config(tmp_path, method="full", learning_rate=1e-2, max_steps=10), loaded)
    assert result.status == "finished", result.reason
    after = preferred_probability(AutoModelForCausalLM.from_pretrained(result.adapter_dir), prompts)
    rewarded = [e for e in events if isinstance(e, RewardLogged)]
    assert [e.step for e in rewarded] == list(range(1, 11))
    assert after > 3 * before, (before, after)
    early, late = (sum(e.reward for e in part) / 3 for part in (rewarded[:3], rewarded[-3:]))
    assert late > early
    assert set(rewarded[0].rewards) == {"reward"} and rewarded[0].sample_prompt.startswith("t")


BROKEN_ON_ROW_3 = "def reward(prompt, completion, expected):\n    if prompt == 't5 t12 t22':\n        {}\n    return 0.5\n"


@pytest.mark.slow
@pytest.mark.parametrize("body, shown", [
    (BROKEN_ON_ROW_3.format("raise KeyError('score')"), "raised KeyError: 'score'"),
    (BROKEN_ON_ROW_3.format("return float('nan')"), "returned nan"),
])
def test_a_broken_reward_fails_the_run_naming_function_and_row(tmp_path, model_folder, body, shown):
    config = grpo_config(tmp_path, reward_file=reward_file(tmp_path, body), max_steps=2, batch_size=8)
    result, events = run(config, rl_loaded(model_folder))
    failed = [e for e in events if isinstance(e, TrainFailed)]
    assert result.status == "failed" and len(failed) == 1 and failed[0].step == 1
    assert f"reward reward {shown} on the prompt at prompts.jsonl:3 " in failed[0].reason
    assert not any(isinstance(e, StepLogged) for e in events)
    started = next(e for e in events if isinstance(e, TrainStarted))
    assert started.predicted_s is None and started.prediction.startswith("no time prediction for grpo")


@pytest.mark.slow
def test_resume_continues_the_same_sampling_stream(tmp_path, model_folder):
    config = grpo_config(tmp_path, max_steps=4, grpo_kl_beta=0.1, grpo_temperature=1.5)
    whole, whole_events = run(config, rl_loaded(model_folder))
    assert whole.status == "finished"

    def stop_after_2(event, stop):
        if isinstance(event, StepLogged) and event.step == 2:
            stop.set()

    cut, _ = run(config.replace(output_dir=str(tmp_path / "cut")), rl_loaded(model_folder), on_step=stop_after_2)
    assert cut.status == "stopped"
    resumed, resumed_events = run(config, rl_loaded(model_folder), resume=cut.run_dir)
    assert resumed.status == "finished"

    def samples(events):
        return [(e.step, e.sample, e.reward, round(e.kl, 6)) for e in events if isinstance(e, RewardLogged)]

    assert samples(resumed_events) == samples(whole_events)[2:]
    assert len({s for _, s, _, _ in samples(whole_events)}) > 1  # the stream does vary
    assert any(isinstance(e, CheckpointSaved) for e in resumed_events)


def test_advantages_and_loss_equal_a_hand_computation():
    import torch

    from engine.train.grpo import group_advantages, policy_loss

    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 2.0, 2.0])
    advantages = group_advantages(rewards, 3)
    # Group 1: mean 1/3, sample std sqrt(1/3); group 2: mean 5/3, std sqrt(1/3).
    std = math.sqrt(1 / 3)
    expected = [(2 / 3) / (std + 1e-4), (-1 / 3) / (std + 1e-4), (-1 / 3) / (std + 1e-4),
                (-2 / 3) / (std + 1e-4), (1 / 3) / (std + 1e-4), (1 / 3) / (std + 1e-4)]
    assert advantages.tolist() == pytest.approx(expected, rel=1e-6)
    assert group_advantages(torch.tensor([0.5, 0.5]), 2).tolist() == [0.0, 0.0]

    logps = torch.tensor([[-1.0, -2.0], [-0.5, -3.0]])
    old = torch.tensor([[-1.2, -2.0], [-0.5, -2.0]])
    ref = torch.tensor([[-1.5, -1.0], [-0.4, -3.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    adv = torch.tensor([1.0, -2.0])
    loss, kl = policy_loss(logps, old, ref, adv, mask, beta=0.1, epsilon=0.2)
    hand_loss = hand_kl = 0.0
    for i in range(2):
        for j in range(2):
            if not mask[i, j]:
                continue
            ratio = math.exp(float(logps[i, j] - old[i, j]))
            a = float(adv[i])
            clipped = min(max(ratio, 0.8), 1.2)
            gap = float(ref[i, j] - logps[i, j])
            k3 = math.exp(gap) - gap - 1
            hand_loss += -min(ratio * a, clipped * a) + 0.1 * k3
            hand_kl += k3
    assert float(loss) == pytest.approx(hand_loss, rel=1e-6)
    assert float(kl) == pytest.approx(hand_kl, rel=1e-6)
    # On-policy (old = logps detached) the ratio is 1 and the gradient is -A per token's log-probability.
    live = logps.clone().requires_grad_(True)
    on_policy, _ = policy_loss(live, live.detach(), None, adv, mask, beta=0.0, epsilon=0.2)
    on_policy.backward()
    assert live.grad.tolist() == [[-1.0, -1.0], [2.0, 0.0]]


def test_answer_log_probabilities_equal_the_full_forward(model_folder):
    import torch
    from transformers import AutoModelForCausalLM

    from engine.train.grpo import _batch, answer_logps

    model = AutoModelForCausalLM.from_pretrained(model_folder)
    prompts = [(3, 4, 5), (6, 7)]
    answers = [[8, 9, 1], [10], [11, 12], [13, 14, 15]]
    batch = _batch(prompts, 2, answers, torch.zeros(4), 0, "cpu")
    got = answer_logps(model, batch, temperature=0.5)
    for row, (prompt, answer) in enumerate(zip([p for p in prompts for _ in range(2)], answers, strict=True)):
        ids = torch.tensor([list(prompt) + answer])
        logits = model(ids).logits[0].float() / 0.5
        want = torch.log_softmax(logits, -1)[len(prompt) - 1:-1].gather(1, torch.tensor(answer).unsqueeze(1))
        assert got[row, :len(answer)].tolist() == pytest.approx(want.squeeze(1).tolist(), abs=1e-5)


def test_each_prompt_runs_once_for_its_group_with_the_gradients_of_one_row_per_answer(model_folder):
    """The policy pass reads each prompt once and its answers through the repeated cache: the
    log-probabilities and LoRA gradients of running every answer after its own copy of the prompt."""
    import torch

    from engine.train.grpo import _answer_logps_unshared, _batch, answer_logps
    from tests.engine.train.test_loss import adapted, grads

    model = adapted(model_folder, "lora").train()
    prompts = [(3, 4, 5, 6, 7), (8, 9)]
    answers = [[8, 9, 1], [10], [11, 12], [13, 14, 15]]
    batch = _batch(prompts, 2, answers, torch.zeros(4), 0, "cpu")
    weights = torch.linspace(-1, 1, 12).view(4, 3) * batch.mask
    read = []
    embed = model.get_base_model().get_input_embeddings()
    hook = embed.register_forward_hook(lambda _m, args, _out: read.append(args[0].numel()))
    try:
        shared = answer_logps(model, batch, temperature=0.7)
        got = grads(model, (shared * weights).sum())
        unshared = _answer_logps_unshared(model, batch, temperature=0.7)
        want = grads(model, (unshared * weights).sum())
    finally:
        hook.remove()

    assert torch.allclose(shared * batch.mask, unshared * batch.mask, atol=1e-5)
    for name, g in want.items():
        assert torch.allclose(got[name], g, atol=1e-4 * g.abs().max().item()), name
    # Two prompts of width 5, then 4 answers of width 3 less the last token; unshared, 4 rows of 5 + 3.
    assert read == [2 * 5, 4 * 2, 4 * (5 + 3)]


def test_grpo_settings_are_checked_before_any_model_loads(tmp_path):
    from engine.config.schema import RunConfig

    def errors(**changes):
        return {(p.field, p.message) for p in RunConfig.from_dict({"objective": "grpo", **changes}).check()
                if p.level == "error"}

    assert errors(reward_format="^Run: `[^`]+`$") == set()
    assert any(f == "reward_format" and "^Run:" in m for f, m in errors())
    assert any(f == "rewards" and "unknown reward 'answr'" in m for f, m in errors(rewards=["answr"]))
    assert any(f == "rewards" and "answer:2" in m for f, m in errors(rewards=["answer:two"]))
    assert any(f == "reward_file" for f, _ in errors(rewards=["code"]))
    assert any(f == "grpo_kl_beta" for f, _ in errors(rewards=["answer"], method="full", learning_rate=2e-5))
    assert any(f == "grpo_group_size" for f, _ in errors(rewards=["answer"], grpo_group_size=1))
    assert any(f == "grpo_max_completion_tokens" for f, _ in errors(rewards=["answer"], max_seq_len=64,
                                                                     grpo_max_completion_tokens=64))
    assert any(f == "grpo_guide" and "{expected}" in m for f, m in errors(rewards=["answer"], grpo_guide="Run: it"))
    assert errors(rewards=["answer"], grpo_guide="Run: `{expected}`") == set()


def test_prompt_rows_are_read_and_a_file_without_prompts_is_refused_by_name(tmp_path):
    from engine.data.readers import DatasetError
    from engine.data.rl_prompts import read_rl_prompts
    from tests.engine.train.tiny import make_tokenizer

    tokenizer = make_tokenizer()
    tokenizer.chat_template = ("{% for m in messages %}{{ m['content'] }} {% endfor %}"
                               "{% if add_generation_prompt %}t9{% endif %}")
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "t3 t4", "expected": "t7"}\n'
                       '{"messages": [{"role": "user", "content": "t5"}]}\n', encoding="utf-8")
    config = tiny_config(tmp_path, objective="grpo", rewards=["answer"], dataset=str(prompts),
                         grpo_max_completion_tokens=8)
    rl = read_rl_prompts(config, tokenizer)
    assert [e.input_ids for e in rl.data.train] == [(3, 4, 9), (5, 9)]
    assert [(p.text, p.expected) for p in rl.prompts] == [("t3 t4", "t7"), ("t5", None)]
    assert rl.data.val == ()

    sft = tmp_path / "sft.jsonl"
    sft.write_text('{"messages": [{"role": "user", "content": "t5"}, {"role": "assistant", "content": "t6"}]}\n',
                   encoding="utf-8")
    with pytest.raises(DatasetError) as refused:
        read_rl_prompts(config.replace(dataset=str(sft)), tokenizer)
    assert f"{sft} holds no prompt rows for grpo" in refused.value.summary
    assert "ends with an assistant turn" in str(refused.value.problems[0])


def test_reward_figures_reach_the_trackers():
    from engine.events import RewardLogged
    from engine.train.tracking import metrics

    event = RewardLogged(3, 1.5, {"format": 1.0, "answer": 0.25}, 0.002, 9.0, "q", "Run: `x`", 2.0)
    assert metrics(event) == (3, {"grpo/reward": 1.5, "grpo/kl": 0.002, "grpo/completion_tokens": 9.0,
                                  "grpo/reward_format": 1.0, "grpo/reward_answer": 0.25})


def test_the_terminal_shows_each_grpo_step_with_its_sample():
    import io

    from cli.commands.train import ProgressView
    from engine.events import RewardLogged

    out = io.StringIO()
    ProgressView(out).show(RewardLogged(3, 1.5, {"format": 1.0, "answer": 0.25}, 0.002, 9.0, "q", "Run: `ls`", 2.0))
    assert out.getvalue() == ("  step 3: reward 1.500 (format 1.00, answer 0.25)  KL 0.0020  9.0 tokens; "
                              "e.g. 'Run: `ls`' -> 2.00\n")


@pytest.mark.slow
def test_several_updates_per_batch_of_answers_clip_against_the_sampling_policy(tmp_path, model_folder):
    config = grpo_config(tmp_path, max_steps=2, grpo_iterations=3, grpo_clip_epsilon=0.1, grpo_kl_beta=0.05)
    result, events = run(config, rl_loaded(model_folder))
    assert result.status == "finished", result.reason
    steps = [e for e in events if isinstance(e, StepLogged)]
    # Three updates on each batch (old log-probabilities taken at sampling, the ratio clipped) train
    # the policy away from the reference: the second step's answers have a KL above 0.
    rewarded = [e for e in events if isinstance(e, RewardLogged)]
    assert len(steps) == 2 and all(math.isfinite(s.loss) for s in steps)
    assert rewarded[-1].kl > 0


def test_the_guide_replaces_one_answer_only_in_groups_with_no_right_answer(tmp_path):
    from engine.train.grpo import GrpoRun
    from tests.engine.train.tiny import make_tokenizer

    rows = (RlPrompt("q1", "t7 t9", "p.jsonl:1"), RlPrompt("q2", "t7 t9", "p.jsonl:2"), RlPrompt("q3", None, "p.jsonl:3"))
    config = grpo_config(tmp_path, rewards=["answer"], reward_file="", grpo_group_size=3, grpo_max_completion_tokens=5,
                         grpo_guide="t5 {expected}")
    grpo = GrpoRun(config, rows, make_tokenizer(), [], None, frozenset({1}))
    sampled = [[4, 7, 9, 1], [7, 1], [3], [7, 8, 9, 1], [9, 7], [4, 4, 4, 4, 4], [3, 1], [4, 1], [5, 1]]
    guided = grpo._guided(sampled, [0, 1, 2])
    # The first group has a right answer and the third no expected one: only the second's last answer changes,
    # to the reference reply ended by the end-of-turn token.
    assert guided == [*sampled[:5], [5, 7, 9, 1], *sampled[6:]]


def reply_probability(model, prompts, reply) -> float:
    import torch

    with torch.no_grad():
        logps = [torch.log_softmax(model(torch.tensor([list(p) + reply[:-1]])).logits[0, len(p) - 1:], -1)
                 .gather(1, torch.tensor(reply).unsqueeze(1)).sum() for p in prompts]
    return float(torch.stack(logps).exp().mean())


@pytest.mark.slow
def test_guided_grpo_teaches_an_answer_the_policy_never_samples(tmp_path, model_folder):
    """Two tokens in order are almost out of reach of a random 60-token policy's samples: nearly every
    group is all wrong, and GRPO alone has nothing to compare in it; the guide puts the reference
    reply in each such group and makes it likelier."""
    from transformers import AutoModelForCausalLM

    prompts = [e.input_ids for e in rl_loaded(model_folder).data.train]
    reply = [7, 9, 1]
    before = reply_probability(AutoModelForCausalLM.from_pretrained(model_folder), prompts, reply)
    after = {}
    for guide in ("", "{expected}"):
        config = grpo_config(tmp_path, method="full", learning_rate=1e-2, max_steps=6, rewards=["answer"],
                             reward_file="", grpo_guide=guide, output_dir=str(tmp_path / (guide or "unguided")))
        result, events = run(config, rl_loaded(model_folder, expected="t7 t9"))
        assert result.status == "finished", result.reason
        after[guide] = reply_probability(AutoModelForCausalLM.from_pretrained(result.adapter_dir), prompts, reply)
        answered = [e.rewards["answer"] for e in events if isinstance(e, RewardLogged)]
        assert (min(answered) > 0) == bool(guide), answered  # unguided, no sampled answer is ever right
    # Unguided, a group with a right answer is rare (any group without one leaves the weights as they were).
    assert after[""] < 2 * before and after["{expected}"] > 10 * after[""], (before, after)
