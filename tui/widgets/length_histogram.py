"""Token lengths of a dataset as a histogram with the truncation cut-off marked."""

from __future__ import annotations

from textual_plotext import PlotextPlot


class LengthHistogram(PlotextPlot):
    DEFAULT_CSS = """
    LengthHistogram {
        height: 12;
    }
    """

    def show(self, lengths: tuple[int, ...], cut_off: int) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(f"tokens per example (| = max_seq_len {cut_off})")
        if lengths:
            plt.hist(list(lengths), bins=min(30, max(5, len(set(lengths)))), color="cyan")
            plt.vline(cut_off, color="red")
            plt.xlim(0, max(max(lengths), cut_off) * 1.05)
        self.refresh()
