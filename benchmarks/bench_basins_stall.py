#!/usr/bin/env python
"""Event-loop stalls of the basins view while a 512 x 512 sweep runs and is drawn live.

The script opens :class:`implicit_viz.gui.basins_view.BasinsView` in a ``QMainWindow``
(offscreen) and runs a sweep of ``tanh_layer`` over ``a`` in [0, 3] and ``x[0]`` in [-2, 2]
(512 x 512 cells, float32, fixed_point, tol 1e-6, max_iter 200) from the view, ``--reps`` times.
A ``QTimer`` firing every 5 ms on the GUI thread records when it ticks; the longest gap between
ticks is the longest the window could not respond (a stall). Reported per run: the max gap and
its 99th percentile, the partial pictures drawn, the wall time from Run to the final picture;
and the same sweep's wall time without the GUI (plain :func:`implicit_viz.core.sweep.sweep`,
median of ``--reps``). Target: max stall < 50 ms in every run.

Usage::

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/bench_basins_stall.py [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import replace

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
from common import gui_environment, json_default

from implicit_viz.gui._refcount_guard import guard_singletons
from implicit_viz.gui.state import Problem

guard_singletons()  # before any Qt call (see the module)

TARGET_MS = 50.0
TICK_MS = 5
RESOLUTION = 512


def make_view(app):
    from PySide6.QtWidgets import QMainWindow

    from implicit_viz.core.live import SolverSettings
    from implicit_viz.core.spec import load_spec
    from implicit_viz.gui.basins_view import BasinsView

    window = QMainWindow()
    view = BasinsView()
    window.setCentralWidget(view)
    window.resize(1300, 850)
    window.show()
    spec = load_spec("tanh_layer")
    settings = SolverSettings(
        solvers=("fixed_point",), tol=1e-6, max_iter=200, device="cpu", dtype="float32"
    )
    view.set_problem(Problem(spec, settings=settings))
    view.set_axes("a", "x[0]", x_range=(0.0, 3.0), y_range=(-2.0, 2.0))
    view.resolution.setValue(RESOLUTION)
    app.processEvents()
    return window, view


def run_once(app, view) -> dict:
    """One sweep from the view with the 5 ms timer running; gaps and counts."""
    from PySide6.QtCore import QEventLoop, QTimer

    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(TICK_MS)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    loop = QEventLoop()
    finished: list = []

    def done(result) -> None:
        finished.append((time.perf_counter(), result))
        QTimer.singleShot(50, loop.quit)  # let the last paint happen inside the measurement

    view.sweepFinished.connect(done)
    timer.start()
    app.processEvents()
    t0 = time.perf_counter()
    ticks.append(t0)
    sid = view.run()
    if sid is None:
        raise SystemExit(f"the sweep did not start: {view.last_error}")
    guard = QTimer()
    guard.setSingleShot(True)
    guard.timeout.connect(loop.quit)
    guard.start(120_000)
    loop.exec()
    timer.stop()
    view.sweepFinished.disconnect(done)
    if not finished:
        raise SystemExit("the sweep did not finish within 120 s")
    t_end, result = finished[0]
    gaps = np.diff(np.array(ticks)) * 1e3
    return {
        "max_gap_ms": float(gaps.max()),
        "p99_gap_ms": float(np.percentile(gaps, 99)),
        "median_gap_ms": float(np.median(gaps)),
        "ticks": len(ticks),
        "redraws": view.redraws,
        "wall_s": t_end - t0,
        "sweep_elapsed_s": result.elapsed_s,
        "tile_size": result.tile_size,
        "complete": bool(result.complete),
    }


def plain_wall(request, reps: int) -> float:
    from implicit_viz.core.sweep import sweep

    walls = []
    for _ in range(reps):
        t0 = time.perf_counter()
        sweep(request)
        walls.append(time.perf_counter() - t0)
    return statistics.median(walls)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3, help="sweeps with the GUI (and without)")
    ap.add_argument("--json", metavar="OUT", help="write the results as JSON")
    args = ap.parse_args()

    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    window, view = make_view(app)
    request = view.build_request()

    # warm up: compile the map, torch's first ops, pyqtgraph's first paint
    from implicit_viz.core.sweep import Axis, sweep

    sweep(replace(request, x=Axis("a", 0.0, 3.0, 32), y=Axis("x[0]", -2.0, 2.0, 32)))
    runs = [run_once(app, view) for _ in range(args.reps)]
    plain = plain_wall(request, args.reps)
    window.close()
    view.shutdown()

    env = gui_environment()
    print(
        f"# basins view stalls: tanh_layer a=0:3 x x[0]=-2:2, {RESOLUTION} x {RESOLUTION}, "
        f"float32 fixed_point tol 1e-6 max_iter 200; torch {env['torch']}, PySide6 "
        f"{env['pyside6']}, {env['cpu_count']} CPUs, load {env['loadavg_start']}"
    )
    print(
        f"{'run':>3s} {'max gap':>9s} {'p99 gap':>9s} {'median':>8s} {'redraws':>8s} "
        f"{'GUI wall':>9s} {'tile':>6s}"
    )
    for i, r in enumerate(runs):
        print(
            f"{i:3d} {r['max_gap_ms']:7.1f}ms {r['p99_gap_ms']:7.1f}ms {r['median_gap_ms']:6.1f}ms "
            f"{r['redraws']:8d} {r['wall_s']:8.2f}s {r['tile_size']:6d}"
        )
    worst = max(r["max_gap_ms"] for r in runs)
    gui_wall = statistics.median(r["wall_s"] for r in runs)
    ok = worst < TARGET_MS and all(r["complete"] for r in runs)
    print(f"sweep without GUI (plain sweep()): {plain:.2f} s; with GUI (median): {gui_wall:.2f} s")
    print(
        f"target: max stall < {TARGET_MS:.0f} ms: worst {worst:.1f} ms = "
        f"{worst / TARGET_MS:.2f} x target -> {'PASS' if ok else 'FAIL'}"
    )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {
                    "environment": env,
                    "runs": runs,
                    "plain_sweep_wall_s": plain,
                    "gui_wall_median_s": gui_wall,
                    "target_ms": TARGET_MS,
                    "pass": ok,
                },
                fh,
                indent=2,
                default=json_default,
            )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
