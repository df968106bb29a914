"""Sweep colours: every legend entry has a colour of its own, and each cell is painted in the
colour its legend entry names."""

from __future__ import annotations

import numpy as np

from implicit_viz.core.palette import LONG_PERIOD, cell_colors, legend, period_color
from implicit_viz.core.status import Status


def grid_with_periods(periods: list[int]):
    n = len(periods)
    status = np.full((1, n), int(Status.PERIODIC), np.int8)
    period = np.array([periods], np.int16)
    basin = np.full((1, n), -1, np.int32)
    iterations = np.full((1, n), 50, np.int32)
    return status, iterations, basin, period


def test_periods_in_a_legend_never_share_a_colour():
    periods = list(range(2, 33))
    status, _iterations, basin, period = grid_with_periods(periods)
    items = legend(status, basin, period, np.empty((0, 2)))
    colours = [c for _, c in items]
    assert len(set(colours)) == len(colours)
    labels = [label for label, _ in items]
    assert labels[0] == "periodic, k = 2"
    assert labels[-1].startswith(f"periodic, k >= {LONG_PERIOD} (10, 11, 12, 13, ...")


def test_cells_take_the_colour_of_their_legend_entry():
    periods = [2, 5, 9, 10, 17, 31]
    status, iterations, basin, period = grid_with_periods(periods)
    img = cell_colors(status, iterations, basin, period, max_iter=200)
    for j, k in enumerate(periods):
        assert tuple(img[0, j]) == period_color(k)
    assert tuple(img[0, 3]) == tuple(img[0, 4]) == tuple(img[0, 5])  # k >= 10 share one
    assert len({tuple(img[0, j]) for j in range(3)}) == 3
