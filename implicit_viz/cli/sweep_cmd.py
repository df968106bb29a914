"""``implicit-viz sweep``: basins and outcomes over a 1-D or 2-D parameter grid."""

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
    memory_mb,
    positive_float,
    print_json,
    tolerance,
)
from implicit_viz.cli.solve_cmd import solver_option_table
from implicit_viz.core.solver_settings import SolverSection
from implicit_viz.core.spec import MAX_ITER_LIMIT


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep",
        help="solve every cell of a parameter grid: basins, outcomes, periods",
        description="Solve every cell of a 1-D or 2-D grid over params, tensor elements or "
        "start components, and report where the solver converges (to which fixed point), "
        "diverges, cycles or wanders. Axes: TARGET=LO:HI:N, e.g. a=0:3:512, 'x[0]=-2:2:512', "
        "'z0[1]=-1.5:1.5:400'.",
    )
    add_spec_argument(p)
    p.add_argument("--x", required=True, metavar="AXIS", help="horizontal axis TARGET=LO:HI:N")
    p.add_argument("--y", metavar="AXIS", help="vertical axis TARGET=LO:HI:N (omit for 1-D)")
    p.add_argument("--solver", default=None, help="one solver (default fixed_point)")
    p.add_argument("--tol", type=tolerance, help="absolute residual tolerance per cell")
    p.add_argument("--max-iter", type=int_in(1, MAX_ITER_LIMIT), help="step budget per cell")
    p.add_argument(
        "--opt", action="append", default=[], metavar="KEY=VALUE", help="solver option, e.g. m=3"
    )
    add_compute_arguments(p)
    p.set_defaults(dtype="float32")
    p.add_argument(
        "--orbit",
        type=int_in(0),
        default=0,
        metavar="M",
        help="1-D sweeps: record M iterates per cell after the solve (orbit diagram)",
    )
    p.add_argument("--basin-tol", type=positive_float, help="fixed points closer than this are one")
    p.add_argument(
        "--memory-mb",
        type=memory_mb,
        default=None,
        help="working memory for one tile, MB (default 512, at most the memory budget)",
    )
    p.add_argument("--tile", type=int_in(1), help="cells per tile (overrides --memory-mb)")
    p.add_argument(
        "--threads",
        type=int_in(1, 256),
        default=None,
        metavar="N",
        help="CPU workers, each running torch on one thread, solving a tile's chunks side by "
        "side (default: torch's thread count, at most the usable cores); results are the "
        "same for any N",
    )
    p.add_argument(
        "--no-lyapunov",
        action="store_true",
        help="skip the Lyapunov estimate of cells that run out of budget",
    )
    p.add_argument(
        "--out", metavar="FILE", help="write every per-cell array to FILE (.npz or .json)"
    )
    p.add_argument("--png", metavar="FILE", help="write the picture to FILE (.png)")
    p.add_argument("--json", action="store_true", help="print a JSON summary to stdout")
    p.set_defaults(run=run)


def parse_axis(text: str, option: str):
    """``--x``/``--y`` as an :class:`~implicit_viz.core.sweep.Axis`; a malformed one is an error
    naming the option."""
    from implicit_viz.core.errors import SweepError
    from implicit_viz.core.sweep import Axis

    try:
        return Axis.parse(text)
    except SweepError as exc:
        raise CLIError(f"{option}: {exc}") from None


def build_request(args: argparse.Namespace):
    from implicit_viz.core.limits import memory_budget
    from implicit_viz.core.sweep import SweepRequest, sweep_options

    x = parse_axis(args.x, "--x")
    y = parse_axis(args.y, "--y") if args.y else None
    check_device(args.device)
    spec = load_spec_with_overrides(args.spec, args.assignments)
    solver = args.solver or "fixed_point"
    per_solver = solver_option_table([solver], SolverSection.of(spec), args.opt)[solver]
    overrides: dict[str, Any] = {"tol": args.tol, "max_iter": args.max_iter}
    if args.no_lyapunov:
        overrides["lyapunov_steps"] = 0
    options = sweep_options(spec, dtype=args.dtype, **overrides)
    budget = min(512 * 1024**2, memory_budget())
    if args.memory_mb is not None:
        budget = int(args.memory_mb * 1024**2)
    return SweepRequest(
        spec=spec,
        x=x,
        y=y,
        solver=solver,
        solver_options=per_solver,
        options=options,
        device=args.device,
        dtype=args.dtype,
        memory_budget=budget,
        tile_size=args.tile,
        basin_tol=args.basin_tol,
        orbit=args.orbit,
        threads=args.threads,
    )


def run(args: argparse.Namespace) -> int:
    from implicit_viz.core.export import SWEEP_SUFFIXES, check_sweep_json, write_sweep
    from implicit_viz.core.sweep import iter_sweep, validate

    if args.out is not None:
        check_writable(args.out, SWEEP_SUFFIXES, "--out")
    if args.png is not None:
        check_writable(args.png, (".png",), "--png")
    request = build_request(args)
    validate(request)  # every impossible request fails here, before any work
    if args.out and args.out.lower().endswith(".json"):
        check_sweep_json(request, args.out)  # a JSON too large to write: say so before solving

    result = None
    interrupted = False
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    err = Console(stderr=True)
    with Progress(
        TextColumn("[bold]sweep[/] {task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,}/{task.total:,} cells"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    ) as bar:
        task = bar.add_task(request.spec.name, total=request.cells)
        try:
            for result, prog in iter_sweep(request):  # noqa: B007 (result is kept)
                bar.update(task, completed=prog.done)
        except KeyboardInterrupt:
            interrupted = True
    if result is None:  # interrupted before the first tile finished
        raise CLIError("interrupted before any cell was solved", exit_code=130)
    if interrupted:
        result.cancelled = True
        print("implicit-viz: interrupted; writing the cells solved so far", file=sys.stderr)

    written = []
    if args.out:
        written.append(str(write_sweep(args.out, result)))
    if args.png:
        from implicit_viz.gui.sweep_image import save_sweep_png

        written.append(str(save_sweep_png(result, args.png)))

    summary = result.summary()
    if args.json:
        print_json(
            {
                "spec_name": request.spec.name,
                "x": str(request.x),
                "y": str(request.y) if request.y else None,
                "solver": request.solver,
                "solver_options": dict(request.solver_options),
                "options": request.options.to_dict(),
                "device": request.device,
                "dtype": request.dtype,
                "files": written,
                **summary,
            }
        )
    else:
        _print_summary(request, result, summary, written)
    return 130 if interrupted else 0


def _print_summary(request, result, summary, written) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console.width = max(console.width, 110)
    ny, nx = request.shape
    rate = summary["cell_iterations_per_s"] or 0.0
    console.print(
        f"[bold]{request.spec.name}[/]: {nx} x {ny} cells ({request.x}"
        + (f", {request.y}" if request.y else "")
        + f"), {request.solver} on {request.device}/{request.dtype}, "
        f"{summary['elapsed_s']:.2f} s, {rate / 1e6:.1f} M cell-iterations/s"
        + ("  [red](cancelled)[/]" if result.cancelled else "")
    )
    table = Table(title="outcomes", title_justify="left")
    table.add_column("outcome")
    table.add_column("cells", justify="right")
    table.add_column("share", justify="right")
    for name, count in summary["outcome_counts"].items():
        if count:
            table.add_row(name, f"{count:,}", f"{summary['outcome_fractions'][name]:.1%}")
    console.print(table)
    if summary["n_fixed_points"]:
        bt = Table(title="fixed points (basins)", title_justify="left")
        bt.add_column("basin", justify="right")
        bt.add_column("z*")
        bt.add_column("share", justify="right")
        for i, (pt, share) in enumerate(zip(summary["fixed_points"], summary["basin_fractions"])):
            zs = ", ".join(f"{v:.6g}" for v in pt[:6]) + (", ..." if len(pt) > 6 else "")
            bt.add_row(str(i), f"[{zs}]", f"{share:.1%}")
        console.print(bt)
    elif not result.basins_resolved:
        console.print("fixed points move continuously with the swept params: no basins assigned")
    if summary["period_histogram"]:
        hist = ", ".join(f"k={k}: {v:,}" for k, v in summary["period_histogram"].items())
        console.print(f"periods: {hist}")
    for path in written:
        console.print(f"wrote {path}")
