"""The ``implicit-viz`` command: subcommands over the one backend in :mod:`implicit_viz.core`.

Torch is imported only by subcommands that compute, so ``implicit-viz --help`` and
``implicit-viz presets`` answer at once. Every error prints one line (``implicit-viz: error: ...``)
on stderr and exits non-zero; with ``--json`` stdout still holds exactly one JSON document.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from implicit_viz import __version__
from implicit_viz.cli import grad_cmd, presets_cmd, solve_cmd, sweep_cmd
from implicit_viz.cli.common import CLIError

EXIT_USAGE = 2
EXIT_ERROR = 1

_COMMANDS = (solve_cmd, sweep_cmd, grad_cmd, presets_cmd)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="implicit-viz",
        description="Explore implicit layers: fixed-point maps z = f(x, z), their solvers and "
        "outcomes. Run a subcommand, e.g. `implicit-viz solve tanh_layer`.",
    )
    parser.add_argument("--version", action="version", version=f"implicit-viz {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="log more to stderr (-vv for debug)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for cmd in _COMMANDS:
        cmd.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=[logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)],
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.command is None:
        # Until the desktop app lands, the bare command solves the default preset.
        print(
            "implicit-viz: no command given; solving the default preset "
            "(see `implicit-viz --help` for all commands)",
            file=sys.stderr,
        )
        args = parser.parse_args(["solve", "tanh_layer"])
    want_json = bool(getattr(args, "json", False))
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("implicit-viz: interrupted", file=sys.stderr)
        return 130
    except CLIError as exc:
        return _fail(str(exc), exc.exit_code, want_json)
    except Exception as exc:  # the backend's own errors, mapped to one clear line
        from implicit_viz.cli.common import describe_error

        message, code = describe_error(exc)
        if message is None:
            raise
        return _fail(message, code, want_json)


def _fail(message: str, code: int, want_json: bool) -> int:
    first, *rest = message.splitlines() or [""]
    print(f"implicit-viz: error: {first}", file=sys.stderr)
    for line in rest:
        print(line, file=sys.stderr)
    if want_json:
        print(json.dumps({"error": first, "exit_code": code}))
    return code


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
