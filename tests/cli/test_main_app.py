"""The bare command opens the app; subcommands, --help and --version do not."""

from __future__ import annotations

import pytest

from implicit_viz.cli.main import COMMAND_NAMES, build_parser, wants_app


def test_command_names_match_the_parser():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    assert set(sub.choices) == set(COMMAND_NAMES)


@pytest.mark.parametrize(
    "argv, app",
    [
        ([], True),
        (["logistic"], True),
        (["spec.toml", "--screenshot", "out.png"], True),
        (["--screenshot", "solve.png", "logistic"], True),
        (["--session", "s.ivsession"], True),
        (["-v"], True),
        (["solve", "logistic"], False),
        (["-v", "sweep", "tanh_layer"], False),
        (["--help"], False),
        (["--version"], False),
        (["presets"], False),
    ],
)
def test_wants_app(argv, app):
    assert wants_app(argv) is app
