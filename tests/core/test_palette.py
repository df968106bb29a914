"""Sweep colours: every legend entry has a colour of its own, each cell is painted in the colour
its legend entry names, the per-state shortcut paints exactly the same, a running sweep's
unsolved cells borrow their preview cell's colour, and the shade key darkens with iterations."""

from __future__ import annotations

import numpy as np

from implicit_viz.core.palette import (
    LONG_PERIOD,
    STATUS_COLORS,
    basin_color,
    cell_colors,
    legend,
    period_color,
    shade_strip,
    sweep_picture,
    unique_cell_colors,
)
from implicit_viz.core.spec import load_spec
from implicit_viz.core.status import Status
from implicit_viz.core.sweep import Axis, SweepRequest, SweepResult


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


def test_unique_cell_colors_equal_the_palette():
    rng = np.random.default_rng(1)
    shape = (37, 23)
    status = rng.integers(0, 6, shape).astype(np.int8)
    iters = rng.integers(0, 500, shape).astype(np.int32)
    basin = rng.integers(-1, 30, shape).astype(np.int32)
    period = rng.integers(0, 40, shape).astype(np.int16)
    np.testing.assert_array_equal(
        unique_cell_colors(status, iters, basin, period, 300),
        cell_colors(status, iters, basin, period, 300),
    )


def partial_result(cancelled: bool) -> SweepResult:
    """A 4 x 4 grid with a preview stride of 2: only the preview cells (even rows and columns)
    are solved, converged in 3 steps to basins 0..3 by block."""
    req = SweepRequest(
        spec=load_spec("newton_cubic"),
        x=Axis("z0[0]", -1.0, 1.0, 4),
        y=Axis("z0[1]", -1.0, 1.0, 4),
        preview=2,
    )
    status = np.full((4, 4), int(Status.NOT_RUN), np.int8)
    basin = np.full((4, 4), -1, np.int32)
    iterations = np.zeros((4, 4), np.int32)
    for k, (i, j) in enumerate([(0, 0), (0, 2), (2, 0), (2, 2)]):
        status[i, j], basin[i, j], iterations[i, j] = int(Status.CONVERGED), k, 3
    return SweepResult(
        request=req,
        x_values=req.x.values(),
        y_values=req.y.values(),
        status=status,
        iterations=iterations,
        residual=np.zeros((4, 4), np.float32),
        period=np.zeros((4, 4), np.int16),
        basin=basin,
        lyapunov=np.full((4, 4), np.nan, np.float32),
        fixed_points=np.zeros((4, 2)),
        cancelled=cancelled,
    )


def test_a_running_sweep_fills_unsolved_cells_from_their_preview_cell():
    res = partial_result(cancelled=False)
    img = sweep_picture(res)
    max_iter = res.request.options.max_iter
    shade = 1 - 0.65 * np.log1p(3) / np.log1p(max_iter)
    for k, (i, j) in enumerate([(0, 0), (0, 2), (2, 0), (2, 2)]):
        want = np.rint(np.array(basin_color(k)) * shade)
        for di in (0, 1):
            for dj in (0, 1):  # the whole 2 x 2 block takes the preview cell's colour
                np.testing.assert_array_equal(img[i + di, j + dj], want)


def test_a_cancelled_sweep_is_drawn_as_it_is():
    res = partial_result(cancelled=True)
    img = sweep_picture(res)
    grey = STATUS_COLORS[Status.NOT_RUN]
    assert tuple(img[1, 1]) == tuple(img[3, 0]) == grey
    assert tuple(img[0, 0]) != grey
    np.testing.assert_array_equal(
        img, cell_colors(res.status, res.iterations, res.basin, res.period, 200)
    )
    assert res.request.options.max_iter == 200  # the colours above used it


def test_shade_strip_darkens_from_one_step_to_max_iter():
    strip = shade_strip(200, basin=2, n=64)
    assert strip.shape == (1, 64, 3) and strip.dtype == np.uint8
    hue = np.array(basin_color(2), float)
    first, last = strip[0, 0].astype(float), strip[0, -1].astype(float)
    np.testing.assert_allclose(first, hue * (1 - 0.65 * np.log(2) / np.log(201)), atol=0.51)
    np.testing.assert_allclose(last, hue * 0.35, atol=0.51)  # max_iter steps: 35 % brightness
    brightness = strip[0].astype(int).sum(axis=1)
    assert (np.diff(brightness) <= 0).all() and brightness[0] > brightness[-1]
