"""Token lengths of a dataset as a histogram with the truncation cut-off marked."""

from __future__ import annotations

import math
from dataclasses import dataclass

from textual_plotext import PlotextPlot

BINS = 24
CUT_OFF_REACH = 1.5
"""The cut-off is drawn when it lies within this many times the longest example; beyond, it would
squeeze every example into the first column, so the title says it instead."""


@dataclass(frozen=True)
class Histogram:
    starts: tuple[int, ...]
    """Each bin's first length; every bin is `width` tokens wide."""
    width: int
    counts: tuple[int, ...]
    x_max: int
    x_ticks: tuple[int, ...]
    y_ticks: tuple[int, ...]
    cut_off_shown: bool


def histogram(lengths: tuple[int, ...], cut_off: int) -> Histogram:
    """Whole-number counts in bins of a round width, over the data (and the cut-off when near)."""
    longest = max(lengths)
    shown = cut_off <= longest * CUT_OFF_REACH
    top = max(longest, cut_off) if shown else longest
    width = nice(top / BINS)
    x_max = math.ceil((top + 1) / width) * width
    starts = tuple(range(0, x_max, width))
    counts = [0] * len(starts)
    for length in lengths:
        counts[min(length // width, len(starts) - 1)] += 1
    return Histogram(starts, width, tuple(counts), x_max, ticks(x_max), ticks(max(counts)), shown)


def nice(step: float) -> int:
    """The smallest of 1, 2, 5 x 10^k at least `step`."""
    power = 10 ** math.floor(math.log10(max(step, 1)))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= step)


def ticks(top: int, most: int = 6) -> tuple[int, ...]:
    step = nice(top / most) if top > most else 1
    return tuple(range(0, top + 1, step))


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
        if not lengths:
            plt.title("tokens per example")
            self.refresh()
            return
        shape = histogram(lengths, cut_off)
        beyond = "" if shape.cut_off_shown else f"; max_seq_len {cut_off} is beyond every example"
        plt.title(f"tokens per example ({shape.width} per column{beyond})"
                  + (f" | = max_seq_len {cut_off}" if shape.cut_off_shown else ""))
        plt.bar([s + shape.width / 2 for s in shape.starts], list(shape.counts), width=0.9, color="cyan")
        if shape.cut_off_shown:
            plt.vline(cut_off, color="red")
        plt.xlim(0, shape.x_max)
        plt.xticks(list(shape.x_ticks))
        plt.yticks(list(shape.y_ticks))
        self.refresh()
