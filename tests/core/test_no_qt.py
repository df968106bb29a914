"""The compute backend never touches Qt: importing every module of implicit_viz.core in a fresh
interpreter loads no Qt binding, and no core source file imports one. The public names of the
package resolve to what their modules define."""

from __future__ import annotations

import ast
import importlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import implicit_viz.core as core

CORE_DIR = Path(core.__file__).resolve().parent
QT_PREFIXES = (
    "PySide6",
    "PySide2",
    "PyQt5",
    "PyQt6",
    "pyqtgraph",
    "shiboken6",
    "shiboken2",
    "qtpy",
    "superqt",
)


def run_fresh(code: str) -> dict:
    """Run ``code`` in a new interpreter; it prints one JSON object as its last line."""
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=str(CORE_DIR.parents[1]),
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def is_qt(name: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in QT_PREFIXES)


def core_modules() -> list[str]:
    return sorted(
        "implicit_viz.core"
        + ("." + ".".join(p.relative_to(CORE_DIR).with_suffix("").parts)).replace(".__init__", "")
        for p in CORE_DIR.rglob("*.py")
    )


def test_core_module_list_is_complete():
    mods = core_modules()
    for expected in ("spec", "expr", "compiled_map", "driver", "diagnostics", "solvers.newton"):
        assert f"implicit_viz.core.{expected}" in mods


def test_importing_all_of_core_and_solving_loads_no_qt():
    code = f"""
import importlib, json, sys
mods = {core_modules()!r}
for m in mods:
    importlib.import_module(m)
import implicit_viz.core as core
for name in core.__all__:
    getattr(core, name)
after_import = sorted(sys.modules)
results = core.compare(core.compile_spec(core.load_spec("tanh_layer")), trace=True)
print(json.dumps({{
    "after_import": after_import,
    "after_solve": sorted(sys.modules),
    "status": [int(r.status[0]) for r in results],
}}))
"""
    out = run_fresh(code)
    assert "implicit_viz.core.driver" in out["after_import"] and "torch" in out["after_import"]
    assert out["status"] == [1, 1, 1, 1, 1]  # it really ran
    assert [m for m in out["after_import"] if is_qt(m)] == []
    assert [m for m in out["after_solve"] if is_qt(m)] == []


def test_importing_core_is_lazy_about_torch():
    """The package docstring promises that importing it (and its torch-free parts: errors,
    status, presets, spec parsing) does not import torch."""
    code = """
import json, sys
import implicit_viz.core
from implicit_viz.core import SpecError, Status, list_presets, parse_spec
list_presets()
parse_spec('dim = 1\\nf = "cos(z)"\\n')
print(json.dumps({"torch": "torch" in sys.modules}))
"""
    assert run_fresh(code) == {"torch": False}


QT_IMPORT = re.compile(r"^\s*(from|import)\s+(" + "|".join(QT_PREFIXES) + r")\b", re.MULTILINE)


@pytest.mark.parametrize(
    "path", sorted(CORE_DIR.rglob("*.py")), ids=lambda p: str(p.relative_to(CORE_DIR))
)
def test_core_source_does_not_import_qt(path):
    text = path.read_text(encoding="utf-8")
    assert not QT_IMPORT.search(text)
    tree = ast.parse(text)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            assert not any(is_qt(a.name) for a in node.names), ast.dump(node)
        elif isinstance(node, ast.ImportFrom):
            assert not is_qt(node.module or ""), ast.dump(node)
        elif isinstance(node, ast.Call):
            # importlib.import_module("PySide6...") or __import__("PyQt5")
            for arg in node.args[:1]:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    assert not is_qt(arg.value), ast.dump(node)


def test_the_static_check_would_catch_an_import():
    assert QT_IMPORT.search("import os\nfrom PySide6.QtCore import Qt\n")
    assert QT_IMPORT.search("    import pyqtgraph as pg\n")
    assert not QT_IMPORT.search("import torch  # no PySide6 here\n")


@pytest.mark.parametrize("name", core.__all__)
def test_public_names_resolve_to_their_definitions(name):
    """``implicit_viz.core.<name>`` is the object its module defines (no submodule of the same
    name shadows it)."""
    from implicit_viz.core import _EXPORTS

    module = importlib.import_module(_EXPORTS[name])
    assert getattr(core, name) is getattr(module, name)
