"""The cycle test (core/cycles.py) against its rule written out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from implicit_viz.core import cycles
from implicit_viz.core.result import SolveOptions


def _planted_ring(seed: int, h: int, d: int, b: int, k: int) -> torch.Tensor:
    """A ring ``(h, D, B)`` of iterates up to step k: cycles of periods 2..12 (some with a
    near -1 multiplier approach, matching 2q before q), random walks, rows whose first
    component has settled while the others wander (a candidate at every lag), NaN rows."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(k - h + 1, k + 1, dtype=torch.float64)  # the steps held by the ring
    per = torch.randint(2, 13, (b,), generator=gen)
    phase = torch.rand(b, d, generator=gen, dtype=torch.float64) * 6
    pts = torch.sin(phase[None] + 2 * torch.pi * t[:, None, None] / per[None, :, None])
    noise = torch.rand(b, generator=gen, dtype=torch.float64) ** 6 * 1e-4
    pts = pts + noise[None, :, None] * torch.randn(h, b, d, generator=gen, dtype=torch.float64)
    kind = torch.randint(0, 6, (b,), generator=gen)
    walk = torch.randn(h, b, d, generator=gen, dtype=torch.float64).cumsum(0)
    pts = torch.where((kind == 0)[None, :, None], walk, pts)
    pts[:, kind == 1, 0] += 1e-6 * (-0.999) ** t[:, None]  # close to 2-cycle-like alternation
    settled = kind == 2
    pts[:, settled, 1:] = walk[:, settled, 1:]
    pts[:, settled, 0] = 0.25
    pts[-3, kind == 3, 1] = float("nan")
    ring = torch.empty(h, d, b, dtype=torch.float64)
    for j, step in enumerate(t.long().tolist()):
        ring[step % h] = pts[j].T
    return ring


def _rule_by_hand(ring, k, h, opts, done, count, row, divisors=True) -> int:
    """The documented rule for one row, in plain Python (``divisors``: the smallest nearly
    matching divisor of the lag, else the lag itself)."""
    p_max = min(opts.max_period, min(count, h) - 2)
    z = [[float(v) for v in ring[(k - lag) % h, :, row]] for lag in range(h)]  # z[lag]

    def dist(a, b):  # NaN anywhere: no match
        gaps = [abs(x - y) for x, y in zip(a, b)]
        return math.nan if any(math.isnan(g) for g in gaps) else max(gaps)

    thr = opts.period_tol * (1 + max(abs(v) for v in z[0]))
    spread = dist(z[0], z[1])
    tight = min(thr, cycles.CYCLE_REL * spread)
    if bool(done[row]) or not spread > 10 * thr:
        return 0
    for p in range(2, p_max + 1):
        if dist(z[p], z[0]) <= tight and dist(z[p + 1], z[1]) <= tight:
            for q in range(2, p // 2 + 1) if divisors else ():
                if p % q == 0 and dist(z[q], z[0]) <= 100 * tight:
                    return q
            return p
    return 0


@pytest.mark.parametrize("divisors", [True, False], ids=["divisor", "raw-lag"])
@pytest.mark.parametrize("wide", [False, True], ids=["all-lags-at-once", "lag-by-lag"])
@pytest.mark.parametrize(
    ("seed", "count", "max_period"), [(0, 34, 32), (1, 34, 32), (2, 5, 32), (3, 6, 32), (4, 66, 64)]
)
def test_detect_period_follows_the_rule(monkeypatch, wide, seed, count, max_period, divisors):
    monkeypatch.setattr(cycles, "LAGS_AT_ONCE_MAX_WIDTH", 0 if wide else 10**9)
    h, d, b, k = max_period + 2, 3, 1500, 201
    opts = SolveOptions(max_period=max_period)
    ring = _planted_ring(seed, h, d, b, k)
    done = torch.rand(b, generator=torch.Generator().manual_seed(seed)) < 0.1
    found, period = cycles.detect_period(ring, k, h, opts, done, count=count, divisors=divisors)
    expected = torch.tensor(
        [_rule_by_hand(ring, k, h, opts, done, count, r, divisors) for r in range(b)]
    )
    assert torch.equal(period, expected)
    assert torch.equal(found, expected > 0)
    assert int(found.sum()) > (b // 4 if count == h else 10)


@pytest.mark.parametrize("width", [1, 7, 300])
def test_prefilter_gives_the_same_lags_one_lag_at_a_time_or_all_at_once(monkeypatch, width):
    """The narrow-batch path (all lags in one block) and the per-lag loop agree exactly, on
    rings that hold exact cycles, near misses, NaN and nothing periodic."""
    gen = torch.Generator().manual_seed(width)
    h, k = 34, 97
    ring = torch.rand(h, 2, width, generator=gen, dtype=torch.float64)
    # plant cycles of several periods in some rows (z_{k-p} equal to z_k), NaN in another
    for row, p in enumerate([3, 5, 2, 17, 31][:width]):
        ring[(k - p) % h, :, row] = ring[k % h, :, row]
    ring[(k - 4) % h, 0, -1] = float("nan")
    tight = torch.full((width,), 0.05, dtype=torch.float64)
    ps = range(2, 33)
    monkeypatch.setattr(cycles, "LAGS_AT_ONCE_MAX_WIDTH", 10**9)
    at_once, n_at_once = cycles.first_close_lag(ring, k, h, ps, tight)
    monkeypatch.setattr(cycles, "LAGS_AT_ONCE_MAX_WIDTH", 0)
    per_lag, n_per_lag = cycles.first_close_lag(ring, k, h, ps, tight)
    assert torch.equal(at_once, per_lag) and torch.equal(n_at_once, n_per_lag)
    # and by hand: the smallest lag whose first component is within tight, and their count
    for row in range(width):
        close = [p for p in ps if abs(ring[(k - p) % h, 0, row] - ring[k % h, 0, row]) <= 0.05]
        assert int(at_once[row]) == (close[0] if close else 0)
        assert int(n_at_once[row]) == len(close)


@pytest.mark.parametrize("general", [False, True], ids=["lean-loop", "general-loop"])
@pytest.mark.parametrize(("every", "found_at"), [(50, 50), (8, 8), (4, 12)])
def test_a_cycle_is_confirmed_a_few_steps_after_the_test_that_finds_it(every, found_at, general):
    """The logistic map at r = 3.5 settles on its 4-cycle within a few dozen steps: the first
    test that sees it makes it a candidate, and it counts CONFIRM_AFTER steps later (or at the
    next test, when tests are closer), not at the next sparse test."""
    from implicit_viz.core.compiled_map import compile_spec
    from implicit_viz.core.driver import solve
    from implicit_viz.core.spec import load_spec
    from implicit_viz.core.status import Status

    fmap = compile_spec(load_spec("logistic"), dtype="float64").with_values(
        r=torch.tensor([3.5, 3.2])
    )
    opts = SolveOptions(max_iter=300, period_every=every, history=general)
    res = solve(fmap, "fixed_point", options=opts)
    assert res.statuses == [Status.PERIODIC, Status.PERIODIC]
    assert res.period.tolist() == [4, 2]
    # the transient to the cycle within tolerance takes 20-40 steps; the first test past it
    # finds the cycle, the confirmation follows min(every, CONFIRM_AFTER) steps later
    step = min(every, cycles.CONFIRM_AFTER)
    assert all(it % every == step % every for it in res.iterations.tolist())
    assert all(found_at + step <= it <= 60 + step for it in res.iterations.tolist())
    assert cycles.confirm_step(cycles.last_test_step(opts), opts) == 300


@pytest.mark.parametrize(
    ("max_iter", "every"), [(200, 48), (200, 50), (300, 8), (97, 8), (60, 34), (41, 40), (5, 8)]
)
def test_every_cycle_test_can_be_confirmed_within_the_budget(max_iter, every):
    """Tests run every period_every steps and at the last step whose cycles can still be
    confirmed; each confirmation lands within the budget, the last one on its last step."""
    opts = SolveOptions(max_iter=max_iter, period_every=every)
    tests = [k for k in range(max_iter + 1) if cycles.is_test_step(k, opts)]
    gap = min(every, cycles.CONFIRM_AFTER)
    regular = [k for k in range(4, max_iter - gap + 1) if k % every == 0]
    last = max_iter - gap
    assert tests == (sorted(set(regular) | {last}) if last >= 4 else [])
    assert all(cycles.confirm_step(k, opts) <= max_iter for k in tests)
    if tests:
        assert cycles.confirm_step(tests[-1], opts) == max_iter
    # next_test_step walks the same list
    walked, k = [], -1
    while (k := cycles.next_test_step(k, opts)) is not None:
        walked.append(k)
    assert walked == tests
