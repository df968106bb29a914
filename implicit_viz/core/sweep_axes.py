"""The axes of a sweep: which targets a spec offers, their default ranges, and the cells.

A target is a param (``"a"``), a start component (``"z0[1]"``) or an element of a small tensor
(``"W[0,1]"``), written as :func:`implicit_viz.core.spec.parse_target` reads it. Cells are
centred on the axis values (``lo``, ..., ``hi``, ``n`` of them), so a cell spans one step of
the axis around its value. NumPy only; torch is imported only to draw a tensor's values.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

import numpy as np

from implicit_viz.core.spec import Spec, TensorSpec, parse_target

if TYPE_CHECKING:  # pragma: no cover
    from implicit_viz.core.sweep import Axis, SweepResult

#: The y "axis" of a 1-D sweep.
NO_AXIS = "(none)"
#: Tensors with more entries than this offer no elements as axes.
MAX_TENSOR_ENTRIES = 16
#: Start components offered as axes.
MAX_Z0_AXES = 8
#: Range of a start component when it is chosen as an axis: +- this.
Z0_HALF_RANGE = 2.0
#: Range of a tensor element: its value +- this.
TENSOR_HALF_RANGE = 1.0


def _small_tensor_elements(spec: Spec) -> Iterator[tuple[TensorSpec, tuple[int, ...], str]]:
    """``(tensor, index, target)`` for every element of a tensor small enough to sweep, the
    target written as an axis takes it (``"W[0,1]"``)."""
    for t in spec.tensors:
        if t.size <= MAX_TENSOR_ENTRIES:
            for idx in np.ndindex(*t.shape):
                yield t, idx, f"{t.name}[{','.join(map(str, idx))}]"


def axis_targets(spec: Spec) -> list[str]:
    """Targets a sweep axis can take: params, ``z0[i]`` (up to :data:`MAX_Z0_AXES`), elements
    of tensors of at most :data:`MAX_TENSOR_ENTRIES` entries."""
    out = [p.name for p in spec.params]
    out += [f"z0[{i}]" for i in range(min(spec.dim, MAX_Z0_AXES))]
    out += [target for _, _, target in _small_tensor_elements(spec)]
    return out


def tensor_element_values(spec: Spec, seeds: Mapping[str, int] | None = None) -> dict[str, float]:
    """The value of every element of a small tensor (those :func:`axis_targets` offers), keyed
    as there (``"W[0,1]"``); drawn tensors use ``seeds`` (name -> seed) where given."""
    from implicit_viz.core.compiled_map import materialize_tensor

    if seeds:
        spec = spec.with_overrides({f"{name}.seed": int(seed) for name, seed in seeds.items()})
    arrays = {
        t.name: materialize_tensor(t).numpy() for t in spec.tensors if t.size <= MAX_TENSOR_ENTRIES
    }
    return {target: float(arrays[t.name][idx]) for t, idx, target in _small_tensor_elements(spec)}


def default_axes(spec: Spec) -> tuple[str, str]:
    """A first choice of ``(x, y)`` targets: the first param against an element of the smallest
    tensor, else the start plane for a map without tensors (basins), else the first param
    alone (y is :data:`NO_AXIS`)."""
    targets = axis_targets(spec)
    small = sorted((t for t in spec.tensors if t.size <= MAX_TENSOR_ENTRIES), key=lambda t: t.size)
    if spec.params and small:
        return spec.params[0].name, f"{small[0].name}[{','.join('0' * len(small[0].shape))}]"
    if spec.dim >= 2 and not spec.tensors:
        return "z0[0]", "z0[1]"
    if spec.params:
        return spec.params[0].name, NO_AXIS
    return targets[0], (targets[1] if len(targets) > 1 else NO_AXIS)


def default_range(target: str, spec: Spec) -> tuple[float, float]:
    """``(lo, hi)`` for a target: a param's range (its value +-1 when the range is empty),
    +-:data:`Z0_HALF_RANGE` for ``z0[i]``, the element's value +-:data:`TENSOR_HALF_RANGE`
    for a tensor element. Raises :class:`~implicit_viz.core.errors.SpecError` for an unknown
    target."""
    t = parse_target(target, spec)
    if t.kind == "param":
        p = spec.param(t.name)
        return (p.min, p.max) if p.min < p.max else (p.value - 1.0, p.value + 1.0)
    if t.kind == "z0":
        return -Z0_HALF_RANGE, Z0_HALF_RANGE
    value = 0.0
    if t.kind == "tensor" and t.index is not None:
        tensor = spec.tensor(t.name)
        pinned = dict(tensor.set)
        if t.index in pinned:
            value = float(pinned[t.index])
        elif tensor.data is not None:
            value = float(tensor.data[int(np.ravel_multi_index(t.index, tensor.shape))])
    return value - TENSOR_HALF_RANGE, value + TENSOR_HALF_RANGE


def cell_assignments(result: SweepResult, ix: int, iy: int) -> dict[str, float]:
    """The axis values of cell ``(ix, iy)``: ``{x_target: x, y_target: y}`` (x alone for a
    1-D sweep)."""
    req = result.request
    out = {req.x.target: float(result.x_values[ix])}
    if req.y is not None and result.y_values is not None:
        out[req.y.target] = float(result.y_values[iy])
    return out


def cell_index(axis: Axis, value: float) -> int | None:
    """Index of the cell whose centre is nearest ``value`` (None outside the drawn cells)."""
    if axis.n == 1:
        return 0 if abs(value - axis.lo) <= 0.5 * max(abs(axis.hi - axis.lo), 1e-12) else None
    step = (axis.hi - axis.lo) / (axis.n - 1)
    i = round((value - axis.lo) / step)
    if not -0.5 <= (value - axis.lo) / step <= axis.n - 0.5:
        return None
    return min(max(i, 0), axis.n - 1)


def cell_rect(axis: Axis) -> tuple[float, float]:
    """``(start, width)`` of the drawn cells along an axis, in axis units (cell centres on the
    axis values: half a step beyond ``lo`` and ``hi``)."""
    step = (axis.hi - axis.lo) / (axis.n - 1) if axis.n > 1 else max(axis.hi - axis.lo, 1.0)
    return axis.lo - step / 2, axis.hi - axis.lo + step
