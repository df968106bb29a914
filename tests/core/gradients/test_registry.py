"""The registry of gradient methods: every method declared once with a label and a distinct
colour, in table order; each entry computes its gradient, checked against the closed form of a
linear contraction within the error its method admits; and a method registered later is run by
the lab with no other change."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from implicit_viz.core.errors import SolverError
from implicit_viz.core.gradients import (
    CURVE_METHODS,
    METHODS,
    available_methods,
    method_info,
    register_method,
    registry,
)
from implicit_viz.core.gradients.binding import _bind
from implicit_viz.core.gradients.meter import SavedTensorMeter
from implicit_viz.core.gradients.methods import _exact, _Run, _Setup
from implicit_viz.core.solvers import get_solver
from tests.core.gradients.problems import (
    LINEAR,
    Z_STAR,
    A,
    C,
    V,
    lab,
    linear_gradient_sum,
    rel,
)


def test_every_method_is_registered_with_a_label_and_a_distinct_colour_in_table_order():
    assert (
        METHODS
        == available_methods()
        == (
            "unrolled",
            "implicit_exact",
            "implicit_fixed_point",
            "implicit_anderson",
            "jacobian_free",
            "phantom",
        )
    )
    assert CURVE_METHODS == ("unrolled", "implicit_fixed_point", "implicit_anderson", "phantom")
    infos = [method_info(m) for m in METHODS]
    assert [i.name for i in infos] == list(METHODS)
    assert all(i.label and i.summary for i in infos)
    assert len({i.label for i in infos}) == len(infos)
    colors = [i.color.upper() for i in infos]
    assert all(re.fullmatch(r"#[0-9A-F]{6}", c) for c in colors)
    assert len(set(colors)) == len(colors)
    assert method_info("implicit_fixed_point").label == "implicit (fixed-point)"
    assert [m for m in METHODS if method_info(m).curve] == list(CURVE_METHODS)
    backward = [m for m in CURVE_METHODS if method_info(m).residual_kind == "backward"]
    assert backward == ["implicit_fixed_point", "implicit_anderson"]


def test_unknown_and_duplicate_names_are_refused():
    with pytest.raises(SolverError, match=r"unknown gradient method 'phantm'.*'phantom'"):
        method_info("phantm")
    with pytest.raises(SolverError, match="already registered"):
        register_method("phantom", label="x", color="#000000", summary="x", note=str)(
            lambda s, m, c: None
        )


def linear_setup(k: int) -> _Setup:
    """LINEAR bound for L = sum(z*) w.r.t. (c, v, A), at the exact z* from NumPy."""
    b = _bind(LINEAR, ("c", "v", "A"), "sum(z)", torch.device("cpu"), torch.float64)
    return _Setup(
        bound=b,
        solver=get_solver("fixed_point"),
        phantom=get_solver("damped", beta=0.5),
        anderson=get_solver("anderson", m=5, lam=1e-4),
        z0=b.fmap.start(1).T.contiguous(),
        z_star=torch.as_tensor(Z_STAR)[:, None],
        k_max=k,
        phantom_steps=k,
        backward_tol=100 * float(torch.finfo(torch.float64).eps),
        own=(),
    )


# Error each method admits on LINEAR (||A||_2 = 0.6, so ||(I - A)^-1||_2 <= 2.5), k = 200:
# exact: a 4 x 4 dense solve, round-off times cond(I - A) <= 4; fixed-point / Anderson: stopped
# at ||r|| <= 100 eps ||g||, so ||u - u*|| <= 2.5 * 100 eps ||g||; unrolled from 0: the error
# falls as k 0.6^k (1e-42 at k = 200); phantom: damped steps contract by ||M|| <= 0.8
# (4e-20 at k = 200). All well below 1e-11 relative.
TOLERANCE = {
    "implicit_exact": 1e-12,
    "implicit_fixed_point": 1e-11,
    "implicit_anderson": 1e-11,
    "unrolled": 1e-11,
    "phantom": 1e-11,
}


@pytest.mark.parametrize("name", METHODS)
def test_each_registry_entry_computes_the_implicit_gradient_of_a_contraction(name):
    setup = linear_setup(200)
    want = linear_gradient_sum()
    exact = _exact(setup.bound, setup.z_star, SavedTensorMeter(False)).numpy()
    assert rel(exact, want) < 1e-12
    run = method_info(name).compute(setup, SavedTensorMeter(False), False)
    got = run.gradient.detach().numpy()
    if name in TOLERANCE:
        assert rel(got, want) < TOLERANCE[name]
        return
    # Jacobian-free: u = dL/dz* = 1 in place of u* = (I - A)^-T 1: its own closed form, and
    # ||u - u*|| = ||A^T u*|| <= ||A|| ||u*||, which dL/dv = c u shows directly
    ones = np.ones(4)
    assert rel(got, np.concatenate([[ones @ V], C * ones, np.outer(ones, Z_STAR).ravel()])) < 1e-12
    assert rel(got[1:5], want[1:5]) <= np.linalg.norm(A, 2) + 1e-12


def test_a_method_registered_later_is_run_by_the_lab(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    @register_method(
        "half_exact",
        label="half of the exact gradient",
        color="#56B4E9",
        summary="0.5 times the exact implicit gradient",
        note=lambda s: "a test method",
    )
    def _half(s, meter, curve):
        return _Run(0.5 * _exact(s.bound, s.z_star, meter), 0)

    assert available_methods()[-1] == "half_exact"
    report = lab(LINEAR, ["c", "v", "A"], tol=1e-13, unroll_max=5)
    assert [m.method for m in report.methods] == [*METHODS, "half_exact"]
    half = report.method("half_exact")
    assert half.rel_error == pytest.approx(0.5, abs=1e-9)
    assert half.note == "a test method"
    assert [c.method for c in report.curves] == list(CURVE_METHODS)  # it has no curve
