"""A sweep's result in words: the status line counts the cells by outcome, the cancel note counts
the solved ones, and a cell's description names its own values, all checked against grids
written by hand (and one real sweep whose fixed points are known). No Qt."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from implicit_viz.core.spec import load_spec
from implicit_viz.core.status import Status
from implicit_viz.core.sweep import Axis, SweepRequest, SweepResult, sweep
from implicit_viz.core.sweep_text import (
    STATUS_PERIODS,
    cancel_note,
    cell_description,
    status_text,
)

CONV, DIV, PER, MAXIT, NOT_RUN = (
    int(Status.CONVERGED),
    int(Status.DIVERGED),
    int(Status.PERIODIC),
    int(Status.MAX_ITER),
    int(Status.NOT_RUN),
)


def one_row(status: list[int], period: list[int] | None = None, **kw) -> SweepResult:
    """A 1-D sweep of ``eta`` over 0, 0.1, ... with the given outcomes; converged cells reach
    the fixed point (1, 2) in 7 steps, others stop after 50; Lyapunov -0.5 everywhere."""
    n = len(status)
    req = SweepRequest(spec=load_spec("gradient_descent"), x=Axis("eta", 0.0, 0.1 * (n - 1), n))
    st = np.array([status], np.int8)
    return SweepResult(
        request=req,
        x_values=req.x.values(),
        y_values=None,
        status=st,
        iterations=np.where(st == CONV, 7, 50).astype(np.int32),
        residual=np.zeros((1, n), np.float32),
        period=np.array([period or [0] * n], np.int16),
        basin=np.where(st == CONV, 0, -1).astype(np.int32),
        lyapunov=np.full((1, n), -0.5, np.float32),
        fixed_points=np.array([[1.0, 2.0]]),
        z=np.full((1, n, 2), 3.25, np.float32),
        elapsed_s=1.84,
        **kw,
    )


def test_status_text_counts_outcomes_and_names_periods():
    res = one_row([CONV, CONV, PER, DIV], period=[0, 0, 3, 0])
    assert status_text(res) == (
        "4 cells, 1.8 s: 50.0 % converged, 25.0 % periodic, 25.0 % diverged, 1 fixed point, "
        "period 3"
    )


def test_status_text_shortens_a_long_list_of_periods():
    periods = list(range(2, 2 + STATUS_PERIODS + 3))
    res = one_row([PER] * len(periods), period=periods)
    text = status_text(res)
    shown = ", ".join(map(str, periods[:STATUS_PERIODS]))
    assert text.endswith(f"periods {shown}, ... ({len(periods)} in all)")
    assert "0.0 % converged" in text and "100.0 % periodic" in text


def test_status_text_when_basins_are_not_resolved():
    res = dataclasses.replace(one_row([CONV, MAXIT]), basins_resolved=False)
    assert status_text(res) == (
        "2 cells, 1.8 s: 50.0 % converged, 50.0 % max iter, fixed point moves with the params"
    )


def test_a_cancelled_sweep_says_how_many_cells_were_solved():
    res = one_row([CONV, NOT_RUN, NOT_RUN, DIV], cancelled=True)
    assert cancel_note(res) == "cancelled: 2 of 4 cells solved"
    assert status_text(res).startswith("cancelled: 2 of 4 cells solved; 4 cells, 1.8 s: ")


def test_cell_descriptions_name_the_cells_own_values():
    res = one_row([CONV, PER, DIV, NOT_RUN, MAXIT], period=[0, 4, 0, 0, 0])
    assert cell_description(res, 0, 0) == (
        "eta = 0: converged after 7 steps, basin 0: z* = (1, 2), Lyapunov -0.5"
    )
    assert cell_description(res, 1, 0) == (
        "eta = 0.1: periodic after 50 steps, period 4, last z = (3.25, 3.25), Lyapunov -0.5"
    )
    assert cell_description(res, 2, 0) == "eta = 0.2: diverged after 50 steps, Lyapunov -0.5"
    assert cell_description(res, 3, 0) == "eta = 0.3: not solved"
    assert cell_description(res, 4, 0).startswith("eta = 0.4: max iter after 50 steps, last z")


def test_a_real_basin_sweep_in_words():
    """Newton on z^3 = 1: three fixed points, the cube roots of unity."""
    spec = load_spec("newton_cubic")
    req = SweepRequest(spec=spec, x=Axis("z0[0]", -1.5, 1.5, 9), y=Axis("z0[1]", -1.5, 1.5, 9))
    res = sweep(req)
    text = status_text(res)
    assert text.startswith("9 x 9 cells, ") and "3 fixed points" in text
    ix = iy = 8  # start (1.5, 1.5): converges to a root of unity
    words = cell_description(res, ix, iy)
    assert words.startswith("z0[0] = 1.5, z0[1] = 1.5: converged after ")
    roots = {(1.0, 0.0), (-0.5, 0.866), (-0.5, -0.866)}
    point = res.fixed_points[int(res.basin[iy, ix])]
    assert any(np.allclose(point, r, atol=1e-3) for r in roots)
    assert f"z* = ({point[0]:.4g}, {point[1]:.4g})" in words


@pytest.mark.parametrize("dim", [3, 6])
def test_long_points_are_cut_after_four_components(dim):
    res = one_row([CONV])
    res = dataclasses.replace(res, fixed_points=np.arange(1.0, dim + 1)[None, :])
    words = cell_description(res, 0, 0)
    if dim > 4:
        assert "z* = (1, 2, 3, 4, ...)" in words
    else:
        assert "z* = (1, 2, 3)" in words
