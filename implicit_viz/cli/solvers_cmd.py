"""``implicit-viz solvers``: list the registered solvers with their options and ranges."""

from __future__ import annotations

import argparse

from implicit_viz.cli.common import print_json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "solvers",
        help="list the solvers with their options",
        description="List every registered solver: what it does, its options with type, "
        "range and default (set them with --opt NAME.OPTION=VALUE or a [solver.NAME] table), "
        "and whether it holds a D x D matrix or can be unrolled.",
    )
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from implicit_viz.core.solvers import available_solvers, solver_class

    rows = [solver_class(n).describe() for n in available_solvers()]
    if args.json:
        print_json(rows)
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="implicit-viz solvers", title_justify="left")
    table.add_column("solver", style="bold cyan", no_wrap=True)
    table.add_column("what it does")
    table.add_column("options (default, range)")
    for r in rows:
        opts = "\n".join(f"{o['name']}={_shown(o['default'])} {o['range']}" for o in r["options"])
        notes = [r["summary"]]
        if r["dense_matrix"]:
            notes.append("holds a D x D matrix per element")
        if not r["unrollable"]:
            notes.append("cannot be unrolled")
        table.add_row(r["name"], "; ".join(notes), opts or "-")
    Console().print(table)
    return 0


def _shown(value: object) -> str:
    """A default as the table shows it: ``true``/``false`` for a switch, else ``%g``."""
    return str(value).lower() if isinstance(value, bool) else f"{value:g}"
