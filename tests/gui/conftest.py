"""GUI tests: Python's cycle collector runs between tests, never inside one.

A collection can start at any allocation; if it frees a Qt widget that was cyclic garbage
while the main thread is inside a Qt call holding a signal lock (a disconnect, say), the
widget's destructor waits for that same lock and the test run hangs (seen in
``test_panels``). The app avoids this with a timer-driven collector (``gui/app.py``); here
each test runs with the collector off and garbage is collected at teardown, after pytest-qt
has closed the test's widgets.

The PySide6 refcount guard that every Qt test needs is started in ``tests/conftest.py`` (the
CLI's ``--png`` tests draw with Qt too), before any test runs.
"""

from __future__ import annotations

import gc

import pytest


@pytest.fixture(autouse=True)
def _collect_between_tests():
    gc.disable()
    try:
        yield
    finally:
        # With automatic collection off, what the test allocated is still in the youngest
        # generation: collecting that one is enough, and cheap.
        gc.collect(0)
        gc.enable()
