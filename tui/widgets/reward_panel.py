"""GRPO's live view: the mean reward (total and per function) against the step, and the latest
sampled answer with its reward. Hidden for runs that log no rewards."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from engine.events import RewardLogged
from tui.widgets.curves_plot import CurvesPlot


class RewardPanel(Vertical):
    DEFAULT_CSS = """
    RewardPanel {
        height: 1fr;
        min-height: 9;
        display: none;
    }
    RewardPanel #reward-sample {
        height: auto;
        max-height: 4;
    }
    """

    def compose(self) -> ComposeResult:
        yield CurvesPlot(id="reward-plot")
        yield Static("", id="reward-sample")

    def show(self, rewards: list[RewardLogged], total_steps: int = 0) -> None:
        """Redrawn from the UI thread, when the log has new reward points."""
        self.display = bool(rewards)
        if not rewards:
            return
        names = list(rewards[-1].rewards)
        series = [("reward", [(r.step, r.reward) for r in rewards])]
        series += [(name, [(r.step, r.rewards[name]) for r in rewards if name in r.rewards]) for name in names]
        self.query_one(CurvesPlot).show("reward", series if len(names) > 1 else series[:1], total_steps)
        last = rewards[-1]
        text = Text(f"step {last.step}  reward {last.reward:.3f}  KL {last.kl:.4f}  "
                    f"answer {last.completion_tokens:.1f} tokens\n", style="bold")
        text.append(f"{last.sample_prompt[:120]!s} -> ", style="italic")
        text.append(last.sample[:200])
        text.append(f"  (reward {last.sample_reward:.2f})", style="bold")
        self.query_one("#reward-sample", Static).update(text)
