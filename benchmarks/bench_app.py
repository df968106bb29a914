#!/usr/bin/env python
"""Slider-to-redraw latency of the real app window (offscreen), and newest-value-wins drags.

For each problem the script opens :class:`implicit_viz.gui.main_window.MainWindow`, loads the
spec, runs three solvers (fixed_point, anderson, newton) and then moves the first param's slider
``--reps`` times through its range. One latency is the wall time from ``slider.setValue`` (what a
drag does) until the window shows the new solve and the event loop has painted it: the worker's
solve, the signal back to the GUI thread, the three views' redraw and the paint. The medians of
the parts are printed beside it (solve wall time in the worker, the views' ``show_snapshot``,
the paint). Target: median under 50 ms for dim <= 64 on this CPU.

Then a drag: ``--drag`` moves 5 ms apart, without waiting. It reports how many solves ran for
how many moves (stale values are dropped), and checks that the last shown solve is the last value.

Usage::

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/bench_app.py [--quick] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
from common import gui_environment, json_default

TARGET_MS = 50.0
SOLVERS = ("fixed_point", "anderson", "newton")


def deq_text(dim: int) -> str:
    """A random DEQ cell of dimension ``dim`` with ||W||_2 = 1 and a scale slider."""
    return f"""name = "DEQ cell, dim {dim}"
dim = {dim}
f = "tanh(s * (W @ z) + U @ x + b)"

[params]
s = {{ value = 0.8, min = 0.0, max = 0.95 }}

[tensors]
W = {{ shape = [{dim}, {dim}], init = "normal", seed = 0, spectral_norm = 1.0 }}
U = {{ shape = [{dim}, 16], init = "normal", seed = 1, scale = 0.25 }}
x = {{ shape = [16], init = "normal", seed = 2 }}
b = {{ shape = [{dim}], init = "normal", seed = 3, scale = 0.1 }}
"""


def wait_for(app, window, rid: int, timeout: float = 10.0) -> None:
    """Run the event loop until request ``rid`` (or a newer one) is shown."""
    from PySide6.QtCore import QEventLoop, QTimer

    if window._shown_id >= rid:
        return
    loop = QEventLoop()

    def check(shown: int) -> None:
        if shown >= rid:
            loop.quit()

    window.snapshotShown.connect(check)
    timer = QTimer()
    timer.setSingleShot(True)
    timer.timeout.connect(loop.quit)
    timer.start(int(timeout * 1000))
    loop.exec()
    window.snapshotShown.disconnect(check)
    if window._shown_id < rid:
        raise RuntimeError(f"request {rid} not shown within {timeout} s ({window.last_error})")


def measure(app, window, text: str | None, preset: str | None, reps: int) -> dict:
    from implicit_viz.core.live import SolverSettings

    window.solvers.set_settings(SolverSettings(solvers=SOLVERS))
    if preset:
        window.load_preset(preset)
    else:
        window.editor.set_text(text, undoable=True)
        window.editor.check_now()
    wait_for(app, window, window.worker.last_id)
    spec = window.spec
    window.solvers.set_settings(SolverSettings(solvers=SOLVERS, tol=1e-6, max_iter=300))
    wait_for(app, window, window.worker.last_id)
    name = spec.params[0].name
    p = spec.param(name)
    slider = window.params.slider(name)
    values = np.linspace(p.min + 0.05 * (p.max - p.min), p.value, reps)
    lat, parts = [], []
    for i, v in enumerate(values):
        if i < 3:  # warm-up moves, not timed
            slider.setValue(float(v))
            wait_for(app, window, window.worker.last_id)
            continue
        t0 = time.perf_counter()
        slider.setValue(float(v))
        rid = window.worker.last_id
        wait_for(app, window, rid)
        t1 = time.perf_counter()
        app.processEvents()  # the event loop paints what the views marked dirty
        t2 = time.perf_counter()
        lat.append(t2 - t0)
        snap = window.snapshot
        views = window.timings[-1][1]
        parts.append((snap.wall_s, views, t2 - t1))
    snap = window.snapshot
    solve_wall, views, paint = (statistics.median(p) * 1e3 for p in zip(*parts, strict=True))
    solve_ms = sum(t.time_s for t in snap.traces) * 1e3
    return {
        "problem": spec.name,
        "dim": spec.dim,
        "solvers": list(SOLVERS),
        "outcomes": [t.message for t in snap.traces],
        "median_ms": statistics.median(lat) * 1e3,
        "p90_ms": float(np.percentile(lat, 90)) * 1e3,
        "max_ms": max(lat) * 1e3,
        "last_solve_ms": solve_ms,
        "solve_wall_median_ms": solve_wall,
        "views_median_ms": views,
        "paint_median_ms": paint,
        "n": len(lat),
    }


def drag(app, window, moves: int) -> dict:
    from PySide6.QtCore import QEventLoop, QTimer

    spec = window.spec
    p = spec.params[0]
    slider = window.params.slider(p.name)
    shown_before = []
    window.snapshotShown.connect(shown_before.append)
    values = np.linspace(p.min, p.max, moves)
    first = window.worker.last_id + 1
    t0 = time.perf_counter()
    for v in values:
        slider.setValue(float(v))
        loop = QEventLoop()
        QTimer.singleShot(5, loop.quit)
        loop.exec()
    last = window.worker.last_id
    wait_for(app, window, last)
    total = time.perf_counter() - t0
    window.snapshotShown.disconnect(shown_before.append)
    shown = [r for r in shown_before if r >= first]
    return {
        "moves": moves,
        "requests": last - first + 1,
        "solves_shown": len(shown),
        "last_shown_is_last_move": window.snapshot.request_id == last
        and abs(window.snapshot.values[p.name] - float(values[-1])) < 1e-9,
        "drag_s": total,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="10 moves per problem instead of 40")
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--drag", type=int, default=60, help="moves in the drag test")
    ap.add_argument("--json", metavar="OUT", help="write the results as JSON")
    args = ap.parse_args()
    reps = args.reps or (10 if args.quick else 40)

    from implicit_viz.gui._refcount_guard import guard_singletons

    guard_singletons()  # before any Qt call (see the module)
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    from implicit_viz.gui.main_window import MainWindow

    window = MainWindow()
    window.resize(1500, 940)
    window.show()
    app.processEvents()

    rows = []
    for preset, text in (
        ("logistic", None),
        ("tanh_layer", None),
        ("deq_cell", None),
        (None, deq_text(64)),
    ):
        rows.append(measure(app, window, text, preset, reps + 3))
    dr = drag(app, window, args.drag)
    window.close()

    env = gui_environment()
    print(
        f"# app latency: slider move -> solve -> redraw -> repaint; torch {env['torch']}, "
        f"PySide6 {env['pyside6']}, {env['cpu_count']} CPUs, load {env['loadavg_start']}"
    )
    print(
        f"{'problem':24s} {'dim':>4s} {'median':>8s} {'p90':>8s} {'max':>8s} | {'solve':>7s} "
        f"{'views':>7s} {'paint':>7s}  outcomes"
    )
    ok = True
    for r in rows:
        ok &= r["median_ms"] < TARGET_MS
        print(
            f"{r['problem'][:24]:24s} {r['dim']:4d} {r['median_ms']:6.1f}ms {r['p90_ms']:6.1f}ms "
            f"{r['max_ms']:6.1f}ms | {r['solve_wall_median_ms']:5.1f}ms {r['views_median_ms']:5.1f}ms "
            f"{r['paint_median_ms']:5.1f}ms  {'; '.join(r['outcomes'])}"
        )
    worst = max(r["median_ms"] for r in rows)
    print(
        f"target: median < {TARGET_MS:.0f} ms for dim <= 64 with 3 solvers: worst median "
        f"{worst:.1f} ms = {worst / TARGET_MS:.2f} x target -> {'PASS' if ok else 'FAIL'}"
    )
    print(
        f"drag: {dr['moves']} moves 5 ms apart -> {dr['solves_shown']} solves shown in "
        f"{dr['drag_s']:.2f} s; last shown = last value: {dr['last_shown_is_last_move']}"
    )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {"environment": env, "latency": rows, "drag": dr, "pass": ok},
                fh,
                indent=2,
                default=json_default,
            )
    return 0 if ok and dr["last_shown_is_last_move"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
