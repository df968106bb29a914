"""``implicit-viz presets``: list the built-in presets (no torch needed)."""

from __future__ import annotations

import argparse

from implicit_viz.cli.common import print_json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "presets",
        help="list the built-in presets",
        description="List the built-in presets; a preset name works wherever a SPEC path does.",
    )
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from implicit_viz.core.presets import list_presets

    presets = list_presets()
    if args.json:
        print_json(
            [
                {
                    "key": p.key,
                    "name": p.name,
                    "description": p.description,
                    "dim": p.dim,
                    "path": str(p.path),
                }
                for p in presets
            ]
        )
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="implicit-viz presets", title_justify="left")
    table.add_column("preset", style="bold cyan", no_wrap=True)
    table.add_column("dim", justify="right")
    table.add_column("description")
    for p in presets:
        table.add_row(p.key, str(p.dim), p.description or p.name)
    Console().print(table)
    return 0
