"""`implicit-viz presets` and the top-level command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

from implicit_viz.cli.main import main

PRESETS = Path(__file__).resolve().parents[2] / "assets" / "presets"


def test_presets_json_lists_every_file(capsys):
    assert main(["presets", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    keys = {p["key"] for p in doc}
    assert keys == {p.stem for p in PRESETS.glob("*.toml")}
    for p in doc:
        data = tomllib.loads(Path(p["path"]).read_text())
        assert p["dim"] == data["dim"] and p["name"] == data["name"]


def test_presets_table_names_the_required_presets(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    for key in (
        "tanh_layer",
        "gradient_descent",
        "sqrt2",
        "cosine",
        "logistic",
        "newton_cubic",
        "deq_cell",
    ):
        assert key in out


def test_presets_and_help_do_not_import_torch():
    code = (
        "import sys; from implicit_viz.cli.main import main; "
        "main(['presets', '--json']); "
        "assert 'torch' not in sys.modules, 'presets imported torch'"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_version_and_help():
    proc = subprocess.run(
        [sys.executable, "-m", "implicit_viz", "--help"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and "solve" in proc.stdout and "presets" in proc.stdout


def test_bare_command_opens_the_app_and_screenshots_it(tmp_path):
    """``implicit-viz --screenshot OUT.png [SPEC]``: the window after its first solve."""
    out = tmp_path / "window.png"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "implicit_viz",
            "logistic",
            "--screenshot",
            str(out),
            "--size",
            "1200x800",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(out)
    from PySide6.QtGui import QImage

    img = QImage(str(out))
    assert (img.width(), img.height()) == (1200, 800)


def test_screenshot_errors_are_one_line(tmp_path):
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    proc = subprocess.run(
        [sys.executable, "-m", "implicit_viz", "--screenshot", str(tmp_path / "no" / "x.png")],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 1
    assert "no such directory" in proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "implicit_viz", "--screenshot", str(tmp_path / "x.jpg")],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 2 and ".png" in proc.stderr
