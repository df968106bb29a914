#!/usr/bin/env python
"""Newton and Broyden, plain and globalized, on the Moré-Garbow-Hillstrom systems, side by side
with SciPy's ``root`` (``hybr``: MINPACK's dogleg; ``broyden1``: Armijo line search).

Every system ``F(x) = 0`` (ACM TOMS 7(1), 1981; the 14 systems of MINPACK's hybrd test, plus the
further sizes that test runs) starts from its standard ``x0``; ours solve ``z = z - F(z)``
through the driver in float64 with ``tol = 1e-10`` on ``||F||`` (Newton: 200 steps, Broyden:
1000; SciPy's broyden1: 1000 iterations, ``fatol = 1e-11``; hybr: ``xtol = 1e-13``). A cell
shows ``yes``/``no`` (a root reached: ``||F(x)|| <= 1e-8 max(1, ||F(x0)||)``, recomputed here),
the steps (our iterations; SciPy's iterations, or for hybr its map evaluations), and in
brackets the map evaluations (ours: every line-search trial and finite-difference column).

Usage::

    .venv/bin/python benchmarks/bench_mgh.py [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.core.mgh_problems import CLASSIC, EXTRA, Run, run_ours, run_scipy

METHODS = (
    ("hybr", lambda p: run_scipy(p, "hybr")),
    ("broyden1", lambda p: run_scipy(p, "broyden1")),
    ("newton plain", lambda p: run_ours(p, "newton", False, max_iter=200)),
    ("newton glob.", lambda p: run_ours(p, "newton", True, max_iter=200)),
    ("broyden plain", lambda p: run_ours(p, "broyden", False, max_iter=1000)),
    ("broyden glob.", lambda p: run_ours(p, "broyden", True, max_iter=1000)),
)


def cell(r: Run) -> str:
    return f"{'yes' if r.root else 'no':>3} {r.steps:>4} ({r.f_evals})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="also write the runs to this JSON file")
    args = ap.parse_args()
    rows = []
    head = f"{'problem':<28} {'n':>3}  " + "  ".join(f"{m:<16}" for m, _ in METHODS)
    print(head)
    print("-" * len(head))
    totals = {m: [0, 0] for m, _ in METHODS}  # roots among CLASSIC, among all
    for i, p in enumerate(CLASSIC + EXTRA):
        if i == len(CLASSIC):
            print("-" * len(head) + "\nfurther sizes of MINPACK's test")
        runs = {m: fn(p) for m, fn in METHODS}
        for m, r in runs.items():
            totals[m][1] += r.root
            totals[m][0] += r.root and i < len(CLASSIC)
        print(f"{p.name:<28} {p.n:>3}  " + "  ".join(f"{cell(runs[m]):<16}" for m, _ in METHODS))
        rows.append({"problem": p.name, "n": p.n, **{m: vars(r) for m, r in runs.items()}})
    print("-" * len(head))
    print(
        f"{'roots, 14 classic':<32} "
        + "  ".join(f"{totals[m][0]:>3}/{len(CLASSIC):<12}" for m, _ in METHODS)
    )
    n_all = len(CLASSIC) + len(EXTRA)
    print(f"{'roots, all':<32} " + "  ".join(f"{totals[m][1]:>3}/{n_all:<12}" for m, _ in METHODS))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
