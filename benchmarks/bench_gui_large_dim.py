#!/usr/bin/env python
"""GUI stalls at large dim: from a spec change to the drawn plots, for ``dim`` 8000..65536.

The script opens the :class:`~implicit_viz.gui.main_window.MainWindow` (offscreen) on the
``cosine`` preset, then puts a spec ``dim = N``, ``f = "0.5*z + 1"`` in the editor (solvers
fixed_point and anderson, float64) and waits until the views show its solve. A ``QTimer`` firing
every 5 ms on the GUI thread records when it ticks; the longest gap between ticks is the longest
the window could not respond (a stall). Reported per dim: the max gap, the wall time from the
spec change to the drawn snapshot, and how many trajectory curves the visible tab holds.
Target: max stall < 2 s at every dim (the tests use the same bound as a regression guard).

Usage::

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/bench_gui_large_dim.py \\
        [--dims 8000 32768 65536] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
from common import gui_environment, json_default

from implicit_viz.gui._refcount_guard import guard_singletons

guard_singletons()  # before any Qt call (see the module)

TARGET_S = 2.0
TICK_MS = 5
DIMS = (8000, 32768, 65536)


def spec_text(dim: int) -> str:
    return (
        f'name = "big{dim}"\ndim = {dim}\nf = "0.5*z + 1"\n\n'
        '[solver]\nsolvers = ["fixed_point", "anderson"]\n'
    )


def measure(app, window, text: str, timeout_s: float = 300.0) -> dict:
    """Put ``text`` in the editor with the 5 ms timer running; the stall until it is drawn."""
    from PySide6.QtCore import QEventLoop, QTimer

    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(TICK_MS)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    loop = QEventLoop()
    shown: list[float] = []
    name = text.split('"')[1]

    def on_shown(_rid: int) -> None:
        snap = window.snapshot
        if snap is not None and snap.spec_name == name and not shown:
            shown.append(time.perf_counter())
            QTimer.singleShot(100, loop.quit)  # the paint that follows counts too

    window.snapshotShown.connect(on_shown)
    timer.start()
    app.processEvents()
    t0 = time.perf_counter()
    ticks.append(t0)
    window.editor.set_text(text)
    window.editor.check_now()
    guard = QTimer()
    guard.setSingleShot(True)
    guard.timeout.connect(loop.quit)
    guard.start(int(timeout_s * 1000))
    loop.exec()
    ticks.append(time.perf_counter())
    timer.stop()
    window.snapshotShown.disconnect(on_shown)
    gaps = np.diff(np.array(ticks))
    solver = window.trajectory.solvers()[0] if window.trajectory.solvers() else None
    curves = len(window.trajectory.curves(solver)) if solver else 0
    return {
        "max_gap_s": float(gaps.max()),
        "wall_s": (shown[0] - t0) if shown else None,
        "curves": curves,
        "shown": bool(shown),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dims", type=int, nargs="+", default=list(DIMS))
    ap.add_argument("--json", metavar="OUT", help="write the results as JSON")
    args = ap.parse_args()

    from PySide6.QtWidgets import QApplication

    from implicit_viz.gui.main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    window = MainWindow(devices=["cpu"])
    window.resize(1500, 940)
    window.show()
    window.start("cosine")
    measure(app, window, spec_text(64))  # warm up: torch's first ops, pyqtgraph's first paint
    rows = {}
    for dim in args.dims:
        window.start("cosine")  # back to a small spec, so each dim is a change of spec
        measure(app, window, spec_text(8), timeout_s=30)
        rows[dim] = r = measure(app, window, spec_text(dim))
        print(f"dim {dim}: max stall {r['max_gap_s']:.2f} s, {r['curves']} curves", flush=True)
    window.close()

    env = gui_environment()
    print(
        f"# GUI stall from a spec change to drawn plots: f = 0.5*z + 1, fixed_point + anderson, "
        f"float64; PySide6 {env['pyside6']}, {env['cpu_count']} CPUs, load {env['loadavg_start']}"
    )
    print(f"{'dim':>7s} {'max stall':>10s} {'to drawn':>9s} {'curves':>7s}")
    ok = True
    for dim, r in rows.items():
        wall = f"{r['wall_s']:8.2f}s" if r["wall_s"] is not None else "  (none)"
        print(f"{dim:7d} {r['max_gap_s']:9.2f}s {wall} {r['curves']:7d}")
        ok &= r["shown"] and r["max_gap_s"] < TARGET_S
    print(f"target: max stall < {TARGET_S:.0f} s at every dim -> {'PASS' if ok else 'FAIL'}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {"environment": env, "rows": rows, "target_s": TARGET_S, "pass": ok},
                fh,
                indent=2,
                default=json_default,
            )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
