"""Issue 15, item 8: the cost of one evaluation of ``f`` is counted on meta tensors, checked
against hand-counted flops, and a map too costly to evaluate is refused before any compute."""

from __future__ import annotations

import time

import pytest
import torch

import implicit_viz.core.compiled_map as problem
from implicit_viz.core.compiled_map import check_spec, compile_spec
from implicit_viz.core.cost import count
from implicit_viz.core.errors import LimitError, SpecError
from implicit_viz.core.limits import MAX_EVAL_FLOPS
from tests.helpers import make_spec


def normal(*shape: int) -> dict:
    return {"shape": list(shape), "init": "normal", "seed": 0, "scale": 0.01}


@pytest.mark.parametrize(
    ("f", "dim", "tensors", "flops"),
    [
        # W @ z: 2 n^2 (a matrix-vector product), nothing else
        ("W @ z", 64, {"W": normal(64, 64)}, 2 * 64 * 64),
        # + b: n more; tanh: n more
        ("tanh(W @ z + b)", 64, {"W": normal(64, 64), "b": normal(64)}, 2 * 64**2 + 2 * 64),
        # (W @ W) @ z: 2 n^3 + 2 n^2; W @ (W @ z): 4 n^2
        ("(W @ W) @ z", 50, {"W": normal(50, 50)}, 2 * 50**3 + 2 * 50**2),
        ("W @ (W @ z)", 50, {"W": normal(50, 50)}, 4 * 50**2),
        # a rectangular product: (m, k) @ (k,) -> 2 m k
        ("U @ x + z", 3, {"U": normal(3, 40), "x": normal(40)}, 2 * 3 * 40 + 3),
        # 0.5 * z: one multiply per entry
        ("0.5 * z", 1000, {}, 1000),
    ],
)
def test_cost_matches_hand_count(f, dim, tensors, flops):
    cost = check_spec(make_spec(f, dim, tensors=tensors))
    assert cost is not None
    assert cost.flops == flops
    assert compile_spec(make_spec(f, dim, tensors=tensors)).cost == cost


def test_counter_sees_matrix_products_on_meta_tensors():
    a = torch.empty(30, 20, device="meta")
    b = torch.empty(20, 10, device="meta")
    _, cost = count(lambda: a @ b)
    assert cost.flops == 2 * 30 * 20 * 10
    assert cost.bytes == 30 * 10 * 4


def test_issue_chain_of_4096_matrices_is_refused_before_any_compute(monkeypatch):
    """``tanh((W @ ... @ W) @ z)`` with W 4096 x 4096 ran for over a minute; now refused with a
    hint at once, before the tensor is even drawn (7 products of 2 * 4096^3 flops)."""
    calls = []
    monkeypatch.setattr(problem, "materialize_tensor", lambda t: calls.append(t))
    spec = make_spec(
        "tanh((W @ W @ W @ W @ W @ W @ W @ W) @ z)",
        4096,
        tensors={"W": normal(4096, 4096)},
    )
    t0 = time.perf_counter()
    with pytest.raises(LimitError) as info:
        compile_spec(spec)
    assert time.perf_counter() - t0 < 5  # a hang guard, not a benchmark
    assert info.value.field == "f"
    assert "9.6e+11" in info.value.message
    assert "W @ (W @ z)" in info.value.message
    assert calls == []


def test_a_realistic_deq_layer_is_allowed():
    spec = make_spec(
        "tanh(W @ z + U @ x)",
        4096,
        tensors={"W": normal(4096, 4096), "U": normal(4096, 256), "x": normal(256)},
    )
    cost = check_spec(spec)
    assert cost is not None and cost.flops < MAX_EVAL_FLOPS / 10


def test_every_preset_is_within_the_limits():
    from implicit_viz.core.presets import preset_names, preset_path
    from implicit_viz.core.spec import load_spec

    for name in preset_names():
        cost = check_spec(load_spec(preset_path(name)))
        assert cost is not None and cost.flops < 1e7, name


def test_meta_check_reports_shape_errors_with_their_place():
    spec = make_spec("W @ z", 3, tensors={"W": normal(4, 5)})
    with pytest.raises(SpecError) as info:
        check_spec(spec)
    assert info.value.field == "f" and info.value.column == 1
    assert "(4, 5)" in str(info.value)


def test_evaluation_memory_is_checked(monkeypatch):
    monkeypatch.setenv("IMPLICIT_VIZ_MEMORY_MB", "1")
    # outer(z, z) at dim 2000: a 2000 x 2000 matrix per sample, 32 MB for the trial's 2 samples
    spec = make_spec("sum(outer(z, z)) * 0 + 0.5 * z", 2000)
    with pytest.raises(LimitError) as info:
        check_spec(spec)
    assert info.value.field == "f"
