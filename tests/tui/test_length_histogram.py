"""The dataset screen's length histogram: whole-number counts, round ticks, and an axis that fits
the data rather than a far cut-off (issue 28 item 12)."""

from __future__ import annotations

from tui.widgets.length_histogram import histogram, nice, ticks

DEMO = tuple(range(20, 81, 3)) * 4
"""Lengths like the demo data's: 20-80 tokens."""


def test_a_far_cut_off_does_not_squeeze_the_data_into_one_column():
    shape = histogram(DEMO, 2048)
    assert not shape.cut_off_shown and shape.x_max <= 100
    assert sum(1 for c in shape.counts if c) >= 5  # spread over several columns, not one
    assert sum(shape.counts) == len(DEMO)


def test_a_near_cut_off_is_drawn_on_the_axis():
    shape = histogram((100, 300, 500, 700), 512)
    assert shape.cut_off_shown and shape.x_max >= 700


def test_counts_are_whole_numbers_and_ticks_round():
    shape = histogram(DEMO, 64)
    assert all(isinstance(c, int) for c in shape.counts)
    assert all(isinstance(t, int) for t in shape.y_ticks) and shape.y_ticks[0] == 0
    steps = {b - a for a, b in zip(shape.x_ticks, shape.x_ticks[1:], strict=False)}
    assert len(steps) == 1 and nice(next(iter(steps))) == next(iter(steps))  # 1, 2 or 5 x 10^k apart
    assert ticks(2150) == (0, 500, 1000, 1500, 2000) and ticks(3) == (0, 1, 2, 3)
