"""Several loss curves over one another, one colour and legend entry each: a sweep's variants, or
the runs marked on the runs screen."""

from __future__ import annotations

from textual_plotext import PlotextPlot

from tui.widgets.loss_plot import thin

COLORS = ("cyan", "yellow", "magenta", "green", "red", "blue", "white")
MARKERS = ("•", "x", "+", "o", "*", "#", "%")
"""One character a series besides its colour, so the legend still tells them apart in 16 colours or
none, and an evaluation logged once is a mark rather than a braille dot."""


class CurvesPlot(PlotextPlot):
    """Redrawn only from the UI thread (each plot owns its plotext state)."""

    DEFAULT_CSS = """
    CurvesPlot {
        height: 1fr;
        min-height: 6;
    }
    """

    def show(self, title: str, series: list[tuple[str, list[tuple[int, float]]]], last_step: int = 0) -> None:
        """`series`: (legend label, (step, loss) points); a series without points is left out.
        The step axis runs from 0 to `last_step` when given."""
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(title)
        plt.xlabel("step")
        for i, (label, points) in enumerate(series):
            if points:
                shown = thin(points)
                plt.plot([s for s, _ in shown], [v for _, v in shown], label=label, marker=MARKERS[i % len(MARKERS)],
                         color=COLORS[i % len(COLORS)])
        if last_step:
            plt.xlim(0, last_step)
        self.refresh()
