"""The axes a sweep offers for a spec and their default ranges (read off the preset files), and
the cells: the cell under a value is the one whose centre is nearest, and the drawn cells span
the axis values half a step beyond each end. No Qt."""

from __future__ import annotations

import numpy as np
import pytest

from implicit_viz.core.spec import load_spec
from implicit_viz.core.status import Status
from implicit_viz.core.sweep import Axis, SweepRequest, SweepResult
from implicit_viz.core.sweep_axes import (
    MAX_TENSOR_ENTRIES,
    NO_AXIS,
    axis_targets,
    cell_assignments,
    cell_index,
    cell_rect,
    default_axes,
    default_range,
    tensor_element_values,
)


def test_axis_targets_and_defaults():
    tanh = load_spec("tanh_layer")
    assert axis_targets(tanh) == [
        "a",
        "z0[0]",
        "z0[1]",
        "W[0,0]",
        "W[0,1]",
        "W[1,0]",
        "W[1,1]",
        "x[0]",
        "x[1]",
    ]
    assert default_axes(tanh) == ("a", "x[0]")
    assert default_axes(load_spec("newton_cubic")) == ("z0[0]", "z0[1]")
    assert default_axes(load_spec("logistic")) == ("r", NO_AXIS)
    assert default_range("a", tanh) == (0.0, 3.0)
    assert default_range("z0[1]", tanh) == (-2.0, 2.0)
    assert default_range("x[0]", tanh) == pytest.approx((-0.5, 1.5))
    assert default_range("W[0,1]", tanh) == pytest.approx((-2.1, -0.1))
    deq = load_spec("deq_cell")
    big = [t.name for t in deq.tensors if t.size > MAX_TENSOR_ENTRIES]
    assert big and not any(s.startswith(tuple(f"{n}[" for n in big)) for s in axis_targets(deq))
    assert sum(s.startswith("z0[") for s in axis_targets(deq)) == 8  # of dim 32


def test_default_range_of_an_unknown_target_raises():
    from implicit_viz.core.errors import SpecError

    with pytest.raises(SpecError):
        default_range("q", load_spec("tanh_layer"))


def test_tensor_element_values_are_the_specs_and_follow_seeds():
    tanh = load_spec("tanh_layer")
    vals = tensor_element_values(tanh)
    # the preset's literal tensors, element by element, keyed as the axis targets
    assert vals == {
        "W[0,0]": 0.6,
        "W[0,1]": -1.1,
        "W[1,0]": 0.9,
        "W[1,1]": 0.4,
        "x[0]": 0.5,
        "x[1]": -0.2,
    }
    assert set(vals) <= set(axis_targets(tanh))
    deq = load_spec("deq_cell")
    drawn = [t for t in deq.tensors if t.data is None and t.size <= 64]
    assert drawn  # x and b are drawn at random
    t = drawn[0]
    key = f"{t.name}[{','.join('0' * len(t.shape))}]"
    a = tensor_element_values(deq)[key]
    b = tensor_element_values(deq, {t.name: t.seed + 1})[key]
    assert a != b  # another draw
    assert tensor_element_values(deq, {t.name: t.seed})[key] == a


@pytest.mark.parametrize("axis", [Axis("a", 0.0, 3.0, 7), Axis("x[0]", -2.0, 2.0, 2)])
def test_the_cell_under_a_value_has_the_nearest_centre(axis):
    centres = axis.values()
    step = abs(centres[1] - centres[0])
    for k, c in enumerate(centres):
        assert cell_index(axis, c) == k
        assert cell_index(axis, c + 0.49 * step) == k
        assert cell_index(axis, c - 0.49 * step) == k
    rng = np.random.default_rng(0)
    lo, hi = axis.lo, axis.hi
    for v in rng.uniform(lo - step / 2 + 1e-9, hi + step / 2 - 1e-9, 200):
        assert cell_index(axis, v) == int(np.argmin(np.abs(centres - v)))
    # beyond the outer cells' edges: no cell
    for v in (lo - 0.51 * step, hi + 0.51 * step):
        assert cell_index(axis, v) is None


@pytest.mark.parametrize("axis", [Axis("a", 0.0, 3.0, 7), Axis("x[0]", -2.0, 2.0, 2)])
def test_cell_rect_spans_exactly_the_cells_cell_index_finds(axis):
    start, width = cell_rect(axis)
    step = (axis.hi - axis.lo) / (axis.n - 1)
    assert (start, width) == pytest.approx((axis.lo - step / 2, axis.n * step))
    inside = np.linspace(start, start + width, 101)[1:-1]
    assert all(cell_index(axis, v) is not None for v in inside)
    assert cell_index(axis, start - 1e-6 * step) is None
    assert cell_index(axis, start + width + 1e-6 * step) is None


def _result(y: Axis | None) -> SweepResult:
    req = SweepRequest(spec=load_spec("tanh_layer"), x=Axis("a", 0.0, 3.0, 4), y=y)
    ny, nx = req.shape
    zeros = np.zeros((ny, nx))
    return SweepResult(
        request=req,
        x_values=req.x.values(),
        y_values=y.values() if y is not None else None,
        status=np.full((ny, nx), int(Status.CONVERGED), np.int8),
        iterations=zeros.astype(np.int32),
        residual=zeros.astype(np.float32),
        period=zeros.astype(np.int16),
        basin=zeros.astype(np.int32),
        lyapunov=np.full((ny, nx), np.nan, np.float32),
        fixed_points=np.zeros((1, 2)),
    )


def test_cell_assignments_are_the_axis_values():
    two_d = _result(Axis("x[0]", -2.0, 2.0, 5))
    assert cell_assignments(two_d, 2, 1) == {"a": 2.0, "x[0]": -1.0}  # a = 0, 1, 2, 3
    one_d = _result(None)
    assert cell_assignments(one_d, 1, 0) == {"a": 1.0}
