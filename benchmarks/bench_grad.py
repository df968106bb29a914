#!/usr/bin/env python
"""Time and memory of every gradient method of the gradient lab, side by side.

Problem: ``z = tanh(W z + x)`` at dim 64 with ``||W||_2 = 0.9`` (seeded draws), loss
``sum(z*)``, gradient with respect to ``W`` and ``x`` (4160 entries), float64, K = 100.

Prints

1. one row per method (``implicit_viz.core.gradients.gradient_lab``): steps, best wall time of
   ``--reps`` runs, bytes autograd saved for backward, relative error and cosine against the
   float64 reference;
2. memory over k: the unrolled method at k = 1, 10, 50, 100 unrolled steps against the implicit
   methods at the same numbers of backward steps (from a run whose backward iterations are not
   stopped early, so every k is measured), plus the dense and Jacobian-free methods, which have no
   k; and the unrolled method's time at each k (one lab run per k);
3. a verdict: the unrolled memory grows with k, the implicit ones stay flat.

Usage::

    .venv/bin/python benchmarks/bench_grad.py [--quick] [--reps N] [--device cpu|cuda]
                                              [--json OUT.json]

See ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import sys
import time
from typing import Any

import torch

from implicit_viz.core.gradients import GradReport, GradRequest, gradient_lab
from implicit_viz.core.spec import spec_from_dict

DIM = 64
NORM = 0.9
K = 100
SHOW_K = (1, 10, 50, 100)


def problem_spec(dim: int = DIM, norm: float = NORM):
    return spec_from_dict(
        {
            "name": f"tanh layer dim {dim}",
            "dim": dim,
            "f": "tanh(W @ z + x)",
            "tensors": {
                "W": {"shape": [dim, dim], "init": "normal", "seed": 0, "spectral_norm": norm},
                "x": {"shape": [dim], "init": "normal", "seed": 1},
            },
        }
    )


def run_lab(spec, k: int, reps: int, device: str, backward_tol: float | None) -> GradReport:
    return gradient_lab(
        GradRequest(
            spec,
            ("W", "x"),
            unroll_max=k,
            device=device,
            time_repeats=reps,
            backward_tol=backward_tol,
        )
    )


def kb(n: float | None) -> str:
    return "-" if n is None else f"{n / 1024:9.1f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 timed runs, unrolled time at k=1, K")
    ap.add_argument("--reps", type=int, help="timed runs per method (default 10, quick 2)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--json", metavar="OUT", help="write every number to OUT (.json)")
    args = ap.parse_args(argv)
    reps = args.reps or (2 if args.quick else 10)
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    spec = problem_spec()
    load = os.getloadavg() if hasattr(os, "getloadavg") else (math.nan,) * 3
    print(
        f"gradient lab benchmark: tanh(W z + x), dim {DIM}, ||W||_2 = {NORM}, K = {K}, "
        f"d sum(z*) / d(W, x); {args.device}, float64, torch {torch.__version__}, "
        f"{args.threads} thread(s), best of {reps}; python {platform.python_version()}, "
        f"load {load[0]:.2f}"
    )

    main_report = run_lab(spec, K, reps, args.device, None)
    flat = run_lab(spec, K, 1, args.device, 0.0)  # backward iterations run all K steps
    print(
        f"forward: {main_report.forward.solver} {main_report.forward.status} in "
        f"{main_report.forward.iterations} steps ({main_report.forward.time_s * 1e3:.2f} ms), "
        f"residual {main_report.forward.residual:.1e}; rho(df/dz*) = "
        f"{main_report.spectral_radius:.3f}; reference FD check {main_report.reference.fd.rel_error:.1e}"
    )
    cuda = args.device.startswith("cuda")
    head = f"{'method':22s} {'steps':>5s} {'time ms':>9s} {'saved KB':>9s}"
    head += f" {'CUDA KB':>9s}" if cuda else ""
    head += f" {'rel error':>10s} {'cosine':>9s}"
    print("\n" + head)
    print("-" * len(head))
    for m in main_report.methods:
        row = f"{m.method:22s} {m.steps:5d} {m.time_s * 1e3:9.3f} {kb(m.memory_bytes)}"
        row += f" {kb(m.device_peak_bytes)}" if cuda else ""
        row += f" {m.rel_error:10.2e} {m.cosine:9.6f}"
        print(row)
    print(
        "(time: the method's own work, best of the runs; implicit and phantom methods share the "
        "forward solve above. saved KB: bytes autograd saved for backward, beyond W and x)"
    )

    ks = (1, K) if args.quick else SHOW_K
    unrolled_time = {}
    for k in ks:
        rep = main_report if k == K else run_lab(spec, k, reps, args.device, None)
        unrolled_time[k] = rep.method("unrolled").time_s
    print(f"\nmemory over k (saved KB; backward iterations not stopped early: {K} steps each)")
    head = f"{'method':22s}" + "".join(f" {'k=' + str(k):>9s}" for k in SHOW_K) + "  steps run"
    print(head)
    print("-" * len(head))
    mem: dict[str, list[int]] = {}
    for c in flat.curves:
        mem[c.method] = [int(c.memory_bytes[k - 1]) for k in SHOW_K]
        print(f"{c.method:22s}" + "".join(f" {kb(v)}" for v in mem[c.method]) + f"  {c.steps_used}")
    for name in ("implicit_exact", "jacobian_free"):
        v = flat.method(name).memory_bytes
        print(f"{name:22s}" + "".join(f" {kb(v)}" for _ in SHOW_K) + "   (no k)")
    print(
        f"{'unrolled time ms':22s}"
        + "".join(
            f" {unrolled_time[k] * 1e3:9.3f}" if k in unrolled_time else f" {'-':>9s}"
            for k in SHOW_K
        )
    )

    un = mem["unrolled"]
    per_step = (un[-1] - un[0]) / (SHOW_K[-1] - SHOW_K[0])
    grows = un[-1] > 2 * un[0] and all(b > a for a, b in itertools.pairwise(un))
    flat_ok = all(len(set(mem[n])) == 1 for n in ("implicit_fixed_point", "implicit_anderson"))
    print(
        f"\nunrolled memory grows with k: {'PASS' if grows else 'FAIL'} "
        f"({per_step:.0f} bytes per step, {un[-1] / un[0]:.1f}x from k=1 to k={K}); "
        f"implicit memory flat over backward steps: {'PASS' if flat_ok else 'FAIL'}"
    )
    elapsed = time.perf_counter() - t_start
    print(f"total {elapsed:.1f} s")

    if args.json:
        doc: dict[str, Any] = {
            "problem": {"dim": DIM, "norm": NORM, "K": K, "device": args.device},
            "reps": reps,
            "threads": args.threads,
            "torch": torch.__version__,
            "report": main_report.to_dict(),
            "memory_over_k": {"k": list(SHOW_K), **mem},
            "unrolled_time_s": {str(k): v for k, v in unrolled_time.items()},
            "verdict": {"unrolled_grows": grows, "implicit_flat": flat_ok},
            "elapsed_s": elapsed,
        }
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=1, allow_nan=False)
    return 0 if grows and flat_ok else 1


if __name__ == "__main__":
    sys.exit(main())
