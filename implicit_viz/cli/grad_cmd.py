"""``implicit-viz grad``: the gradient lab. Unrolled versus implicit backprop against a reference.

Prints a table (method, steps, relative error and cosine to the float64 reference, time, memory
saved for backward) and short summaries of the curves over ``k``; ``--json`` prints everything as
one JSON document, ``--out`` writes the curves to ``.csv``, ``.npz`` or ``.json``.
"""

from __future__ import annotations

import argparse
import math
import re

from implicit_viz.cli.common import (
    CLIError,
    add_compute_arguments,
    add_spec_argument,
    check_device,
    check_writable,
    fraction,
    int_in,
    load_spec_with_overrides,
    print_json,
    tolerance,
)
from implicit_viz.cli.solve_cmd import solver_option_table
from implicit_viz.core.solver_settings import SolverSection
from implicit_viz.core.spec import MAX_ITER_LIMIT

OUT_SUFFIXES = (".csv", ".npz", ".json")
_SHOW_K = (1, 5, 10)
_KIND = {"forward": "fwd", "backward": "bwd"}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "grad",
        help="gradient lab: unrolled vs implicit backprop against a float64 reference",
        description="Differentiate a loss of the fixed point z* with respect to params and "
        "tensors of a spec by unrolled backprop (k = 1..K steps of the solver), the implicit "
        "function theorem (dense solve; fixed-point and Anderson backward iterations), the "
        "Jacobian-free one-step gradient and phantom gradients, and compare each with a "
        "float64 reference (z* to 1e-12, exact implicit gradient, checked by central finite "
        "differences). Flags an ill-posed problem (df/dz at z* not a contraction, or "
        "I - df/dz near singular).",
    )
    add_spec_argument(p)
    p.add_argument(
        "--wrt",
        action="append",
        required=True,
        metavar="NAME",
        help="a param or tensor to differentiate with respect to (e.g. a, W, x); repeatable or "
        "comma-separated",
    )
    p.add_argument(
        "--loss",
        default="sum",
        metavar="sum|l2|EXPR",
        help="sum: sum(z*); l2: 0.5 ||z* - target||^2 with the spec's tensor 'target' (zeros "
        "when the spec has none); or an expression over z and the spec's names giving one "
        "number, e.g. 'dot(z, z) + a' (default sum)",
    )
    p.add_argument(
        "--unroll-max",
        type=int_in(1),
        default=50,
        metavar="K",
        help="curves over k = 1..K unrolled and backward steps; the unrolled method's table "
        "row uses K steps (default 50)",
    )
    p.add_argument(
        "--solver",
        default="fixed_point",
        metavar="NAME",
        help="forward solver, the one unrolled: one that autograd can unroll ('implicit-viz "
        "solvers' lists them; newton's unroll treats its Jacobian as a constant) "
        "(default fixed_point)",
    )
    p.add_argument(
        "--opt",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="forward solver option, e.g. beta=0.7; repeatable",
    )
    p.add_argument(
        "--tol",
        type=tolerance,
        help="tolerance of the forward solve that gives z* to the implicit and phantom "
        "methods (default 1e-10 in float64, 1e-5 in float32); raise it to see an "
        "early-stopped forward pass",
    )
    p.add_argument(
        "--max-iter",
        type=int_in(1, MAX_ITER_LIMIT),
        default=1000,
        help="forward step budget (default 1000)",
    )
    p.add_argument(
        "--phantom-steps",
        type=int_in(1),
        default=5,
        metavar="K",
        help="phantom steps (default 5)",
    )
    p.add_argument(
        "--phantom-lam",
        type=fraction,
        default=0.5,
        metavar="LAM",
        help="phantom damping: z <- (1 - LAM) z + LAM f(z) (default 0.5)",
    )
    p.add_argument(
        "--anderson-m", type=int_in(1), default=5, metavar="M", help="backward Anderson memory"
    )
    add_compute_arguments(p)
    p.add_argument("--json", action="store_true", help="print one JSON document to stdout")
    p.add_argument(
        "--out",
        metavar="FILE",
        help="write the curves (and the method table) to FILE: .csv (long format, # metadata "
        "lines first), .npz (arrays + metadata JSON) or .json (as --json)",
    )
    p.set_defaults(run=run)


def build_request(args: argparse.Namespace):
    from implicit_viz.core.gradients import MAX_UNROLL, GradRequest
    from implicit_viz.core.solvers import solver_class

    for option, value in (
        ("--unroll-max", args.unroll_max),
        ("--phantom-steps", args.phantom_steps),
    ):
        if value > MAX_UNROLL:
            raise CLIError(f"argument {option}: needs an integer 1..{MAX_UNROLL:,}, got {value}")
    # commas split names, not the indices of an element such as W[0,1]
    wrt = [n.strip() for item in args.wrt for n in re.split(r",(?![^\[]*\])", item) if n.strip()]
    if not wrt:
        raise CLIError("argument --wrt: name a param or tensor, e.g. --wrt a")
    check_device(args.device)
    spec = load_spec_with_overrides(args.spec, args.assignments)
    solver_class(args.solver)  # unknown names fail here, listing the known ones
    options = solver_option_table([args.solver], SolverSection.of(spec), args.opt)[args.solver]
    return GradRequest(
        spec=spec,
        wrt=tuple(wrt),
        loss=args.loss,
        solver=args.solver,
        solver_options=options,
        unroll_max=args.unroll_max,
        tol=args.tol,
        max_iter=args.max_iter,
        device=args.device,
        dtype=args.dtype,
        phantom_steps=args.phantom_steps,
        phantom_lam=args.phantom_lam,
        backward_m=args.anderson_m,
    )


def run(args: argparse.Namespace) -> int:
    from implicit_viz.core.gradients import gradient_lab

    if args.out is not None:
        check_writable(args.out, OUT_SUFFIXES, "--out")
    request = build_request(args)

    import torch

    # The lab runs chains of small ops on one sample: extra threads only add latency.
    torch.set_num_threads(1)
    report = gradient_lab(request)
    if args.out:
        from implicit_viz.core.export import write_grad_report

        write_grad_report(args.out, report)
    if args.json:
        doc = report.to_dict()
        doc["spec_path"] = request.spec.path
        doc["out"] = args.out
        print_json(doc)
        return 0
    print_report(report, args.out)
    return 0


# ------------------------------------------------------------------------------------------------
# Files
# ------------------------------------------------------------------------------------------------


def _g(v: float | None, spec: str = ".3g") -> str:
    return "-" if v is None or not math.isfinite(v) else format(v, spec)


def _kb(n: float) -> str:
    return f"{n / 1024:.2f}"


def print_report(report, out: str | None = None) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(soft_wrap=False)
    if not console.is_terminal:
        console.width = max(console.width, 140)
    req, fwd, ref = report.request, report.forward, report.reference
    n = sum(w.size for w in report.wrt)
    names = ", ".join(w.name for w in report.wrt)
    console.print(
        f"[bold]{escape(req.spec.name)}[/] (dim {req.spec.dim}): d {escape(report.loss_text)} "
        f"/ d ({escape(names)}), {n} entr{'y' if n == 1 else 'ies'}; "
        f"{report.device}, {report.dtype}"
    )
    console.print(
        f"forward: {fwd.solver} {fwd.status} after {fwd.iterations} steps, residual "
        f"{_g(fwd.residual, '.2e')} (tol {fwd.tol:g}); "
        f"rho(df/dz*) = {_g(report.spectral_radius, '.4g')}, "
        f"sigma_min(I - df/dz*) = {_g(report.sigma_min, '.3g')}"
    )
    fd = ref.fd
    console.print(
        f"reference: float64, z* residual {_g(ref.residual, '.1e')} ({ref.solver}), exact "
        f"implicit gradient; central differences agree to {_g(fd.rel_error, '.1e')} "
        f"({fd.fd.size} check{'' if fd.fd.size == 1 else 's'})"
    )
    bad = report.ill_posed
    table = Table(title_justify="left")
    for col, justify in (
        ("method", "left"),
        ("steps", "right"),
        ("rel error", "right"),
        ("cosine", "right"),
        ("time ms", "right"),
        ("memory KB", "right"),
        ("how", "left"),
    ):
        table.add_column(col, justify=justify, no_wrap=True)
    for m in report.methods:
        implicit = m.method.startswith("implicit") or m.method in ("jacobian_free", "phantom")
        style = "dim" if bad and implicit else ""
        mark = " !" if bad and implicit else ""
        table.add_row(
            m.method + mark,
            str(m.steps),
            _g(m.rel_error, ".2e"),
            _g(m.cosine, ".6f"),
            f"{m.time_s * 1e3:.2f}",
            _kb(m.memory_bytes),
            escape(m.note),
            style=style,
        )
    console.print(table)
    console.print(curve_table(report))
    if bad:
        console.print(
            f"[bold red]warning: ill-posed:[/] {escape(report.ill_posed_message)}; "
            "rows marked ! are not to be trusted"
        )
    for w in report.warnings:
        console.print(f"[yellow]warning:[/] {escape(w)}")
    if out:
        console.print(f"curves written to {escape(out)}")


def curve_table(report):
    """The curves in brief: error at a few k, fitted decay rate against theory, memory."""
    from rich.table import Table

    k_max = report.request.unroll_max
    ks = list(dict.fromkeys(k for k in (*_SHOW_K, k_max) if k <= k_max))
    table = Table(
        title="curves over k steps (residual: fwd ||f(z_k) - z_k||, bwd ||J^T u_k + g - u_k||)",
        title_justify="left",
    )
    table.add_column("curve", no_wrap=True)
    for k in ks:
        table.add_column(f"err k={k}", justify="right", no_wrap=True)
    for col in (
        f"residual k={k_max}",
        "rate",
        "theory",
        "mem KB k=1",
        f"mem KB k={k_max}",
        "steps",
    ):
        table.add_column(col, justify="right", no_wrap=True)
    for c in report.curves:
        table.add_row(
            c.method,
            *(_g(float(c.rel_error[k - 1]), ".1e") for k in ks),
            f"{_g(float(c.residual[-1]), '.1e')} {_KIND[c.residual_kind]}",
            _g(c.rate, ".3f"),
            _g(c.predicted_rate, ".3f"),
            _kb(int(c.memory_bytes[0])),
            _kb(int(c.memory_bytes[-1])),
            str(c.steps_used),
        )
    return table
