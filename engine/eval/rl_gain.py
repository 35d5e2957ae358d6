"""Base, SFT and SFT+RL side by side, from two evaluations: the SFT run's (base against SFT) and the
GRPO run's (SFT against SFT+RL, its base being the SFT run's merged model).

The held-out score of each model is read from the evaluation that ran it; retention of SFT+RL is
measured against the original base, pairing the base's general answers from the first evaluation
with SFT+RL's from the second (the same prompts in the same order, greedy, same quantisation).
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.data.prompts import GeneralPrompt
from engine.data.types import Message
from engine.eval.evaluate import EvalReport
from engine.eval.retention import ExactRetention, exact_retention


@dataclass(frozen=True)
class RlGain:
    prompts: int
    """Held-out prompts scored."""
    base_score: float
    sft_score: float
    rl_score: float
    sft_retention: ExactRetention
    rl_retention: ExactRetention
    """Both against the original base model's right general answers."""


def rl_gain(sft: EvalReport, rl: EvalReport) -> RlGain | None:
    """None when either evaluation lacks held-out scores or retention, or they scored different prompts."""
    if (sft.base_score is None or sft.tuned_score is None or rl.tuned_score is None or sft.retention is None
            or rl.retention is None or [i.prompt for i in sft.items] != [i.prompt for i in rl.items]
            or [i.prompt for i in sft.retention.items] != [i.prompt for i in rl.retention.items]):
        return None
    general = [GeneralPrompt((Message("user", i.prompt),), i.expected, i.kind) for i in sft.retention.items]
    base_replies = [i.base_reply for i in sft.retention.items]
    return RlGain(len(sft.items), sft.base_score, sft.tuned_score, rl.tuned_score, sft.retention.exact,
                  exact_retention(general, base_replies, [i.tuned_reply for i in rl.retention.items]))
