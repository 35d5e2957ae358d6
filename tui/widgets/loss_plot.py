"""The live loss chart: training and validation loss against the optimizer step."""

from __future__ import annotations

from textual_plotext import PlotextPlot


class LossPlot(PlotextPlot):
    """Redrawn only from message handlers on the UI thread (each plot owns its plotext state)."""

    DEFAULT_CSS = """
    LossPlot {
        height: 1fr;
        min-height: 6;
    }
    """

    def show(self, train: list[tuple[int, float]], val: list[tuple[int, float]], total_steps: int = 0) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title("loss")
        plt.xlabel("step")
        if train:
            plt.plot([s for s, _ in train], [v for _, v in train], label="train", marker="braille", color="cyan")
        if val:
            plt.plot([s for s, _ in val], [v for _, v in val], label="val", marker="braille", color="yellow")
        if total_steps:
            plt.xlim(0, total_steps)
        self.refresh()
