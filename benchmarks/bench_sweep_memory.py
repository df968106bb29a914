#!/usr/bin/env python
"""Peak memory (RSS) of large sweeps written to files, each run in its own child process.

The workload of issue 15 (item 9): the ``tanh_layer`` preset over ``a`` in [0, 3] and ``x[0]`` in
[-2, 2], run by the ``implicit-viz sweep`` command with ``--out`` (NPZ or JSON) and ``--png``.
Each case runs in a fresh Python process, which reports its own peak resident set size
(``resource.getrusage(RUSAGE_SELF).ru_maxrss`` at exit, the number ``/usr/bin/time -v`` prints as
"Maximum resident set size"). The verdict checks the target: an 8192 x 8192 sweep
written as NPZ stays under 2 GB.

Usage::

    .venv/bin/python benchmarks/bench_sweep_memory.py [--quick] [--max-iter N] [--json OUT.json]

``--quick`` runs 1024 x 1024 and 2048 x 2048 only (seconds); the default adds 4096 x 4096
(with and without files, and as JSON) and 8192 x 8192 to NPZ (minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import clean, environment

LIMIT_BYTES = 2 * 1000**3  # "under 2 GB"

CHILD = """
import resource, sys
from implicit_viz.cli.main import main
code = main(sys.argv[1:])
print("MAXRSS_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
sys.exit(code)
"""


def run_case(n: int, outputs: list[str], max_iter: int, folder: Path) -> dict[str, Any]:
    """One sweep of ``n x n`` cells in a child process; its peak RSS, time and file sizes."""
    args = ["sweep", "tanh_layer", "--x", f"a=0:3:{n}", "--y", f"x[0]=-2:2:{n}"]
    args += ["--max-iter", str(max_iter)]
    files = []
    for kind in outputs:
        path = folder / f"sweep_{n}.{kind}"
        args += ["--png" if kind == "png" else "--out", str(path)]
        files.append(path)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
    )
    wall = time.perf_counter() - t0
    rss_kb = None
    for line in proc.stderr.splitlines():
        if line.startswith("MAXRSS_KB"):
            rss_kb = int(line.split()[1])
    sizes = {p.suffix: p.stat().st_size for p in files if p.exists()}
    for p in files:
        p.unlink(missing_ok=True)
    errors = [ln for ln in proc.stderr.splitlines() if not ln.startswith("MAXRSS_KB")]
    return {
        "n": n,
        "cells": n * n,
        "outputs": outputs,
        "exit": proc.returncode,
        "peak_rss_bytes": rss_kb * 1024 if rss_kb is not None else None,
        "wall_s": wall,
        "file_bytes": sizes,
        "stderr": errors[-3:],
    }


def cases(quick: bool) -> list[tuple[int, list[str]]]:
    if quick:
        return [(1024, []), (1024, ["npz", "png"]), (2048, ["npz", "png"]), (1024, ["json"])]
    return [
        (4096, []),
        (4096, ["npz", "png"]),
        (4096, ["json"]),
        (8192, ["npz"]),
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small grids only (seconds)")
    ap.add_argument("--max-iter", type=int, default=50, help="step budget per cell (default 50)")
    ap.add_argument("--json", metavar="OUT", help="also write the results as JSON")
    args = ap.parse_args()

    env = environment("cpu")
    print(
        f"# sweep output memory, tanh_layer, max_iter {args.max_iter}; cpu_count {env['cpu_count']}"
    )
    print(f"{'grid':>11} {'outputs':>10} {'peak RSS':>10} {'wall':>8} {'files':>24} exit")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_sweep_memory_") as tmp:
        for n, outputs in cases(args.quick):
            r = run_case(n, outputs, args.max_iter, Path(tmp))
            rows.append(r)
            rss = r["peak_rss_bytes"]
            shown = f"{rss / 1e9:.2f} GB" if rss else "?"
            files = ", ".join(f"{k[1:]} {v / 1e6:.0f} MB" for k, v in r["file_bytes"].items())
            label = "+".join(outputs) or "(none)"
            print(
                f"{n:>5} x {n:<5}{label:>10} {shown:>10} {r['wall_s']:7.1f}s {files:>24} "
                f"{r['exit']}"
            )
            for line in r["stderr"]:
                if r["exit"]:
                    print(f"    {line}")
    big = [r for r in rows if r["n"] >= 8192 and r["outputs"] == ["npz"]]
    if big:
        rss = big[0]["peak_rss_bytes"] or float("inf")
        verdict = "PASS" if rss < LIMIT_BYTES and big[0]["exit"] == 0 else "FAIL"
        print(f"verdict: 8192 x 8192 to NPZ peaks at {rss / 1e9:.2f} GB (target < 2 GB): {verdict}")
    if args.json:
        Path(args.json).write_text(json.dumps(clean({"environment": env, "cases": rows}), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
