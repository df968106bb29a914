#!/usr/bin/env python
"""Redraw time of the three live views (trajectory, phase portrait, residuals), offscreen.

Three snapshots of the ``deq_cell`` preset (dim 32, scale ``s`` = 0.6, 0.7, 0.8) are solved
once by three solvers (fixed_point, anderson, newton); then each view, shown at 720 x 520, gets
them in turn. One redraw is the wall time of ``view.show_snapshot(snapshot)`` plus the event
loop's paint (``QApplication.processEvents``). The views take turns, the first one rotating from
round to round (:func:`common.time_round_robin`), so a change of load on the shared machine hits
all alike; the garbage collector is off inside a round. The whole window's slider-to-paint
latency, solve included, is ``bench_app.py``'s.

Usage::

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/bench_redraw.py [--quick] [--json OUT]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
from common import gui_environment, json_default, time_round_robin

PRESET = "deq_cell"
SCALES = (0.6, 0.7, 0.8)
SOLVERS = ("fixed_point", "anderson", "newton")
SIZE = (720, 520)


def snapshots() -> list:
    """The solves the views draw (one per scale), computed once, before any timing."""
    from implicit_viz.core.live import LiveRequest, SolverSettings, run_live
    from implicit_viz.core.spec import load_spec

    spec = load_spec(PRESET)
    settings = SolverSettings(solvers=SOLVERS)
    return [run_live(LiveRequest(spec=spec, values={"s": s}, settings=settings)) for s in SCALES]


def measure(app, snaps: list, reps: int) -> list[dict]:
    """Per view: median, 90th percentile and max of ``reps`` redraws (ms)."""
    from implicit_viz.gui.phase_view import PhaseView
    from implicit_viz.gui.residual_view import ResidualView
    from implicit_viz.gui.trajectory_view import TrajectoryView

    views = [cls() for cls in (TrajectoryView, PhaseView, ResidualView)]
    for view in views:
        view.resize(*SIZE)
        view.show()
        view.show_snapshot(snaps[0])
    app.processEvents()

    def redraw(view, order):
        def run() -> None:
            view.show_snapshot(next(order))
            app.processEvents()

        return run

    fns = [redraw(view, itertools.cycle(snaps)) for view in views]
    times = time_round_robin(fns, reps, lambda: None, warmup=3)
    rows = []
    for view, ts in zip(views, times, strict=True):
        ms = np.array(ts) * 1e3
        rows.append(
            {
                "view": type(view).__name__,
                "median_ms": float(statistics.median(ms)),
                "p90_ms": float(np.percentile(ms, 90)),
                "max_ms": float(ms.max()),
                "n": len(ms),
            }
        )
    for view in views:
        view.close()
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="12 redraws per view instead of 60")
    ap.add_argument("--reps", type=int, default=None, help="redraws per view")
    ap.add_argument("--json", metavar="OUT", help="write the results as JSON")
    args = ap.parse_args()
    reps = args.reps or (12 if args.quick else 60)

    from implicit_viz.gui._refcount_guard import guard_singletons

    guard_singletons()  # before any Qt object (PySide6 6.12 on CPython 3.11)
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    snaps = snapshots()
    rows = measure(app, snaps, reps)

    env = gui_environment()
    dim = snaps[0].dim
    print(
        f"# redraw of the live views: show_snapshot + paint; {PRESET} (dim {dim}), "
        f"{len(SOLVERS)} solvers ({', '.join(SOLVERS)}), {SIZE[0]} x {SIZE[1]}; torch "
        f"{env['torch']}, PySide6 {env['pyside6']}, {env['cpu_count']} CPUs, "
        f"load {env['loadavg_start']}"
    )
    print(f"{'view':16s} {'median':>9s} {'p90':>9s} {'max':>9s} {'n':>4s}")
    for r in rows:
        print(
            f"{r['view']:16s} {r['median_ms']:7.1f}ms {r['p90_ms']:7.1f}ms "
            f"{r['max_ms']:7.1f}ms {r['n']:4d}"
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {"environment": env, "preset": PRESET, "solvers": SOLVERS, "redraw": rows},
                fh,
                indent=2,
                default=json_default,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
