"""``implicit-viz solve``: solve a spec with one or more solvers and compare them."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from implicit_viz.cli.common import (
    CLIError,
    add_compute_arguments,
    add_spec_argument,
    check_device,
    check_writable,
    int_in,
    load_spec_with_overrides,
    nonnegative_float,
    parse_value,
    print_json,
    tolerance,
)
from implicit_viz.core.solver_settings import SolverSection
from implicit_viz.core.spec import MAX_ITER_LIMIT


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "solve",
        help="solve z = f(x, z) with each named solver and compare them",
        description="Solve a spec's fixed point with each named solver (default: every "
        "registered one) and print a table, or one JSON document with --json.",
    )
    add_spec_argument(p)
    p.add_argument(
        "--solver",
        dest="solvers",
        action="append",
        default=[],
        metavar="NAME",
        help="a registered solver ('implicit-viz solvers' lists them); repeatable or "
        "comma-separated (default: the spec's [solver] solvers, else all)",
    )
    p.add_argument(
        "--tol", type=tolerance, help="absolute residual tolerance (default from spec, 1e-6)"
    )
    p.add_argument(
        "--rtol", type=nonnegative_float, help="relative tolerance on ||f(z)|| (default 0)"
    )
    p.add_argument(
        "--max-iter",
        type=int_in(1, MAX_ITER_LIMIT),
        help="step budget per solver (default from spec, 200)",
    )
    p.add_argument(
        "--opt",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="solver option, e.g. beta=0.7 (every solver that has it) or anderson.m=3; repeatable",
    )
    add_compute_arguments(p)
    p.add_argument("--json", action="store_true", help="print one JSON document to stdout")
    p.add_argument(
        "--trace",
        metavar="FILE",
        help="write z and the residual at every step, per solver, to FILE (.csv, .npz or .json)",
    )
    p.set_defaults(run=run)


def solver_names(args_solvers: list[str], section: SolverSection) -> list[str]:
    """The solvers ``--solver`` names, else the spec's list, else every registered one."""
    from implicit_viz.core.solvers import available_solvers, solver_class

    names = [n.strip() for item in args_solvers for n in item.split(",") if n.strip()]
    if not names:
        names = list(section.names(available_solvers()))
    for n in names:
        solver_class(n)  # raises SolverError listing the known names
    return list(dict.fromkeys(names))


def solver_option_table(
    names: list[str], section: SolverSection, opts: list[str]
) -> dict[str, dict[str, Any]]:
    """Per-solver options: the spec's ``[solver.NAME]`` tables, then ``--opt`` on top.

    Every table of the spec and its ``solvers`` list were checked when the section was read
    (:meth:`SolverSection.of`), not only those of the solvers run, so that a bad spec fails the
    same way whichever solver the command line picks.
    """
    from implicit_viz.core.solvers import solver_options

    table = section.options_for(names)
    for item in opts:
        key, sep, value = item.partition("=")
        if not sep:
            raise CLIError(f"--opt needs KEY=VALUE, got '{item}'")
        key = key.strip()
        target, _, opt = key.rpartition(".")
        val = parse_value(value.strip())
        if target:
            if target not in table:
                raise CLIError(f"--opt {key}: solver '{target}' is not among {', '.join(names)}")
            if opt not in solver_options(target):
                raise CLIError(
                    f"--opt {key}: {target} has no option '{opt}' "
                    f"(options: {', '.join(solver_options(target)) or 'none'})"
                )
            table[target][opt] = val
        else:
            hits = [n for n in names if opt in solver_options(n)]
            if not hits:
                raise CLIError(f"--opt {key}: none of {', '.join(names)} has an option '{opt}'")
            for n in hits:
                table[n][opt] = val
    return table


def run(args: argparse.Namespace) -> int:
    from implicit_viz.core.compiled_map import compile_spec
    from implicit_viz.core.driver import compare
    from implicit_viz.core.export import TRACE_SUFFIXES, write_trace
    from implicit_viz.core.result import SolveOptions

    if args.trace is not None:
        check_writable(args.trace, TRACE_SUFFIXES, "--trace")
    check_device(args.device)
    spec = load_spec_with_overrides(args.spec, args.assignments)
    section = SolverSection.of(spec)
    names = solver_names(args.solvers, section)
    per_solver = solver_option_table(names, section, args.opt)
    options = section.solve_options(
        SolveOptions(trace=bool(args.trace)), tol=args.tol, rtol=args.rtol, max_iter=args.max_iter
    )

    import torch

    # One solve of a small map is a chain of microsecond ops: a second thread only adds
    # wake-up latency, and on a busy machine it can stall for tens of milliseconds.
    torch.set_num_threads(1)
    fmap = compile_spec(spec, device=args.device, dtype=args.dtype)
    results = compare(fmap, names, options=options, solver_options=per_solver)

    if args.trace:
        write_trace(args.trace, spec, results)
    notes = diagnostic_notes(results)
    for note in notes:
        print(f"implicit-viz: note: {note}", file=sys.stderr)
    if args.json:
        from implicit_viz.core.export import metadata

        meta = metadata(spec, results)
        print_json(
            {
                "spec_name": spec.name,
                "spec_path": spec.path,
                "device": meta["device"],
                "dtype": meta["dtype"],
                "options": meta["options"],
                "status_codes": meta["status_codes"],
                "solver_descriptions": meta["solver_descriptions"],
                "trace": args.trace,
                "results": [r.element(0) for r in results],
                "notes": list(notes),
            }
        )
        return 0
    _print_table(spec, results, args)
    return 0


def diagnostic_notes(results) -> tuple[str, ...]:
    """Why diagnostics (rho, norms) were left out, once per reason, e.g. when the dense
    Jacobians of a large map would cost too much."""
    out: list[str] = []
    for r in results:
        note = r.extra.get("diagnostics_skipped")
        if note and note not in out:
            out.append(note)
    return tuple(out)


def _fmt(v: float | None, spec: str = ".3g") -> str:
    return "-" if v is None else format(v, spec)


def _print_table(spec, results, args) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(soft_wrap=False)
    if not console.is_terminal:
        console.width = max(console.width, 140)
    first = results[0]
    title = (
        f"{spec.name} (dim {spec.dim}) on {first.device}, {first.dtype}, "
        f"tol {first.options.tol:g}, max_iter {first.options.max_iter}"
    )
    table = Table(title=title, title_justify="left")
    for col, justify in (
        ("solver", "left"),
        ("outcome", "left"),
        ("iters", "right"),
        ("residual", "right"),
        ("f-evals", "right"),
        ("time ms", "right"),
        ("rate obs", "right"),
        ("rate pred", "right"),
        ("rho(df/dz)", "right"),
        ("z", "left"),
    ):
        table.add_column(col, justify=justify, no_wrap=col != "z")
    colors = {
        "converged": "green",
        "diverged": "red",
        "periodic": "yellow",
        "max_iter": "magenta",
        "chaotic": "bright_red",
        "converging": "cyan",
        "quasi_periodic": "blue",
    }
    for r in results:
        e = r.element(0)
        outcome = e["status"]
        if e["status"] == "periodic":
            outcome += f" (k={e['period']})"
        elif e["status"] == "converging" and e.get("steps_needed") is not None:
            outcome += f" (rate {e['rate']:.3g}, ~{e['steps_needed']:,.0f} more steps)"
        elif e["lyapunov"] is not None:
            err = e.get("lyapunov_err")
            outcome += f" (λ={e['lyapunov']:.2g}" + (f" ± {err:.1g})" if err is not None else ")")
        fev = str(e["f_evals"]) + (f" +{e['jac_evals']}J" if e["jac_evals"] else "")
        zs = [v for v in e["z"][:4]]
        ztxt = "[" + ", ".join(_fmt(v, ".6g") for v in zs) + (", ...]" if spec.dim > 4 else "]")
        table.add_row(
            e["solver"],
            f"[{colors.get(e['status'], 'white')}]{outcome}[/]",
            str(e["iterations"]),
            _fmt(e["residual"], ".2e"),
            fev,
            f"{e['time_s'] * 1e3:.2f}",
            _fmt(e["observed_rate"]),
            _fmt(e["predicted_rate"]),
            _fmt(e["spectral_radius"]),
            ztxt,
        )
    console.print(table)
    if args.trace:
        console.print(f"trace written to {args.trace}")
