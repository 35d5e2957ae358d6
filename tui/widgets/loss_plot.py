"""The live loss chart: training and validation loss against the optimizer step."""

from __future__ import annotations

from textual_plotext import PlotextPlot

MAX_POINTS = 240
"""plotext draws in pure Python: past a few hundred points per series a redraw costs more than
a frame, so long runs are drawn as bucket means (the log keeps every point)."""


def thin(points: list[tuple[int, float]], limit: int = MAX_POINTS) -> list[tuple[float, float]]:
    if len(points) <= limit:
        return [(float(s), v) for s, v in points]
    size = len(points) / limit
    out = []
    for i in range(limit):
        bucket = points[int(i * size):int((i + 1) * size)]
        out.append((sum(s for s, _ in bucket) / len(bucket), sum(v for _, v in bucket) / len(bucket)))
    return out


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
        train_points, val_points = thin(train), thin(val)
        if train_points:
            plt.plot([s for s, _ in train_points], [v for _, v in train_points], label="train", marker="braille",
                     color="cyan")
        if val_points:
            plt.plot([s for s, _ in val_points], [v for _, v in val_points], label="val", marker="braille",
                     color="yellow")
        if total_steps:
            plt.xlim(0, total_steps)
        self.refresh()
