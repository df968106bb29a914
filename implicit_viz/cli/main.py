"""The ``implicit-viz`` command: subcommands over the one backend in :mod:`implicit_viz.core`.

Torch is imported only by subcommands that compute, so ``implicit-viz --help`` and
``implicit-viz presets`` answer at once. Every error prints one line (``implicit-viz: error: ...``)
on stderr and exits non-zero; with ``--json`` stdout still holds exactly one JSON document.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence

from implicit_viz import __version__
from implicit_viz.cli import grad_cmd, presets_cmd, solve_cmd, solvers_cmd, sweep_cmd
from implicit_viz.cli.common import ArgumentParser, CLIError

EXIT_USAGE = 2
EXIT_ERROR = 1

_COMMANDS = (solve_cmd, sweep_cmd, grad_cmd, presets_cmd, solvers_cmd)
#: The subcommands' names (a test checks them against the parser).
COMMAND_NAMES = ("solve", "sweep", "grad", "presets", "solvers")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="implicit-viz",
        description="Explore implicit layers: fixed-point maps z = f(x, z), their solvers and "
        "outcomes. Without a subcommand, `implicit-viz [SPEC] [--session FILE] "
        "[--screenshot OUT.png]` opens the desktop app; the subcommands below run without a "
        "window, e.g. `implicit-viz solve tanh_layer`.",
    )
    parser.add_argument("--version", action="version", version=f"implicit-viz {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="log more to stderr (-vv for debug)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for cmd in _COMMANDS:
        cmd.add_parser(sub)
    return parser


#: Options of the app that take a value (``implicit-viz [SPEC] --screenshot OUT.png``).
_APP_VALUE_OPTIONS = ("--screenshot", "--session", "--size")


def wants_app(argv: Sequence[str]) -> bool:
    """True when ``argv`` names no subcommand: the bare command opens the window.

    ``implicit-viz``, ``implicit-viz logistic``, ``implicit-viz --screenshot out.png spec.toml``
    open the app; ``implicit-viz solve ...``, ``--help`` and ``--version`` do not.
    """
    names = set(COMMAND_NAMES)
    skip = False
    for tok in argv:
        if skip:
            skip = False
            continue
        if tok in _APP_VALUE_OPTIONS:
            skip = True
        elif tok in ("-h", "--help", "--version"):
            return False
        elif not tok.startswith("-"):
            return tok not in names
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if wants_app(argv):
        verbose = sum(t.count("v") for t in argv if t.startswith("-v") and set(t[1:]) == {"v"})
        _logging(verbose)
        from implicit_viz.gui.app import run_app

        return run_app([t for t in argv if not (t.startswith("-v") and set(t[1:]) == {"v"})])
    # until the arguments are read (argparse also takes an abbreviation such as --js)
    want_json = any(len(t) >= 4 and "--json".startswith(t) for t in argv)
    args: argparse.Namespace | None = None
    _terminate_like_ctrl_c()
    try:
        args = build_parser().parse_args(argv)
        if getattr(args, "run", None) is None:  # `implicit-viz -v`: no subcommand to run
            raise CLIError("name a subcommand: " + ", ".join(COMMAND_NAMES))
        _logging(args.verbose)
        want_json = bool(getattr(args, "json", False))
        return int(args.run(args) or 0)
    except Terminated:
        return _fail("terminated", 143, want_json, kind="")
    except KeyboardInterrupt:
        return _fail("interrupted", 130, want_json, kind="")
    except CLIError as exc:
        return _fail(str(exc), exc.exit_code, want_json)
    except Exception as exc:  # the backend's own errors, mapped to one clear line
        from implicit_viz.cli.common import describe_error, spec_file_place

        message, code = describe_error(exc)
        if message is None:
            raise
        place = spec_file_place(exc, getattr(args, "spec", None))
        return _fail(message, code, want_json, place)


def _logging(verbose: int) -> None:
    logging.basicConfig(
        level=[logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)],
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, ``timeout``), raised where the program is, like Ctrl-C: every write
    in progress removes its temporary file and the old file stays."""


def _terminate_like_ctrl_c() -> None:
    def handler(signum: int, frame: object) -> None:
        raise Terminated

    try:
        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (an embedding program): leave its handler
        pass


def _fail(
    message: str, code: int, want_json: bool, place: str | None = None, kind: str = "error: "
) -> int:
    """Print the error (``FILE:LINE:COL: `` first when it lies in the user's spec file); with
    ``--json`` also one JSON document on stdout, unless stdout itself is what failed."""
    first, *rest = message.splitlines() or [""]
    print(f"implicit-viz: {kind}{place + ': ' if place else ''}{first}", file=sys.stderr)
    for line in rest:
        print(line, file=sys.stderr)
    if want_json:
        doc: dict[str, object] = {"error": first, "exit_code": code}
        if place:
            doc["where"] = place
        try:
            print(json.dumps(doc), flush=True)
        except OSError:  # stdout is full or closed: stderr has said it; drop what is pending
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
    return code


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
