"""`ftui demo --rl`'s table: base, SFT and SFT+RL from the SFT run's evaluation and the GRPO run's."""

from __future__ import annotations

from engine.eval.evaluate import EvalItem, EvalReport, RetentionItem, RetentionReport
from engine.eval.retention import ExactRetention
from engine.eval.rl_gain import rl_gain

GENERAL = [("Capital of France?", "Paris"), ("2 + 2?", "4"), ("Say hello", None)]


def report(base_hits, tuned_hits, base_general, tuned_general) -> EvalReport:
    items = tuple(EvalItem(f"q{i}", "docker ps", "", "", b, t)
                  for i, (b, t) in enumerate(zip(base_hits, tuned_hits, strict=True)))
    retention = RetentionReport(
        3, (), ExactRetention(0, 0, 0, 0, None), 0.0, 0.0, None, (),
        tuple(RetentionItem(p, "fact", e, b, t) for (p, e), b, t in zip(GENERAL, base_general, tuned_general, strict=True)))
    return EvalReport("run", "eval.jsonl", "Q8_0", items, sum(base_hits) / len(items), sum(tuned_hits) / len(items),
                      None, None, 0, retention=retention)


def test_the_three_models_and_retention_against_the_original_base():
    sft = report([False, False, False, False], [True, False, False, False],
                 ["It is Paris.", "4", "hi"], ["Paris", "five", "hi"])
    rl = report([True, False, False, False], [True, True, True, False],
                ["Paris", "five", "hi"], ["Run: `docker ps`", "4", "hi"])
    gain = rl_gain(sft, rl)
    assert (gain.prompts, gain.base_score, gain.sft_score, gain.rl_score) == (4, 0.0, 0.25, 0.75)
    # The base got both checkable answers right; SFT+RL keeps "4" and loses "Paris".
    assert (gain.rl_retention.base_right, gain.rl_retention.tuned_kept, gain.rl_retention.share) == (2, 1, 0.5)


def test_evaluations_of_different_prompts_are_not_compared():
    sft = report([False], [True], ["Paris", "4", "hi"], ["Paris", "4", "hi"])
    rl = report([True, False], [True, True], ["Paris", "4", "hi"], ["Paris", "4", "hi"])
    assert rl_gain(sft, rl) is None
