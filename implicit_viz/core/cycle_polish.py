"""True periods: polish a cycle candidate by Newton's method and check that the orbit is on it.

The ring test (:mod:`implicit_viz.core.cycles`) finds lags ``k`` with ``z_T ~ z_{T-k}``. That
also holds on an orbit still converging slowly to a cycle of a smaller period (or to a fixed
point): below a period doubling the orbit approaches the ``q``-cycle with a multiplier near
-1 and matches at lag ``2q`` long before it matches at ``q``. So each confirmed candidate is
polished before it counts:

1. Newton's method on ``F(w) = f^k(w) - w`` from the orbit's last point ``z_T``, batched over
   all candidate rows (each at its own ``k``), with the Jacobian of ``f^k`` by the chain rule
   over the points ``w, f(w), ..., f^{k-1}(w)`` (one autograd pass for all of them), at most
   :data:`NEWTON_STEPS` steps;
2. the polished cycle's minimal period ``p``: the smallest divisor of ``k`` with
   ``f^p(w*) ~ w*`` (to the cycle test's own tolerance); ``p = 1`` is a fixed point, not a
   cycle;
3. the orbit must be on that cycle or converging to it: ``e_j = ||z_{T - j p} - w*||_inf``
   over the ring's iterates of the same phase, ``e_0`` within the cycle test's tolerance, or
   ``e_0`` below :data:`NEAR_FRACTION` of the cycle's spread and not above every earlier
   ``e_j`` (an orbit leaving an unstable cycle moves away from it).

A row that fails any of these is not periodic at this test and keeps iterating. Here ``f`` is
the solver's iteration map (``z -> f(z)`` for naive iteration, the damped step for damped
iteration); solvers with memory or Jacobians have none, and their candidates keep the ring
test's verdict (:func:`polish_applies`).

All states are batch-last: ``z``, ``w`` are ``(D, n)``; the ring is ``(h, D, B)``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import torch

from implicit_viz.core.cycles import CYCLE_REL
from implicit_viz.core.result import SolveOptions

#: Newton steps (each one Jacobian of ``f`` at ``k`` points per row) before a candidate that
#: has not converged is given up at this test.
NEWTON_STEPS = 5
#: The orbit's last point must lie within this fraction of the cycle's spread (the distance from
#: the polished point to the nearest other point of its cycle).
NEAR_FRACTION = 0.25
#: Newton's steps go on only while each one cuts the residual ``||f^k(w) - w||_inf`` to at most
#: this fraction of the one before (quadratic convergence does far better; near a bifurcation,
#: where it is linear, the orbit is polished again at a later test).
RESIDUAL_FALL = 0.9
#: A Newton step at most this fraction of the cycle test's tolerance has converged.
STEP_REL = 1e-3
#: ... or at most this many units of rounding times ``1 + ||w||_inf``.
STEP_ULPS = 64
#: The residual ``||f^k(w) - w||_inf`` counts as rounding noise below this many units of
#: rounding per step times ``1 + ||w||_inf``.
RESIDUAL_ULPS = 8
#: Largest ``D * D * k`` (entries of the ``k`` Jacobians of one row) the polish handles; a row
#: of a map beyond it keeps the ring test's verdict. Rows are polished in chunks of about this
#: many entries.
MAX_JACOBIAN_ENTRIES = 1 << 22


@dataclass(frozen=True)
class PolishedCycles:
    """The polished candidates, in the order they were given.

    ``ok (n,)`` bool: a cycle of minimal period ``period`` exists where the orbit ends and the
    orbit is on it or converging to it; ``period (n,)`` int64, 0 where not ``ok``;
    ``points (n, P, D)``: the polished cycle ``f(w*), ..., f^{p-1}(w*), w*`` (oldest first,
    ending at the point the orbit is at), NaN after each row's period and in rows not ``ok``;
    None when not asked for.
    """

    ok: torch.Tensor
    period: torch.Tensor
    points: torch.Tensor | None


def polish_applies(step_map: Any, dim: int, max_period: int) -> bool:
    """Whether candidates are polished: the solver iterates a map of ``z`` alone
    (``step_map`` not None) and the Jacobians of one row at ``max_period`` points fit
    :data:`MAX_JACOBIAN_ENTRIES`."""
    return step_map is not None and dim * dim * max(max_period, 2) <= MAX_JACOBIAN_ENTRIES


def polish_cycles(
    step_map: Any,
    ring: torch.Tensor,
    k: int,
    count: int,
    rows: torch.Tensor,
    lag: torch.Tensor,
    opts: SolveOptions,
    want_points: bool = False,
) -> PolishedCycles:
    """Polish the cycle candidates ``rows (n,)`` of ``ring (h, D, B)`` (iterates up to step
    ``k``, ``count`` of them recorded) at their lags ``lag (n,)`` (see module doc); the cycle
    test's tolerance comes from ``opts.period_tol``.

    ``step_map`` is the iteration map of all ``B`` ring columns (batch-last, with ``take``).
    Rows are handled in chunks of :data:`MAX_JACOBIAN_ENTRIES` Jacobian entries.
    """
    _h, d, _ = ring.shape
    n = int(rows.numel())
    ok = torch.zeros(n, dtype=torch.bool, device=ring.device)
    period = torch.zeros(n, dtype=torch.int64, device=ring.device)
    p_max = int(lag.max()) if n else 1
    points = ring.new_full((n, p_max, d), float("nan")) if want_points else None
    if not n:
        return PolishedCycles(ok, period, points)
    chunk = max(1, MAX_JACOBIAN_ENTRIES // (d * d * p_max))
    for lo in range(0, n, chunk):
        part = slice(lo, min(n, lo + chunk))
        c_ok, c_per, c_pts = _polish_chunk(
            step_map, ring, k, count, rows[part], lag[part], opts.period_tol, want_points
        )
        ok[part], period[part] = c_ok, c_per
        if points is not None and c_pts is not None:
            points[part, : c_pts.shape[1]] = c_pts
    return PolishedCycles(ok, period, points)


def _polish_chunk(
    step_map: Any,
    ring: torch.Tensor,
    k: int,
    count: int,
    rows: torch.Tensor,
    lag: torch.Tensor,
    period_tol: float,
    want_points: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """:func:`polish_cycles` on one chunk: ``ok (n,)``, ``period (n,)``, points ``(n, L, D)``
    (or None)."""
    # Sorted by lag, longest first: the rows still stepping at step j of f^k are a prefix.
    order = torch.argsort(lag, descending=True, stable=True)
    lag_s, rows_s = lag.index_select(0, order), rows.index_select(0, order)
    f = step_map.take(rows_s)
    window = _ring_window(ring, k, rows_s, lag_s)  # z_{k - lag} .. z_k
    z_t = _end_points(window, lag_s)  # (D, n)
    spread = _absmax(z_t - _end_points(window, lag_s - 1))
    eps = torch.finfo(ring.dtype).eps
    tight = torch.minimum(period_tol * (1 + _absmax(z_t)), CYCLE_REL * spread)
    w, orbit, good, last_step = _newton(f, window, lag_s, tight, spread, eps)
    per = _minimal_period(orbit, lag_s, tight, good)
    ok = _on_or_converging(window, orbit, lag_s, w, per, tight)
    per = torch.where(ok, per, 0)
    inv = torch.empty_like(order)
    inv[order] = torch.arange(order.numel(), device=order.device)
    pts = None
    if want_points:
        pts = _cycle_points(_refined(f, w + last_step, orbit, per), per).index_select(0, inv)
    return ok.index_select(0, inv), per.index_select(0, inv), pts


def _bands(lag: torch.Tensor) -> list[tuple[slice, int]]:
    """Rows sorted by lag, longest first, in bands of lags ``(2^i, 2^(i+1)]``: ``(rows, longest
    lag)`` per band, so that work on ``(L + 1, n)`` blocks is at most twice the work on each
    row's own lag, with a handful of operations per band."""
    edges = torch.tensor([1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024], device=lag.device)
    _, counts = torch.unique_consecutive(torch.bucketize(lag, edges), return_counts=True)
    out, at = [], 0
    for m in counts.tolist():
        out.append((slice(at, at + m), int(lag[at])))
        at += m
    return out


def _ring_window(ring: torch.Tensor, k: int, rows: torch.Tensor, lag: torch.Tensor) -> torch.Tensor:
    """The last ``lag_i + 1`` iterates of each row, ``W[j] = z_{k - lag_i + j}`` for
    ``j <= lag_i`` (``z_k`` beyond): ``(L + 1, D, n)``, the orbit of ``z_{k - lag_i}`` under
    ``f^{lag_i}`` as the loop computed it (rows sorted by lag, longest first)."""
    h, d, b = ring.shape
    n = int(rows.numel())
    dev = ring.device
    flat = ring.reshape(-1)
    comp = torch.arange(0, d * b, b, device=dev)[None, :, None]  # (1, D, 1) component offsets
    out = ring.new_empty((int(lag[0]) + 1, d, n))
    for rs, big_l in _bands(lag):
        lag_b = lag[rs]
        j = torch.arange(big_l + 1, device=dev)[:, None]
        slots = torch.minimum(j, lag_b) + ((k - lag_b) % h)  # (L + 1, m), below 2 h
        slots = torch.where(slots >= h, slots - h, slots)
        idx = (slots * (d * b) + rows[rs])[:, None] + comp  # (L + 1, D, m)
        out[: big_l + 1, :, rs] = flat.index_select(0, idx.reshape(-1)).view(idx.shape)
    return out


def _absmax(x: torch.Tensor) -> torch.Tensor:
    """``max_d |x[..., d, :]|``: ``(..., D, n)`` -> ``(..., n)`` (unrolled over small D, where
    torch's reduction over a short dimension is slow)."""
    d = x.shape[-2]
    if d > 8:
        return x.abs().amax(dim=-2)
    acc = x[..., 0, :].abs()
    for i in range(1, d):
        acc = torch.maximum(acc, x[..., i, :].abs())
    return acc


def _prefix(lag: torch.Tensor) -> list[int]:
    """For each step ``j < max lag``, how many rows (sorted, longest lag first) have
    ``lag > j``: they are the first ones."""
    steps = torch.arange(int(lag[0]), device=lag.device, dtype=lag.dtype)
    return torch.searchsorted(-lag, -steps, side="left").tolist()  # -lag is ascending


def _orbit(f: Any, w: torch.Tensor, big_l: int) -> torch.Tensor:
    """``W[j] = f^j(w)`` for ``j <= L`` of every row of ``w (D, n)``: ``(L + 1, D, n)``."""
    out = w.new_empty((big_l + 1, *w.shape))
    out[0] = w
    for j in range(big_l):
        out[j + 1] = f(out[j])
    return out


def _end_points(orbit: torch.Tensor, lag: torch.Tensor) -> torch.Tensor:
    """``W[lag_i, :, i]``: ``(D, n)``."""
    idx = lag.view(1, 1, -1).expand(1, orbit.shape[1], -1)
    return orbit.gather(0, idx)[0]


def _jacobian_product(f: Any, orbit: torch.Tensor, prefix: list[int]) -> torch.Tensor:
    """``M_i = Df(W[k_i - 1]) ... Df(W[0])`` for each row (the chain rule for ``Df^k``):
    ``(D, D, n)``, batch-last, from the Jacobians of ``f`` at every point of every row's orbit
    at once (:func:`jacobians_fd`)."""
    d, n = orbit.shape[1:]
    cols = torch.cat([orbit[j, :, :m] for j, m in enumerate(prefix)], dim=1)  # (D, sum m)
    owner = torch.cat([torch.arange(m, device=orbit.device) for m in prefix])
    jac = jacobians_fd(f.take(owner), cols)  # (D, D, sum m)
    prod = torch.eye(d, dtype=orbit.dtype, device=orbit.device)[..., None].repeat(1, 1, n)
    at = 0
    for m in prefix:
        j_m, p_m = jac[:, :, at : at + m], prod[:, :, :m]
        at += m
        if d == 1:
            p_m.mul_(j_m)
        elif d <= 8:  # tiny matrices: D broadcast products beat a batched matmul
            acc = j_m[:, 0:1] * p_m[0:1]
            for i in range(1, d):
                acc.add_(j_m[:, i : i + 1] * p_m[i : i + 1])
            p_m.copy_(acc)
        else:
            p_m.copy_(torch.bmm(j_m.permute(2, 0, 1), p_m.permute(2, 0, 1)).permute(1, 2, 0))
    return prod


def jacobians_fd(f: Any, z: torch.Tensor) -> torch.Tensor:
    """``J[i, j, b] = d f_i / d z_j`` at each column of ``z (D, B)`` by central differences:
    ``(D, D, B)``. The step is ``eps^(1/3) (1 + |z_j|)`` (the actual difference of the two
    rounded points divides), so the error is about ``eps^(2/3)`` relative (4e-11 in float64,
    2e-5 in float32): ample for Newton's steps, which converge to the cycle all the same. At
    the tile sizes of sweeps it costs ``2 D`` evaluations of ``f`` without autograd, several
    times less than :func:`~implicit_viz.core.jacobians.jacobian_batch_last`."""
    d, b = z.shape
    h = torch.finfo(z.dtype).eps ** (1 / 3) * (1 + z.abs())  # (D, B)
    jac = z.new_empty(d, d, b)
    for j in range(d):
        up, down = z.clone(), z.clone()
        up[j] += h[j]
        down[j] -= h[j]
        torch.div(f(up) - f(down), up[j] - down[j], out=jac[:, j])
    return jac


def _solve_small(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``x = a^-1 b`` for ``a (D, D, n)``, ``b (D, n)``: ``x (D, n)`` and ``(n,)`` bool, solved.
    Closed forms for D = 1 and 2 (batched LAPACK on tiny matrices is slow)."""
    d = b.shape[0]
    if d == 1:
        det = a[0, 0]
        return b / det, det != 0
    if d == 2:
        a00, a01, a10, a11 = a[0, 0], a[0, 1], a[1, 0], a[1, 1]
        det = a00 * a11 - a01 * a10
        x0 = (a11 * b[0] - a01 * b[1]) / det
        x1 = (a00 * b[1] - a10 * b[0]) / det
        return torch.stack([x0, x1]), det != 0
    x, info = torch.linalg.solve_ex(a.permute(2, 0, 1), b.T.unsqueeze(-1))
    return x.squeeze(-1).T, info == 0


def _newton(
    f: Any,
    window: torch.Tensor,
    lag: torch.Tensor,
    tight: torch.Tensor,
    spread: torch.Tensor,
    eps: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Newton's method on ``f^{lag}(w) - w`` from ``w = window[0]``, whose orbit ``window
    (L + 1, D, n)`` is the ring's (rows sorted by lag, longest first). Returns the polished
    points ``w (D, n)``, their orbits ``(L + 1, D, n)``, ``good (n,)`` bool and the Newton step
    from ``w`` that was found small enough ``(D, n)`` (0 where none was taken), where the
    polish succeeded: the next Newton step from ``w`` is below
    ``max(STEP_REL tight, STEP_ULPS eps (1 + |w|))``, or ``w`` is a Newton iterate whose
    residual is at rounding level (``RESIDUAL_ULPS eps k (1 + |w|)``), or ``w`` has such a
    residual and Newton's step from it fails (``I - Df^k`` singular: a line of cycles, as for
    gradient descent at ``eta = 2 / L``). A step that is not finite or leaves half the orbit's
    ``spread`` around the start gives the row up; so does one whose residual does not fall
    to :data:`RESIDUAL_FALL` of the last."""
    d, n = window.shape[1:]
    dev = window.device
    z0 = window[0].contiguous()
    w = z0.clone()
    orbit = window  # copied before Newton's iterates overwrite any of it
    good = torch.zeros(n, dtype=torch.bool, device=dev)
    last_step = torch.zeros_like(z0)
    last_res = z0.new_full((n,), float("inf"))
    active = torch.arange(n, device=dev)  # sorted positions still iterating
    eye = torch.eye(d, dtype=z0.dtype, device=dev)
    for it in range(NEWTON_STEPS + 1):
        everyone = active.numel() == n
        f_a = f if everyone else f.take(active)
        lag_a = lag if everyone else lag.index_select(0, active)
        w_a = w if everyone else w.index_select(1, active)
        if it == 0:
            orb = window  # the ring's iterates are the orbit of the first point
        else:  # few rows by now: every row steps to the longest lag
            orb = _orbit(f_a, w_a, int(lag_a[0]))
            if orbit is window:
                orbit = window.clone()
            orbit[: orb.shape[0], :, active] = orb
        g = _end_points(orb, lag_a) - w_a  # (D, m): f^k(w) - w
        res = _absmax(g)
        quiet = res <= RESIDUAL_ULPS * eps * lag_a.to(w.dtype) * (1 + _absmax(w_a))
        done = quiet & (it > 0)
        good[active[done]] = True
        # a row whose residual does not fall is not in Newton's reach of a cycle (yet)
        go = ~done & (res <= RESIDUAL_FALL * last_res.index_select(0, active))
        if it == NEWTON_STEPS or not bool(go.any()):
            break
        if not bool(go.all()):
            active, lag_a, w_a, orb, g = active[go], lag_a[go], w_a[:, go], orb[:, :, go], g[:, go]
            quiet, res = quiet[go], res[go]
            f_a = f.take(active)
        last_res[active] = res
        jac = _jacobian_product(f_a, orb, _prefix(lag_a))  # (D, D, m)
        delta, solved = _solve_small(eye[..., None] - jac, g)  # (D, m)
        w_new = w_a + delta
        step = _absmax(delta)
        tol = torch.maximum(STEP_REL * tight[active], STEP_ULPS * eps * (1 + _absmax(w_a)))
        sane = solved & torch.isfinite(step)
        sane &= _absmax(w_new - z0.index_select(1, active)) <= 0.5 * spread[active]
        conv = sane & (step <= tol)
        good[active[conv | (quiet & ~sane)]] = True  # w (before this step) stands
        last_step[:, active[conv]] = delta[:, conv]
        more = sane & ~conv
        active = active[more]
        if not active.numel():
            break
        w[:, active] = w_new[:, more]
    return w, orbit, good, last_step


def _minimal_period(
    orbit: torch.Tensor, lag: torch.Tensor, tight: torch.Tensor, good: torch.Tensor
) -> torch.Tensor:
    """The smallest divisor ``p`` of each row's lag with ``||W[p] - W[0]||_inf <= tight``:
    ``(n,)``, 0 where the polish failed or none fits (1 is a fixed point). Rows sorted by lag,
    longest first, worked on in bands."""
    per = torch.zeros_like(lag)
    for rs, big_l in _bands(lag):
        gap = _absmax(orbit[1 : big_l + 1, :, rs] - orbit[0, :, rs])  # (L, m): j = 1..L
        fits = (gap <= tight[rs]) & _divides(big_l, orbit.device).index_select(1, lag[rs])
        j = torch.arange(1, big_l + 1, device=orbit.device, dtype=torch.int16)[:, None]
        first = torch.where(fits, j, big_l + 1).amin(dim=0).to(lag.dtype)  # L + 1: none
        per[rs] = torch.where(good[rs] & (first <= big_l), first, 0)
    return per


@functools.lru_cache(maxsize=16)
def _divides_cpu(big_l: int) -> torch.Tensor:
    j = torch.arange(1, big_l + 1)[:, None]
    q = torch.arange(big_l + 1)[None]
    return (q % j == 0) & (q >= j)


def _divides(big_l: int, device: torch.device) -> torch.Tensor:
    """``(L, L + 1)`` bool: ``[j - 1, q]`` where ``j`` divides ``q`` (``1 <= j <= q``)."""
    return _divides_cpu(big_l).to(device)


def _on_or_converging(
    window: torch.Tensor,
    orbit: torch.Tensor,
    lag: torch.Tensor,
    w: torch.Tensor,
    per: torch.Tensor,
    tight: torch.Tensor,
) -> torch.Tensor:
    """Whether each orbit is on its polished cycle of period ``per >= 2`` (``e_0 <= tight``)
    or converging to it (``e_0 <= NEAR_FRACTION`` times the cycle's spread
    ``min_{0 < j < p} ||W[j] - w||_inf``, and ``e_0`` not above both ``e_1`` and ``e_{k/p}``),
    with ``e_j = ||z_{T - j p} - w||_inf`` over the ring's window ``z_{T-k} .. z_T``
    ``(L + 1, D, n)`` (``w``, with its orbit ``W``, has the phase of ``z_{T-k}``, and ``p``
    divides ``k``): ``(n,)`` bool."""
    p = per.clamp(min=1)
    e0 = _absmax(_end_points(window, lag) - w)
    ok = (per >= 2) & (e0 <= tight)
    rest = ((per >= 2) & ~ok).nonzero().squeeze(1)  # few: the spread only for them
    if rest.numel():
        sub = orbit.index_select(2, rest)
        p_r = p.index_select(0, rest)
        j = torch.arange(1, sub.shape[0], device=w.device)[:, None]
        gap = _absmax(sub[1:] - sub[0])  # (L, r)
        spread = torch.where(j < p_r, gap, float("inf")).amin(dim=0)
        w_r, e0_r = w.index_select(1, rest), e0.index_select(0, rest)
        lag_r = lag.index_select(0, rest)
        e1 = _absmax(_end_points(window.index_select(2, rest), lag_r - p_r) - w_r)
        e_first = _absmax(window[0].index_select(1, rest) - w_r)
        near = e0_r <= NEAR_FRACTION * spread
        ok[rest] = near & (e0_r <= torch.maximum(e1, e_first))
    return ok


def _refined(f: Any, w: torch.Tensor, orbit: torch.Tensor, per: torch.Tensor) -> torch.Tensor:
    """The orbit ``(L + 1, D, n)`` with rows of a cycle (``per > 0``) replaced by the orbit of
    their point after the last, small Newton step ``w (D, n)``: the cycle to about the square
    of that step (for the points a solve reports; sweeps keep only the period)."""
    sel = (per > 0).nonzero().squeeze(1)
    if not sel.numel():
        return orbit
    out = orbit.clone()
    big_l = int(per.index_select(0, sel).max())
    out[: big_l + 1, :, sel] = _orbit(f.take(sel), w.index_select(1, sel), big_l)
    return out


def _cycle_points(orbit: torch.Tensor, per: torch.Tensor) -> torch.Tensor:
    """The points ``W[1], ..., W[p-1], W[0]`` of each row (oldest first, ending at the point
    the orbit is at): ``(n, L, D)``, NaN after ``p`` and where ``p`` is 0."""
    big_l = orbit.shape[0] - 1
    jj = torch.arange(big_l, device=orbit.device)[None]  # (1, L)
    src = torch.where(jj + 1 < per[:, None], jj + 1, 0)  # (n, L)
    pts = orbit.permute(2, 0, 1).take_along_dim(src[..., None], dim=1)  # (n, L, D)
    return pts.masked_fill((jj >= per[:, None])[..., None], float("nan"))
