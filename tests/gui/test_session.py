"""Session files: a round trip keeps every field; corrupt files are refused with the problem named."""

from __future__ import annotations

import json
import os

import pytest

from implicit_viz.core.live import SolverSettings
from implicit_viz.gui.session import Session, SessionError, read_session, write_session
from implicit_viz.gui.state import BasinsSettings, GradientSettings


def sample() -> Session:
    return Session(
        spec_text='name = "x"\ndim = 1\nf = "cos(z)"  # as typed, ünïcode kept\n',
        spec_path="/somewhere/spec.toml",
        values={"a": 0.25, "b": -3.0},
        seeds={"W": 7},
        solver=SolverSettings(
            solvers=("damped", "newton"), tol=1e-9, max_iter=77, options={"damped": {"beta": 0.3}}
        ),
        view={"phase_components": [1, 0], "trajectory_tab": 1},
        basins=BasinsSettings(x="a", x_range=(0.0, 3.0), y="z0[0]", y_range=(-1, 1), resolution=64),
        gradients=GradientSettings(wrt=("W", "a"), loss="l2", k=17, auto=False),
    )


def test_round_trip(tmp_path):
    p = write_session(tmp_path / "s.ivsession", sample())
    assert read_session(p) == sample()
    doc = json.loads(p.read_text(encoding="utf-8"))
    assert doc["format"] == "implicit-viz-session" and doc["version"] == 2
    assert doc["basins"]["resolution"] == 64 and doc["gradients"]["wrt"] == ["W", "a"]
    assert not list(tmp_path.glob("*.tmp"))


def test_version_1_files_still_open(tmp_path):
    """A file written by the first version: beta and anderson_m beside the solver names, no
    Basins or Gradients entries."""
    doc = {
        "format": "implicit-viz-session",
        "version": 1,
        "spec_text": 'dim = 1\nf = "cos(z)"\n',
        "spec_path": None,
        "values": {},
        "seeds": {},
        "solver": {
            "solvers": ["damped", "anderson"],
            "tol": 1e-8,
            "max_iter": 300,
            "beta": 0.4,
            "anderson_m": 3,
            "device": "cpu",
            "dtype": "float64",
        },
        "view": {},
        "overrides": {"z0[0]": 0.5},
    }
    p = tmp_path / "old.ivsession"
    p.write_text(json.dumps(doc), encoding="utf-8")
    s = read_session(p)
    assert s.solver.options == {"damped": {"beta": 0.4}, "anderson": {"m": 3}}
    assert s.solver.label("damped") == "damped (β=0.4)" and s.solver.option("anderson", "m") == 3
    assert s.basins == BasinsSettings() and s.gradients == GradientSettings()
    assert s.overrides == {"z0[0]": 0.5}


@pytest.mark.parametrize(
    "entry, words",
    [
        ({"basins": {"resolution": 1}}, "basins.resolution"),
        ({"basins": {"x_range": [0, "a"]}}, "basins.x_range"),
        ({"gradients": {"k": 0}}, "gradients.k"),
        ({"gradients": {"wrt": "W"}}, "gradients.wrt"),
        ({"gradients": {"auto": 1}}, "gradients.auto"),
        ({"solver": {"options": {"damped": {"beta": 3.0}}}}, "damped.beta"),
        ({"solver": {"options": {"damped": {"beta": "x"}}}}, "solver.options.damped.beta"),
    ],
)
def test_bad_tab_and_option_entries_are_named(tmp_path, entry, words):
    doc = {**sample().to_dict(), **entry}
    p = tmp_path / "bad.ivsession"
    p.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(SessionError, match=words):
        read_session(p)


@pytest.mark.parametrize(
    "content, words",
    [
        (b"{not json", "invalid JSON at line 1"),
        (b"\xff\xfe\x00garbage", "not UTF-8"),
        (b"[1, 2]", "JSON object"),
        (b'{"format": "something-else"}', "format"),
        (b'{"format": "implicit-viz-session", "version": 99, "spec_text": ""}', "version 99"),
        (b'{"format": "implicit-viz-session", "version": 1}', "spec_text"),
        (
            b'{"format": "implicit-viz-session", "version": 1, "spec_text": "", "values": {"a": "x"}}',
            "values.a",
        ),
        (
            b'{"format": "implicit-viz-session", "version": 1, "spec_text": "", "seeds": {"W": 1.5}}',
            "seeds.W",
        ),
        (
            b'{"format": "implicit-viz-session", "version": 1, "spec_text": "",'
            b' "solver": {"solvers": ["zzz"]}}',
            "unknown solver",
        ),
        (
            b'{"format": "implicit-viz-session", "version": 1, "spec_text": "",'
            b' "solver": {"max_iter": "lots"}}',
            "max_iter",
        ),
    ],
)
def test_corrupt_files_name_the_problem(tmp_path, content, words):
    p = tmp_path / "bad.ivsession"
    p.write_bytes(content)
    with pytest.raises(SessionError) as info:
        read_session(p)
    assert words in str(info.value)
    assert str(p) in str(info.value)


def test_missing_and_unwritable(tmp_path):
    with pytest.raises(SessionError, match="no such session file"):
        read_session(tmp_path / "nope.ivsession")
    with pytest.raises(SessionError, match="cannot write session"):
        write_session(tmp_path / "no_dir" / "s.ivsession", sample())


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs file permissions")
def test_read_only_directory(tmp_path):
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o500)
    try:
        with pytest.raises(SessionError, match="cannot write session"):
            write_session(d / "s.ivsession", sample())
    finally:
        d.chmod(0o700)
