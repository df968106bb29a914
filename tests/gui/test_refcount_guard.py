"""The guard against PySide6 6.12's lost references to None/True on CPython 3.11: a long
session of redraws survives (without the guard it aborts with ``none_dealloc``); it starts
where a QApplication is made, never as a side effect of importing :mod:`implicit_viz.gui`."""

from __future__ import annotations

import subprocess
import sys

import pytest

from implicit_viz.gui._refcount_guard import LOW_WATER, guard_singletons

LOOP = """
import os, sys
os.environ["QT_QPA_PLATFORM"] = "offscreen"
import numpy as np
from implicit_viz.gui._refcount_guard import guard_singletons
guard_singletons()
from PySide6.QtWidgets import QApplication
app = QApplication([])
import pyqtgraph as pg
w = pg.PlotWidget(); c = w.plot(np.arange(10.0), np.arange(10.0)); w.show()
before = sys.getrefcount(None)
for _ in range(3000):
    c.setData(np.arange(10.0), np.random.rand(10))
    app.processEvents()
print(before - sys.getrefcount(None))
"""

#: Prints whether None's count has the guard's headroom after importing the GUI package, and
#: again after ensure_gui_app (which makes the QApplication of the CLI's --png).
STARTS = f"""
import os, sys
os.environ["QT_QPA_PLATFORM"] = "offscreen"
import implicit_viz.gui, implicit_viz.gui.main_window
print(sys.getrefcount(None) >= {LOW_WATER})
from implicit_viz.gui.sweep_image import ensure_gui_app
ensure_gui_app()
print(sys.getrefcount(None) >= {LOW_WATER})
"""


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )


def test_singletons_have_headroom():
    guard_singletons()
    if sys.version_info < (3, 12):
        for obj in (None, True, False):
            assert sys.getrefcount(obj) >= LOW_WATER
    assert guard_singletons() is False  # idempotent: nothing more to do


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="immortal singletons (PEP 683)")
def test_importing_the_gui_starts_nothing_and_making_the_app_starts_the_guard():
    out = run_python(STARTS)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["False", "True"]


def test_thousands_of_redraws_survive():
    out = run_python(LOOP)
    assert out.returncode == 0, out.stderr[-2000:]
    lost = int(out.stdout.strip().splitlines()[-1])
    if lost < 30_000 and sys.version_info < (3, 12):
        pytest.skip(f"this PySide6 leaks little ({lost} references): the guard was not needed")
