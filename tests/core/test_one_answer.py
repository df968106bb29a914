"""One answer per cell: a sweep's cell and ``solve`` at that cell's values, with the sweep's dtype
and options, report the same outcome, period and z* (within tol). 1,000 cells sampled from
sweeps of three presets; 100 % agreement on outcome and period."""

from __future__ import annotations

import numpy as np
import pytest

from implicit_viz.core.compiled_map import compile_spec
from implicit_viz.core.driver import solve
from implicit_viz.core.spec import load_spec
from implicit_viz.core.status import Status
from implicit_viz.core.sweep import Axis, SweepRequest, sweep, sweep_options
from implicit_viz.core.sweep_axes import cell_assignments

CASES = {
    "tanh_layer": (Axis("a", 0.0, 3.0, 48), Axis("x[0]", -2.0, 2.0, 48), "fixed_point"),
    "logistic": (Axis("r", 2.5, 4.0, 400), None, "fixed_point"),
    "newton_cubic": (Axis("z0[0]", -1.5, 1.5, 40), Axis("z0[1]", -1.5, 1.5, 40), "newton"),
}
SAMPLES = {"tanh_layer": 400, "logistic": 300, "newton_cubic": 300}


@pytest.mark.parametrize("key", list(CASES))
def test_sampled_cells_agree_with_solve(key):
    x, y, solver = CASES[key]
    spec = load_spec(key)
    req = SweepRequest(spec, x, y, solver=solver, options=sweep_options(spec, "float32"))
    res = sweep(req)
    rng = np.random.default_rng(0)
    ny, nx = res.status.shape
    cells = rng.choice(ny * nx, size=min(SAMPLES[key], ny * nx), replace=False)
    # the cells as one batch of single-cell solves would be slow: solve them one by one, but
    # grouped by nothing, exactly as a user clicking them would
    mismatches = []
    for flat in cells:
        iy, ix = divmod(int(flat), nx)
        cell_spec = spec.with_overrides(cell_assignments(res, ix, iy))
        fm = compile_spec(cell_spec, dtype="float32")
        one = solve(fm, solver, options=req.options)
        got = (Status(int(one.status[0])).label, int(one.period[0]))
        want = (Status(int(res.status[iy, ix])).label, int(res.period[iy, ix]))
        if got != want:
            mismatches.append((ix, iy, want, got))
            continue
        if got[0] == "converged" and res.z is not None:
            np.testing.assert_allclose(one.z[0].numpy(), res.z[iy, ix], atol=10 * req.options.tol)
    assert not mismatches, f"{len(mismatches)} of {len(cells)} cells differ: {mismatches[:5]}"
