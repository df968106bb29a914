#!/usr/bin/env python
"""Single-solve latency of implicit_viz's five solvers against TorchDEQ and SciPy.

Every problem is solved by our five solvers, by TorchDEQ's solvers and by SciPy on the same map,
same start, same absolute tolerance on ``||f(z) - z||_2`` and the same step budget. Each method's
answer is first checked against a high-accuracy reference; then all methods are timed side by
side: a few warm-up calls each, then ``--reps`` rounds in which every method runs once (the
order rotates every round), and the median of each method's times is reported. Ratios are
``peer ms / our ms`` for the same-named solver, so ``> 1`` means we are faster.

Usage::

    .venv/bin/python benchmarks/bench_solve.py [--quick] [--device cpu|cuda] [--json OUT.json]

See ``benchmarks/README.md`` for what every column means.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from common import (
    BusyCore,
    clean,
    environment,
    json_default,
    loadavg,
    make_sync,
    time_round_robin,
)

from implicit_viz.core.compiled_map import FixedPointMap, compile_spec
from implicit_viz.core.diagnostics import add_diagnostics, jacobian_at, jacobian_info
from implicit_viz.core.driver import compare, solve
from implicit_viz.core.jacobians import jacobian_batch_last
from implicit_viz.core.solvers import get_solver
from implicit_viz.core.spec import load_spec, parse_spec
from implicit_viz.core.status import Status

try:  # optional peers: the benchmark still runs (with fewer rows) without them
    import torchdeq
    from torchdeq.solver import get_solver as deq_get_solver
except ImportError:  # pragma: no cover - the bench extra installs it
    torchdeq = None
try:
    import scipy
    import scipy.optimize as sopt
except ImportError:  # pragma: no cover
    scipy = None

OURS = ("fixed_point", "damped", "anderson", "newton", "broyden")
TARGET_MS = 20.0
DAMPED_BETA = 0.5  # our damped solver's default beta; TorchDEQ's peer uses tau = beta
ANDERSON_M = 5  # our anderson's default memory; TorchDEQ's and SciPy's peers use the same


# --------------------------------------------------------------------------------------------
# problems
# --------------------------------------------------------------------------------------------
@dataclass
class Problem:
    key: str
    title: str
    fmap: FixedPointMap
    tol: float
    max_iter: int
    z0: np.ndarray  # (D,)
    np_f: Callable[[np.ndarray], np.ndarray]  # (D,) -> (D,)
    np_jac: Callable[[np.ndarray], np.ndarray]  # (D,) -> (D, D), reference only
    torch_f: Callable[[torch.Tensor], torch.Tensor]  # batch-first (B, D) -> (B, D)
    z_ref: np.ndarray | None = None

    @property
    def dim(self) -> int:
        return self.fmap.dim


def _val(fmap: FixedPointMap, name: str) -> torch.Tensor:
    """A shared value without its trailing batch dimension, on the map's device."""
    return fmap.values[name][..., 0]


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float64)


def tanh_problem(dim: int, device: str) -> Problem:
    """z = tanh(W z + x), ||W||_2 = 0.9, built through the library (the PERFORMANCE.md peer)."""
    text = (
        f'dim={dim}\nf="tanh(W @ z + x)"\n[tensors]\n'
        f'W={{shape=[{dim},{dim}], init="normal", seed=0, spectral_norm=0.9}}\n'
        f'x={{shape=[{dim}], init="normal", seed=1}}\n'
    )
    fmap = compile_spec(parse_spec(text), device=device, dtype="float64")
    w_t, x_t = _val(fmap, "W"), _val(fmap, "x")
    wt_t = w_t.T
    w, x = _np(w_t), _np(x_t)

    def np_f(z):
        return np.tanh(w @ z + x)

    def np_jac(z):
        return (1 - np_f(z) ** 2)[:, None] * w

    def torch_f(z):
        return torch.tanh(z @ wt_t + x_t)

    return Problem(
        key=f"tanh{dim}",
        title=f"z = tanh(W z + x), dim {dim}, ||W||_2 = 0.9",
        fmap=fmap,
        tol=1e-6,
        max_iter=200,
        z0=np.asarray(fmap.spec.start, dtype=np.float64),
        np_f=np_f,
        np_jac=np_jac,
        torch_f=torch_f,
    )


def preset_problem(key: str, device: str) -> Problem:
    """A built-in preset, with NumPy/torch versions of its formula written out by hand."""
    spec = load_spec(key)
    fmap = compile_spec(spec, device=device, dtype="float64")
    tol = float(spec.solver.get("tol", 1e-6))
    max_iter = int(spec.solver.get("max_iter", 200))
    if key == "tanh_layer":  # f = tanh(a * (W @ z) + x)
        a = float(_val(fmap, "a"))
        w_t, x_t = _val(fmap, "W"), _val(fmap, "x")
        wt_t = w_t.T
        w, x = _np(w_t), _np(x_t)

        def np_f(z):
            return np.tanh(a * (w @ z) + x)

        def np_jac(z):
            return (1 - np_f(z) ** 2)[:, None] * (a * w)

        def torch_f(z):
            return torch.tanh(a * (z @ wt_t) + x_t)

    elif key == "deq_cell":  # f = tanh(s * (W @ z) + U @ x + b)
        s = float(_val(fmap, "s"))
        w_t, u_t, x_t, b_t = (_val(fmap, n) for n in ("W", "U", "x", "b"))
        wt_t = w_t.T
        w, u, x, b = (_np(t) for t in (w_t, u_t, x_t, b_t))

        def np_f(z):
            return np.tanh(s * (w @ z) + u @ x + b)

        def np_jac(z):
            return (1 - np_f(z) ** 2)[:, None] * (s * w)

        def torch_f(z):
            return torch.tanh(s * (z @ wt_t) + u_t @ x_t + b_t)

    else:  # pragma: no cover
        raise ValueError(f"no hand-written reference for preset {key}")
    return Problem(
        key=key,
        title=f"preset {key}: {spec.f}, dim {spec.dim}",
        fmap=fmap,
        tol=tol,
        max_iter=max_iter,
        z0=np.asarray(spec.start, dtype=np.float64),
        np_f=np_f,
        np_jac=np_jac,
        torch_f=torch_f,
    )


def check_maps(p: Problem) -> float:
    """Max difference between our compiled map and the hand-written NumPy/torch versions."""
    rng = np.random.default_rng(0)
    z = rng.standard_normal((3, p.dim))
    dev, dt = p.fmap.device, p.fmap.dtype
    ours = _np(p.fmap(torch.as_tensor(z, dtype=dt, device=dev)))
    tor = _np(p.torch_f(torch.as_tensor(z, dtype=dt, device=dev)))
    nump = np.stack([p.np_f(r) for r in z])
    return float(max(np.abs(ours - nump).max(), np.abs(tor - nump).max()))


def reference(p: Problem) -> tuple[np.ndarray, float]:
    """High-accuracy z*: SciPy hybr with the exact Jacobian, xtol 1e-14, then Newton polish."""
    d = p.dim
    eye = np.eye(d)
    sol = sopt.root(
        lambda z: p.np_f(z) - z,
        p.z0,
        jac=lambda z: p.np_jac(z) - eye,
        method="hybr",
        options={"xtol": 1e-14},
    )
    z = sol.x
    for _ in range(3):
        g = p.np_f(z) - z
        z = z - np.linalg.solve(p.np_jac(z) - eye, g)
    res = float(np.linalg.norm(p.np_f(z) - z))
    if not res < 1e-12:
        raise RuntimeError(f"{p.key}: reference solve failed (residual {res:.2e})")
    return z, res


# --------------------------------------------------------------------------------------------
# methods
# --------------------------------------------------------------------------------------------
@dataclass
class Outcome:
    z: np.ndarray  # (D,) or (k, D) for the all-five rows
    converged: bool  # the method's own verdict
    iterations: int | None
    f_evals: int | None
    note: str = ""


@dataclass
class Method:
    name: str
    family: str  # "ours", "ours-all5", "torchdeq", "scipy"
    vs: str | None  # our solver it is compared with (ratio peer / ours)
    # build(torch_f, np_f) -> zero-argument callable returning a raw result
    build: Callable[[Callable, Callable], Callable[[], Any]]
    parse: Callable[[Any], Outcome]
    # filled in
    outcome: Outcome | None = None
    times: list[float] = field(default_factory=list)
    error: str | None = None


def _status_ok(r) -> bool:
    return bool((r.status == int(Status.CONVERGED)).all())


def our_methods(p: Problem) -> list[Method]:
    tol, mi, fmap = p.tol, p.max_iter, p.fmap
    out = []
    for s in OURS:

        def build(_tf, _nf, s=s):
            return lambda: solve(fmap, s, tol=tol, max_iter=mi, diagnostics=False)

        def parse(r):
            jac = int(r.jac_evals.sum())
            return Outcome(
                z=_np(r.z[0]),
                converged=_status_ok(r),
                iterations=int(r.iterations[0]),
                f_evals=int(r.f_evals.sum()),
                note=f"+{jac} jacobians" if jac else "",
            )

        out.append(Method(f"ours {s}", "ours", s, build, parse))

    def parse_all(rs):
        return Outcome(
            z=np.stack([_np(r.z[0]) for r in rs]),
            converged=all(_status_ok(r) for r in rs),
            iterations=sum(int(r.iterations[0]) for r in rs),
            f_evals=sum(int(r.f_evals.sum()) for r in rs),
        )

    out.append(
        Method(
            "ours all five: compare (diagnostics)",
            "ours-all5",
            None,
            lambda _tf, _nf: lambda: compare(fmap, tol=tol, max_iter=mi),
            parse_all,
        )
    )
    out.append(
        Method(
            "ours all five: 5 x solve (no diag.)",
            "ours-all5",
            None,
            lambda _tf, _nf: (
                lambda: [solve(fmap, s, tol=tol, max_iter=mi, diagnostics=False) for s in OURS]
            ),
            parse_all,
        )
    )
    return out


def torchdeq_methods(p: Problem) -> list[Method]:
    if torchdeq is None:
        return []
    tol, mi = p.tol, p.max_iter
    dev, dt = p.fmap.device, p.fmap.dtype
    x0 = torch.as_tensor(p.z0, dtype=dt, device=dev).unsqueeze(0)  # (1, D)
    fp, anderson, broyden = (deq_get_solver(k) for k in ("fixed_point_iter", "anderson", "broyden"))
    # (label, our solver, solver function, kwargs, factor on the reported residual)
    # TorchDEQ's fixed_point_iter with tau measures ||z_{k+1} - z_k|| = tau ||f(z_k) - z_k||,
    # so the damped peer stops at tau * tol to mean the same residual.
    rows = [
        ("torchdeq fixed_point_iter", "fixed_point", fp, {"tau": 1.0}, 1.0),
        (
            f"torchdeq fixed_point_iter tau={DAMPED_BETA}",
            "damped",
            fp,
            {"tau": DAMPED_BETA},
            DAMPED_BETA,
        ),
        (f"torchdeq anderson m={ANDERSON_M}", "anderson", anderson, {"m": ANDERSON_M}, 1.0),
        ("torchdeq broyden", "broyden", broyden, {}, 1.0),
    ]
    out = []
    for label, vs, fn, kw, factor in rows:
        t = tol * factor

        def build(tf, _nf, fn=fn, kw=kw, t=t):
            return lambda: fn(tf, x0, max_iter=mi, tol=t, stop_mode="abs", **kw)

        def parse(raw, t=t):
            z, _, info = raw
            return Outcome(
                z=_np(z[0]),
                converged=bool((info["abs_lowest"] < t).all()),
                iterations=int(info["nstep"].max()),
                f_evals=None,
            )

        out.append(Method(label, "torchdeq", vs, build, parse))
    return out


def scipy_methods(p: Problem) -> list[Method]:
    if scipy is None:
        return []
    tol, mi, z0, d = p.tol, p.max_iter, p.z0, p.dim
    # scipy.optimize.fixed_point stops when every |p_i - p0_i| / |p0_i| < xtol. All problems
    # here are tanh maps (|z_i| < 1), so xtol = tol / sqrt(D) guarantees ||step||_2 < tol: a
    # rule at least as strict as ours (never looser).
    xtol_fp = tol / math.sqrt(d)

    def fp_build(method):
        def build(_tf, nf):
            def run():
                try:
                    return sopt.fixed_point(nf, z0, xtol=xtol_fp, maxiter=mi, method=method), True
                except RuntimeError:  # "Failed to converge after ... iterations"
                    return None, False

            return run

        return build

    def fp_parse(raw):
        z, ok = raw
        return Outcome(
            z=z if ok else np.full(d, np.nan), converged=ok, iterations=None, f_evals=None
        )

    def root_build(method, options):
        def build(_tf, nf):
            def g(z):
                return nf(z) - z

            return lambda: sopt.root(g, z0, method=method, options=options)

        return build

    def root_parse(res):
        return Outcome(
            z=res.x,
            converged=bool(res.success),
            iterations=getattr(res, "nit", None),
            f_evals=getattr(res, "nfev", None),
        )

    # broyden1 / anderson: |F|_2 <= fatol (2-norm via tol_norm), the same rule as ours.
    nonlin = {"fatol": tol, "tol_norm": np.linalg.norm, "maxiter": mi}
    return [
        Method(
            "scipy fixed_point iteration", "scipy", "fixed_point", fp_build("iteration"), fp_parse
        ),
        Method("scipy fixed_point del2", "scipy", "anderson", fp_build("del2"), fp_parse),
        Method(
            f"scipy root anderson M={ANDERSON_M}",
            "scipy",
            "anderson",
            root_build("anderson", {**nonlin, "jac_options": {"M": ANDERSON_M}}),
            root_parse,
        ),
        Method(
            "scipy root hybr (FD jac)",
            "scipy",
            "newton",
            root_build("hybr", {"xtol": tol}),
            root_parse,
        ),
        Method(
            "scipy root broyden1", "scipy", "broyden", root_build("broyden1", nonlin), root_parse
        ),
    ]


# --------------------------------------------------------------------------------------------
# timing
# --------------------------------------------------------------------------------------------


def med_ms(ts: list[float]) -> float:
    return statistics.median(ts) * 1e3 if ts else float("nan")


def p90_ms(ts: list[float]) -> float:
    if not ts:
        return float("nan")
    return float(np.percentile(ts, 90)) * 1e3


# --------------------------------------------------------------------------------------------
# one problem
# --------------------------------------------------------------------------------------------
def run_problem(p: Problem, device: str, reps: int, warmup: int) -> dict[str, Any]:
    sync = make_sync(device)
    map_diff = check_maps(p)
    if map_diff > 1e-12:
        raise RuntimeError(f"{p.key}: hand-written maps differ from ours by {map_diff:.2e}")
    p.z_ref, ref_res = reference(p)

    methods = our_methods(p) + torchdeq_methods(p)
    if device == "cpu":
        methods += scipy_methods(p)

    # how many Jacobians compare() evaluates for its diagnostics (the five should share one)
    import implicit_viz.core.diagnostics as diag_mod

    n_jac = [0]
    orig = diag_mod.jacobian_info

    def counted(*a, **k):
        n_jac[0] += 1
        return orig(*a, **k)

    diag_mod.jacobian_info = counted
    try:
        compare(p.fmap, tol=p.tol, max_iter=p.max_iter)
    finally:
        diag_mod.jacobian_info = orig

    # 1. correctness, untimed: each method once, with counting maps for the peers
    for m in methods:
        cnt = [0]

        def tf(z, cnt=cnt):
            cnt[0] += 1
            return p.torch_f(z)

        def nf(z, cnt=cnt):
            cnt[0] += 1
            return p.np_f(z)

        try:
            out = m.parse(m.build(tf, nf)())
        except Exception as exc:  # keep going: one broken peer must not hide the others
            m.error = f"{type(exc).__name__}: {exc}"
            continue
        if out.f_evals is None and m.family in ("torchdeq", "scipy"):
            out.f_evals = cnt[0]
        if m.family == "scipy" and out.iterations is None and "iteration" in m.name:
            out.iterations = cnt[0]
        m.outcome = out

    # 2. timing, side by side
    live = [m for m in methods if m.error is None]
    fns = [m.build(p.torch_f, p.np_f) for m in live]
    all_times = time_round_robin(fns, reps, sync, warmup=warmup)
    for m, ts in zip(live, all_times):
        m.times = ts

    ours_ms = {m.vs: med_ms(m.times) for m in methods if m.family == "ours"}
    rows = []
    for m in methods:
        row: dict[str, Any] = {"method": m.name, "family": m.family, "vs": m.vs}
        if m.error:
            row["error"] = m.error
            rows.append(row)
            continue
        o = m.outcome
        zs = np.atleast_2d(o.z)
        resid = max(float(np.linalg.norm(p.np_f(z) - z)) for z in zs)
        err = float(np.abs(zs - p.z_ref).max())
        ms = med_ms(m.times)
        row.update(
            converged=o.converged,
            residual=resid,
            residual_ok=bool(resid <= p.tol),
            err_vs_ref=err,
            iterations=o.iterations,
            f_evals=o.f_evals,
            note=o.note,
            median_ms=ms,
            p90_ms=p90_ms(m.times),
            ms_per_iter=(ms / o.iterations) if (o.iterations and m.family != "ours-all5") else None,
            ratio=(
                ms / ours_ms[m.vs]
                if (m.vs and m.family != "ours" and o.converged and resid <= p.tol)
                else None
            ),
            times_ms=[t * 1e3 for t in m.times],
        )
        rows.append(row)
    return {
        "key": p.key,
        "title": p.title,
        "dim": p.dim,
        "tol": p.tol,
        "max_iter": p.max_iter,
        "map_check_max_diff": map_diff,
        "reference_residual": ref_res,
        "compare_jacobians": n_jac[0],
        "rows": rows,
    }


def print_problem(res: dict[str, Any]) -> None:
    print()
    print(f"== {res['title']}  (tol {res['tol']:g} on ||f(z)-z||_2, max_iter {res['max_iter']})")
    print(
        f"   reference: hybr + exact Jacobian + Newton polish, residual "
        f"{res['reference_residual']:.1e}; hand-written maps match ours to "
        f"{res['map_check_max_diff']:.1e}; compare() evaluated "
        f"{res['compare_jacobians']} Jacobian(s) for its diagnostics"
    )
    hdr = (
        f"   {'method':<38} {'vs ours':<12} {'conv':>4} {'iters':>5} {'f-evals':>7} "
        f"{'median ms':>9} {'p90 ms':>8} {'ms/iter':>8} {'ratio':>6} {'residual':>9} "
        f"{'err vs ref':>10}"
    )
    print(hdr)
    print("   " + "-" * (len(hdr) - 3))
    for r in res["rows"]:
        if "error" in r:
            print(f"   {r['method']:<38} FAILED: {r['error']}")
            continue
        it = "-" if r["iterations"] is None else str(r["iterations"])
        fe = "-" if r["f_evals"] is None else str(r["f_evals"])
        mpi = "-" if r["ms_per_iter"] is None else f"{r['ms_per_iter']:.3f}"
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.2f}"
        conv = ("yes" if r["converged"] else "NO") + ("" if r["residual_ok"] else "!")
        vs = r["vs"] or ""
        print(
            f"   {r['method']:<38} {vs:<12} {conv:>4} {it:>5} {fe:>7} {r['median_ms']:>9.3f} "
            f"{r['p90_ms']:>8.3f} {mpi:>8} {ratio:>6} {r['residual']:>9.1e} "
            f"{r['err_vs_ref']:>10.1e}" + (f"  ({r['note']})" if r["note"] else "")
        )


# --------------------------------------------------------------------------------------------
# profile: where our time goes (dim 64)
# --------------------------------------------------------------------------------------------
class _OpCounter(torch.overrides.TorchFunctionMode):
    """Counts torch calls made from Python (functions, tensor methods, operators, indexing),
    not attribute reads such as ``.shape`` or ``.T`` (property getters, which launch nothing)."""

    def __init__(self) -> None:
        super().__init__()
        self.n = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") != "__get__":
            self.n += 1
        return func(*args, **(kwargs or {}))


def count_ops(fn: Callable[[], Any]) -> int:
    with _OpCounter() as c:
        fn()
    return c.n


def _micro(fn: Callable[[], Any], inner: int) -> Callable[[], None]:
    def run():
        for _ in range(inner):
            fn()

    return run


def profile(p: Problem, device: str, reps: int, warmup: int) -> dict[str, Any]:
    sync = make_sync(device)
    fmap, tol, mi = p.fmap, p.tol, p.max_iter
    out: dict[str, Any] = {"problem": p.key}

    # (a) per solver: total, in-loop time (SolveResult.time_s), marginal step cost from runs
    # forced to 16 and 48 steps (tol 1e-300: nothing converges early), op counts.
    lo, hi = 16, 48
    fns, labels = [], []
    for s in OURS:
        fns.append(lambda s=s: solve(fmap, s, tol=tol, max_iter=mi, diagnostics=False))
        fns.append(lambda s=s: solve(fmap, s, tol=1e-300, max_iter=lo, diagnostics=False))
        fns.append(lambda s=s: solve(fmap, s, tol=1e-300, max_iter=hi, diagnostics=False))
        labels += [(s, "full"), (s, "lo"), (s, "hi")]
    loop_s: dict[str, list[float]] = {s: [] for s in OURS}

    def wrap(fn, s, kind):
        if kind != "full":
            return fn

        def run():
            r = fn()
            loop_s[s].append(r.time_s)
            return r

        return run

    times = time_round_robin(
        [wrap(f, s, k) for f, (s, k) in zip(fns, labels)], reps, sync, warmup=warmup
    )
    per = {}
    for i, s in enumerate(OURS):
        t_full, t_lo, t_hi = (times[3 * i + j] for j in range(3))
        r = solve(fmap, s, tol=tol, max_iter=mi, diagnostics=False)
        iters = int(r.iterations[0])
        step = (med_ms(t_hi) - med_ms(t_lo)) / (hi - lo)
        ops_lo = count_ops(lambda s=s: solve(fmap, s, tol=1e-300, max_iter=lo, diagnostics=False))
        ops_hi = count_ops(lambda s=s: solve(fmap, s, tol=1e-300, max_iter=hi, diagnostics=False))
        ops_step = (ops_hi - ops_lo) / (hi - lo)
        total = med_ms(t_full)
        loop = statistics.median(loop_s[s][warmup:] or loop_s[s]) * 1e3
        per[s] = {
            "iterations": iters,
            "median_ms": total,
            "ms_per_iter": total / max(iters, 1),
            "in_loop_ms": loop,
            "outside_loop_ms": total - loop,
            "marginal_ms_per_step": step,
            "fixed_ms": med_ms(t_lo) - lo * step,
            "torch_ops_per_solve": count_ops(
                lambda s=s: solve(fmap, s, tol=tol, max_iter=mi, diagnostics=False)
            ),
            "torch_ops_per_step": ops_step,
            "torch_ops_fixed": ops_lo - lo * ops_step,
        }
    out["solvers"] = per

    # (b) building blocks, each timed over an inner loop and reported per call (us)
    dev, dt = fmap.device, fmap.dtype
    zb = torch.as_tensor(p.z_ref, dtype=dt, device=dev)
    z_last = zb.unsqueeze(1).contiguous()  # (D, 1)
    z_first = zb.unsqueeze(0)  # (1, D)
    bl = fmap.as_batch_last()
    zn = p.z_ref.copy()
    r_any = solve(fmap, "fixed_point", tol=tol, max_iter=mi, diagnostics=False)
    fp_solver = get_solver("fixed_point")
    jac = jacobian_at(fmap, z_first)
    r_diag = add_diagnostics(r_any, fmap, fp_solver)
    known = r_diag.extra.get("jacobian_info")
    blocks: list[tuple[str, Callable[[], Any], int]] = [
        ("our map f(z), batch-last (D,1)", lambda: fmap.batch_last(z_last), 200),
        ("plain torch map (1,D) (TorchDEQ's f)", lambda: p.torch_f(z_first), 200),
        ("numpy map (D,) (SciPy's f)", lambda: p.np_f(zn), 200),
        ("torch.linalg.vector_norm (D,1)", lambda: torch.linalg.vector_norm(z_last, dim=0), 200),
        (
            "norm + .item() (a synchronising read)",
            lambda: torch.linalg.vector_norm(z_last).item(),
            200,
        ),
        ("jacobian_batch_last (newton, per step)", lambda: jacobian_batch_last(bl, z_last), 20),
        ("jacobian_info (eigvals + 2-norm)", lambda: jacobian_info(fmap, z_first), 5),
        ("add_diagnostics (fresh Jacobian)", lambda: add_diagnostics(r_any, fmap, fp_solver), 5),
        (
            "add_diagnostics (reusing a known Jacobian)",
            lambda: add_diagnostics(r_any, fmap, fp_solver, known=known),
            20,
        ),
        ("  of which: jacobian_at", lambda: jacobian_at(fmap, z_first), 20),
        ("  of which: torch.linalg.eigvals", lambda: torch.linalg.eigvals(jac), 5),
        (
            "  of which: matrix_norm(ord=2) (an SVD)",
            lambda: torch.linalg.matrix_norm(jac, ord=2),
            5,
        ),
        (
            f"compile_spec (dim {p.dim} spec)",
            lambda: compile_spec(fmap.spec, device=device, dtype="float64"),
            3,
        ),
    ]
    bt = time_round_robin(
        [_micro(f, n) for _, f, n in blocks], reps, sync, warmup=max(1, warmup // 2)
    )
    out["blocks_us"] = {name: med_ms(ts) * 1e3 / n for (name, _, n), ts in zip(blocks, bt)}

    return out


def print_profile(prof: dict[str, Any]) -> None:
    print()
    print(f"== profile: our five solvers on {prof['problem']} (where the time goes)")
    print(
        "   marginal ms/step and ops/step: from runs forced to 16 and 48 steps (tol 1e-300); "
        "fixed: the rest of a 16-step run\n   (setup, result); a solve costs about fixed + "
        "iters x marginal. in-loop: SolveResult.time_s; outside: median - in-loop"
    )
    hdr = (
        f"   {'solver':<12} {'iters':>5} {'median ms':>9} {'ms/iter':>8} {'in-loop ms':>10} "
        f"{'outside':>8} {'marg ms/step':>12} {'fixed ms':>9} {'ops/solve':>9} "
        f"{'ops/step':>8} {'ops fixed':>9}"
    )
    print(hdr)
    print("   " + "-" * (len(hdr) - 3))
    for s, r in prof["solvers"].items():
        print(
            f"   {s:<12} {r['iterations']:>5} {r['median_ms']:>9.3f} {r['ms_per_iter']:>8.3f} "
            f"{r['in_loop_ms']:>10.3f} {r['outside_loop_ms']:>8.3f} "
            f"{r['marginal_ms_per_step']:>12.3f} {r['fixed_ms']:>9.3f} "
            f"{r['torch_ops_per_solve']:>9d} {r['torch_ops_per_step']:>8.1f} "
            f"{r['torch_ops_fixed']:>9.0f}"
        )
    print()
    print("   building blocks (median per call):")
    for name, us in prof["blocks_us"].items():
        print(f"     {name:<44} {us:>10.1f} us")


# --------------------------------------------------------------------------------------------
# threads x load: torch's default thread count against one thread, on a quiet machine and with
# one core kept busy by a child process (a noisy neighbour, as on a shared 2-core machine)
# --------------------------------------------------------------------------------------------
def thread_section(p: Problem, reps: int, warmup: int, contend: bool) -> dict[str, Any] | None:
    """Our five solves and the all-five pair at torch's default threads and at 1 thread."""
    default = torch.get_num_threads()
    if default <= 1:
        return None
    fmap, tol, mi = p.fmap, p.tol, p.max_iter
    calls: list[tuple[str, Callable[[], Any]]] = [
        (s, lambda s=s: solve(fmap, s, tol=tol, max_iter=mi, diagnostics=False)) for s in OURS
    ]
    calls.append(("compare (diagnostics)", lambda: compare(fmap, tol=tol, max_iter=mi)))
    calls.append(
        (
            "5 x solve (no diag.)",
            lambda: [solve(fmap, s, tol=tol, max_iter=mi, diagnostics=False) for s in OURS],
        )
    )
    fns = [f for _, f in calls] * 2
    # the thread count is set (untimed) before every call
    before = [lambda: torch.set_num_threads(default)] * len(calls) + [
        lambda: torch.set_num_threads(1)
    ] * len(calls)
    sync = make_sync("cpu")
    out: dict[str, Any] = {"default_threads": default, "rows": [c for c, _ in calls]}
    conditions = [("quiet", reps, warmup)]
    if contend:
        conditions.append(("one core busy", min(reps, 10), 1))
    try:
        for cond, n, w in conditions:
            if cond == "quiet":
                tt = time_round_robin(fns, n, sync, warmup=w, before=before)
            else:
                with BusyCore():
                    tt = time_round_robin(fns, n, sync, warmup=w, before=before)
            k = len(calls)
            out[cond] = {
                f"threads={default}": {
                    c: [med_ms(tt[i]), p90_ms(tt[i])] for i, c in enumerate(out["rows"])
                },
                "threads=1": {
                    c: [med_ms(tt[k + i]), p90_ms(tt[k + i])] for i, c in enumerate(out["rows"])
                },
                "reps": n,
            }
    finally:
        torch.set_num_threads(default)
    return out


def print_threads(th: dict[str, Any] | None, key: str) -> None:
    if not th:
        return
    d = th["default_threads"]
    conds = [c for c in ("quiet", "one core busy") if c in th]
    print()
    print(
        f"== torch threads x machine load: ours on {key}, median (p90) ms, interleaved; "
        f"'one core busy' = a child process spinning on one core"
    )
    cols = [(c, t) for c in conds for t in (f"threads={d}", "threads=1")]
    hdr = f"   {'':<24}" + "".join(f"{(c + ', ' + t):>26}" for c, t in cols)
    print(hdr)
    for row in th["rows"]:
        cells = "".join(f"{th[c][t][row][0]:>15.2f} ({th[c][t][row][1]:>7.2f})" for c, t in cols)
        print(f"   {row:<24}{cells}")


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions (smoke test)")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--json", metavar="OUT.json", help="write every number to this file")
    ap.add_argument("--reps", type=int, help="timed rounds per problem (default 20, quick 5)")
    ap.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--no-profile", action="store_true", help="skip the profile sections")
    ap.add_argument(
        "--no-contend",
        action="store_true",
        help="skip the timings with one core kept busy by a child process",
    )
    args = ap.parse_args(argv)

    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: no CUDA device available", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    reps = args.reps or (5 if args.quick else 20)
    warmup = 2 if args.quick else 3
    t_start = time.perf_counter()

    env = environment(args.device, scipy, torchdeq)
    print(
        f"implicit_viz solve benchmark: torch {env['torch']} ({env['torch_threads']} threads), "
        f"numpy {env['numpy']}, scipy {env['scipy']}, torchdeq {env['torchdeq']}; "
        f"device {args.device}{' (' + env['gpu'] + ')' if args.device == 'cuda' else ''}; "
        f"float64, batch 1; median of {reps} round-robin reps after {warmup} warm-ups; "
        f"load average {env['loadavg_start']}"
    )
    if env.get("git_head"):
        changes = env["library_changes"]
        print(
            f"library: commit {env['git_head']}"
            + (f" plus uncommitted changes in {', '.join(changes)}" if changes else " (clean)")
        )
    print(
        "ratio = peer median / our median for the solver in 'vs ours' (> 1: we are faster); "
        "conv = the method's own verdict, '!' = residual above tol"
    )

    problems = [
        tanh_problem(64, args.device),
        tanh_problem(32, args.device),
        tanh_problem(8, args.device),
        preset_problem("tanh_layer", args.device),
        preset_problem("deq_cell", args.device),
    ]
    results = []
    for p in problems:
        res = run_problem(p, args.device, reps, warmup)
        print_problem(res)
        results.append(res)

    prof = None
    if not args.no_profile:
        prof = profile(problems[0], args.device, reps, warmup)
        print_profile(prof)
        if args.device == "cpu":
            prof["threads"] = thread_section(problems[0], reps, warmup, not args.no_contend)
            print_threads(prof["threads"], problems[0].key)

    # headline
    def all5(res, which):
        for r in res["rows"]:
            if r["family"] == "ours-all5" and r["method"].endswith(which) and "error" not in r:
                return r["median_ms"]
        return float("nan")

    head = results[0]
    x = all5(head, "(diagnostics)")
    y = all5(head, "(no diag.)")
    verdict = "PASS" if x < TARGET_MS else "FAIL"
    worst = max(results, key=lambda r: all5(r, "(diagnostics)"))
    print()
    print(
        f"all five solvers, dim 64, float64: {x:.2f} ms (compare with diagnostics), "
        f"{y:.2f} ms (solves only); target < {TARGET_MS:g} ms: {verdict}"
        f" (solves only: {'PASS' if y < TARGET_MS else 'FAIL'})"
    )
    print(
        f"worst problem with dim <= 64: {worst['key']} at {all5(worst, '(diagnostics)'):.2f} ms "
        f"(compare with diagnostics), {all5(worst, '(no diag.)'):.2f} ms (solves only)"
    )
    for res in results:
        peers = [r for r in res["rows"] if r.get("ratio") is not None]
        if peers:
            txt = ", ".join(f"{r['method'].split(' ', 1)[1]} {r['ratio']:.2f}" for r in peers)
            print(f"  ratios {res['key']}: {txt}")
    elapsed = time.perf_counter() - t_start
    env["loadavg_end"] = loadavg()
    print(f"(benchmark took {elapsed:.0f} s; load average at the end {env['loadavg_end']})")

    if args.json:
        doc = {
            "environment": env,
            "reps": reps,
            "warmup": warmup,
            "target_ms": TARGET_MS,
            "headline": {
                "problem": head["key"],
                "compare_with_diagnostics_ms": x,
                "solves_only_ms": y,
                "pass": x < TARGET_MS,
                "solves_only_pass": y < TARGET_MS,
            },
            "problems": results,
            "profile": prof,
            "elapsed_s": elapsed,
        }
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(clean(doc), fh, indent=1, default=json_default)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
