"""The cycle test of the driver loops: does a row of iterates repeat with period 2..max_period?

The driver's loops (general and lean, :mod:`implicit_viz.core.driver`) keep a ring
``(h, D, Bw)`` of the last iterates (:class:`implicit_viz.core.driver.pieces.Ring`),
``ring[t % h]`` holding ``z_t``, and call :func:`detect_period` at their check points through
one :class:`~implicit_viz.core.driver.pieces.CycleWatch`. For large batches the ring is tens of megabytes and reading it sets the cost, so the
test works in stages: a prefilter on the first component only (one lag at a time over the
whole batch, or all lags in one block for narrow batches), the full test at the first
candidate lag by gathering four points per row, and the test at every lag only for the rows
whose first candidate fails.

A match is only a candidate: an orbit still converging slowly to a cycle of smaller period (or
to a fixed point) matches too. For naive and damped iteration the driver polishes each
confirmed candidate (:mod:`implicit_viz.core.cycle_polish`: Newton's method on
``f^k(w) - w``, the minimal period, is the orbit on it); there the test reports the smallest
matching lag as it is (``divisors=False``).
"""

from __future__ import annotations

import functools

import torch

from implicit_viz.core.batchops import col_absmax, take_cols
from implicit_viz.core.result import SolveOptions

#: A cycle's mismatch after one period must be below this fraction of its points' spread.
CYCLE_REL = 1e-3


def detect_period(
    ring: torch.Tensor,
    k: int,
    h: int,
    opts: SolveOptions,
    done: torch.Tensor,
    count: int,
    divisors: bool = True,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Test live rows for a cycle of period 2..max_period among the last iterates.

    ``ring[(k - t) % h]`` holds the iterate ``t`` steps back. A row has period ``p`` when both
    ``z_T ~ z_{T-p}`` and ``z_{T-1} ~ z_{T-1-p}`` hold to within ``min(thr, 1e-3 spread)``, with
    ``thr = period_tol (1 + ||z_T||_inf)`` and ``spread = ||z_T - z_{T-1}||_inf > 10 thr``; the
    smallest such ``p`` is reported, or with ``divisors`` the smallest divisor ``q`` of it with
    ``z_T ~ z_{T-q}`` within ``100 tight`` (an orbit closing in on a ``q``-cycle with multiplier
    near -1 matches ``2q`` first); without it, the smallest matching lag itself (for
    :mod:`implicit_viz.core.cycle_polish`, which finds the true period). Returns ``(found (Bw,) bool, period (Bw,) int64)``, or Nones
    when there is too little history (``count`` consecutive iterates recorded up to step k).
    ``period`` is 0 where not ``found``.

    Cheap first: the smallest lag at which the first component alone is within the bound (a
    necessary condition) is found on ``(Bw,)`` vectors; only rows with such a lag, not done and
    with enough spread are tested in full (:func:`period_of_rows`).
    """
    p_max = min(opts.max_period, min(count, h) - 2)
    if p_max < 2:
        return None, None
    ps = range(2, p_max + 1)
    z_t = ring[k % h]
    spread = ring_distance(ring[(k - 1) % h].unsqueeze(0), z_t)[0]
    thr = opts.period_tol * (1 + col_absmax(z_t))
    tight = torch.minimum(thr, CYCLE_REL * spread)
    p0, n_close = first_close_lag(ring, k, h, ps, tight)
    able = (p0 > 0) & (spread > 10 * thr) & ~done
    rows = able.nonzero().squeeze(1)
    per = torch.zeros(z_t.shape[1], dtype=torch.int64, device=ring.device)
    if rows.numel():
        more = n_close[rows] > 1  # rows with another candidate lag beyond p0
        per[rows] = period_of_rows(
            ring, rows, k, h, ps, tight[rows], p0[rows], more, divisors=divisors
        )
    return per > 0, per


#: A cycle found by :func:`detect_period` counts once it still holds this many steps later
#: (or at the next test, when tests are closer): an orbit passing near an unstable cycle
#: matches once and moves on.
CONFIRM_AFTER = 8


def _confirm_gap(opts: SolveOptions) -> int:
    return min(opts.period_every, CONFIRM_AFTER)


def last_test_step(opts: SolveOptions) -> int:
    """The last step with a cycle test: its cycles are confirmed at the budget's last step."""
    return opts.max_iter - _confirm_gap(opts)


def is_test_step(k: int, opts: SolveOptions) -> bool:
    """Whether step ``k`` has a cycle test: every ``period_every`` steps (from step 4) up to
    :func:`last_test_step`, and at that step. None later: its cycles could not be confirmed."""
    last = last_test_step(opts)
    return 4 <= k <= last and (k % opts.period_every == 0 or k == last)


def next_test_step(k: int, opts: SolveOptions) -> int | None:
    """The first step after ``k`` with a cycle test (None when there is none)."""
    last = last_test_step(opts)
    nxt = (max(k, 3) // opts.period_every + 1) * opts.period_every  # tests start at step 4
    return min(nxt, last) if k < last else None


def confirm_step(k: int, opts: SolveOptions) -> int:
    """The step at which cycles found by the test at step ``k`` are confirmed (within the
    budget for every test step)."""
    return k + _confirm_gap(opts)


def confirm_period(
    ring: torch.Tensor, k: int, h: int, opts: SolveOptions, rows: torch.Tensor, per: torch.Tensor
) -> torch.Tensor:
    """The cycle test of :func:`detect_period` at step ``k`` for ``rows (n,)`` at their
    candidate periods ``per (n,)`` only (the ring must hold ``per + 2`` iterates up to k):
    ``(n,)`` bool."""
    slot, z_t, z_t1 = _last_two(ring, k, h, rows)
    spread = row_distance(z_t1, z_t)
    thr = opts.period_tol * (1 + z_t.abs().amax(dim=1))
    tight = torch.minimum(thr, CYCLE_REL * spread)
    return _matches(ring, slot, rows, per, z_t, z_t1, tight) & (spread > 10 * thr)


def _last_two(
    ring: torch.Tensor, k: int, h: int, rows: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``slot (h,)`` (lag -> ring slot) and the iterates ``z_k``, ``z_{k-1}`` of ``rows (n,)``,
    each ``(n, D)``."""
    slot = torch.tensor([(k - lag) % h for lag in range(h)], device=ring.device)
    z_t = ring_points(ring, torch.full_like(rows, k % h), rows)
    z_t1 = ring_points(ring, torch.full_like(rows, (k - 1) % h), rows)
    return slot, z_t, z_t1


def _matches(
    ring: torch.Tensor,
    slot: torch.Tensor,
    rows: torch.Tensor,
    lag: torch.Tensor,
    z_t: torch.Tensor,
    z_t1: torch.Tensor,
    tight: torch.Tensor,
) -> torch.Tensor:
    """Whether ``z_T ~ z_{T-lag}`` and ``z_{T-1} ~ z_{T-1-lag}`` within ``tight`` for each of
    ``rows (n,)`` at its own ``lag (n,)``: ``(n,)`` bool."""
    d1 = row_distance(ring_points(ring, slot.index_select(0, lag), rows), z_t)
    d2 = row_distance(ring_points(ring, slot.index_select(0, lag + 1), rows), z_t1)
    return (d1 <= tight) & (d2 <= tight)


#: Up to this many rows the cycle prefilter tests every lag at once (cheaper than one lag at
#: a time when the per-operation overhead, not the data, sets the cost).
LAGS_AT_ONCE_MAX_WIDTH = 2048


def first_close_lag(
    ring: torch.Tensor, k: int, h: int, ps: range, tight: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Smallest lag ``p`` in ``ps`` with ``|ring[k-p, 0] - ring[k, 0]| <= tight``, 0 where none,
    and how many lags in ``ps`` are that close: ``(h, D, B)`` -> ``(B,)`` int64, ``(B,)``
    float. Elementwise float ops on ``(B,)`` vectors, one lag at a time."""
    z0 = ring[k % h, 0]
    if z0.shape[0] <= LAGS_AT_ONCE_MAX_WIDTH:
        # Narrow batches (a live solve is one row): all lags in a handful of operations on a
        # (P, Bw) block instead of five per lag; the same comparisons, the same result.
        lags = torch.arange(ps[0], ps[-1] + 1, device=ring.device)
        block = ring[:, 0].index_select(0, (k - lags) % h)  # (P, Bw), row i is lag ps[i]
        close = (block - z0).abs_() <= tight
        first = close.to(torch.int8).argmax(dim=0)  # the first close lag (0 when none is)
        n_close = close.sum(dim=0).to(ring.dtype)
        return torch.where(n_close > 0, lags[first], 0), n_close
    top = float(ps[-1] + 1)
    buf = torch.empty_like(z0)
    close = torch.empty_like(z0)
    best = torch.zeros_like(z0)  # top - p of the smallest close lag p so far
    n_close = torch.zeros_like(z0)
    for p in ps:
        torch.sub(ring[(k - p) % h, 0], z0, out=buf).abs_()
        torch.le(buf, tight, out=close)
        n_close.add_(close)
        torch.maximum(best, close.mul_(top - p), out=best)
    return torch.where(best > 0, top - best, 0.0).to(torch.int64), n_close


def period_of_rows(
    ring: torch.Tensor,
    rows: torch.Tensor,
    k: int,
    h: int,
    ps: range,
    tight: torch.Tensor,
    p0: torch.Tensor,
    more: torch.Tensor,
    divisors: bool = True,
) -> torch.Tensor:
    """The full cycle test on ``rows (n,)`` of ``ring (h, D, B)``, given each row's bound
    ``tight (n,)``, first candidate lag ``p0 (n,)`` (no smaller lag can match) and whether it
    has other candidates ``more (n,)`` bool: the period of each row, 0 where none. Rows whose
    ``p0`` fails are tested at every lag, when they have another candidate. ``divisors``: as
    for :func:`detect_period`."""
    dev = ring.device
    slot, z_t, z_t1 = _last_two(ring, k, h, rows)
    ok = _matches(ring, slot, rows, p0, z_t, z_t1, tight)
    per = torch.where(ok, p0, 0)
    # Divisors: an orbit closing in on a q-cycle with multiplier near -1 matches 2q before q;
    # the smallest divisor q of p within 100 x the tolerance is the period.
    table = divisor_table(int(ps[-1]), dev)  # (p_max + 1, Q)
    sel = per.new_empty(0)
    if table.shape[1] and divisors:  # some period up to p_max has a divisor
        sel = (table[:, 0].index_select(0, per) > 0).nonzero().squeeze(1)  # rows with one
    if sel.numel():
        lags = table.index_select(0, per.index_select(0, sel))  # (m, Q), 0-padded
        pts = ring_points(
            ring, slot.index_select(0, lags.reshape(-1)), rows[sel].repeat_interleave(lags.shape[1])
        )
        dq = row_distance(pts, z_t.index_select(0, sel).repeat_interleave(lags.shape[1], dim=0))
        bound = (100 * tight.index_select(0, sel))[:, None]
        near = ((dq.view(lags.shape) <= bound) & (lags > 0)).to(torch.int8)  # (m, Q)
        first = near.argmax(dim=1, keepdim=True)  # first divisor that fits
        q = torch.where(near.gather(1, first)[:, 0] > 0, lags.gather(1, first)[:, 0], 0)
        per[sel] = torch.where(q > 0, q, per.index_select(0, sel))
    again = (~ok & more).nonzero().squeeze(1)
    if again.numel():
        sub = take_cols(ring, rows.index_select(0, again))
        per[again] = period_all_lags(sub, k, h, ps, tight.index_select(0, again), divisors=divisors)
    return per


def ring_points(ring: torch.Tensor, slots: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``ring[slots[i], :, rows[i]]`` for each ``i``: ``(h, D, B), (n,), (n,) -> (n, D)``.
    One ``index_select`` on the flat ring (advanced indexing is several times slower)."""
    _, d, b = ring.shape
    base = slots * (d * b) + rows  # (n,)
    idx = base[:, None] + torch.arange(0, d * b, b, device=ring.device)  # (n, D)
    return ring.reshape(-1).index_select(0, idx.reshape(-1)).view(-1, d)


@functools.lru_cache(maxsize=32)
def _divisor_table_cpu(p_max: int) -> torch.Tensor:
    """Row ``p``: the divisors ``2 <= q <= p / 2`` of ``p``, ascending, 0-padded:
    ``(p_max + 1, Q)`` int64."""
    divs = [[q for q in range(2, p // 2 + 1) if p % q == 0] for p in range(p_max + 1)]
    width = max(len(d) for d in divs)
    return torch.tensor([d + [0] * (width - len(d)) for d in divs], dtype=torch.int64).reshape(
        p_max + 1, width
    )


def divisor_table(p_max: int, device: torch.device) -> torch.Tensor:
    return _divisor_table_cpu(p_max).to(device)


def row_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``max_d |a[n, d] - b[n, d]|``: ``(n, D), (n, D) -> (n,)``."""
    return (a - b).abs_().amax(dim=1)


def period_all_lags(
    ring: torch.Tensor, k: int, h: int, ps: range, tight: torch.Tensor, divisors: bool = True
) -> torch.Tensor:
    """The full cycle test at every lag on all rows of ``ring (h, D, n)`` with bounds
    ``tight (n,)``: the period of each row, 0 where none (see :func:`detect_period`, also for
    ``divisors``)."""
    dev = ring.device
    d1 = ring_distance(ring, ring[k % h])[torch.tensor([(k - p) % h for p in ps], device=dev)]
    # The second condition is tested only on the rows that pass the first.
    per = torch.zeros(ring.shape[2], dtype=torch.int64, device=dev)
    rows = (d1 <= tight).any(dim=0).nonzero().squeeze(1)
    if rows.numel():
        sub_ring = take_cols(ring, rows)
        dist_t1 = ring_distance(sub_ring, sub_ring[(k - 1) % h])
        d2 = dist_t1[torch.tensor([(k - 1 - p) % h for p in ps], device=dev)]
        hit_rows = (d1[:, rows] <= tight[rows]) & (d2 <= tight[rows])
        keep = hit_rows.any(dim=0)
        rows, hit_rows = rows[keep], hit_rows[:, keep]
    if rows.numel():
        # Work on the few rows with a hit: the smallest matching period, then a divisor q of it
        # that nearly fits (see period_of_rows).
        sub = hit_rows.T.to(torch.int8).contiguous()  # (k, P-1): argmax along rows is fast
        p_row = sub.argmax(dim=1) + 2  # first hit = smallest period
        near = (d1[:, rows] <= 100 * tight[rows]).to(torch.int8)
        for p in p_row.unique().tolist() if divisors else ():
            for q in range(2, p // 2 + 1):
                if p % q == 0:
                    p_row = torch.where((p_row == p) & (near[q - 2] > 0), q, p_row)
        per[rows] = p_row
    return per


def ring_distance(ring: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``max_d |ring[s, d, b] - z[d, b]|`` for every slot: ``(h, D, B), (D, B) -> (h, B)``."""
    diff = (ring - z).abs_()
    if diff.shape[1] <= 8:
        acc = diff[:, 0]
        for i in range(1, diff.shape[1]):
            acc = torch.maximum(acc, diff[:, i])
        return acc
    return diff.amax(dim=1)
