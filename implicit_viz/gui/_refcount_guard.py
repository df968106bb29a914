"""A guard against a reference-count bug of PySide6/shiboken6 6.12.x on CPython 3.11.x.

With PySide6/shiboken6 6.12 (seen with 6.12.0) on CPython 3.11 (seen with 3.11.7), ordinary
calls into Qt drop references to ``None`` and ``True`` that they never took: a protected void
method (``QSyntaxHighlighter.setFormat``), pyqtgraph's ``setData``, every repaint of a plot.
Each call costs a few references; after a few hundred redraws the count reaches zero and the
interpreter aborts (``Fatal Python error: none_dealloc``). This module raises their reference
counts far beyond anything a session can leak (2**40: ~10**12 calls). Singletons are never
freed anyway, so a larger count changes nothing else.

It is not started on import: whatever makes a ``QApplication`` calls :func:`guard_singletons`
first (the app's entry point, :func:`implicit_viz.gui.sweep_image.ensure_gui_app`, the tests'
``conftest.py``). It can go once the project requires CPython >= 3.12, where these singletons
are immortal objects whose counts never change (PEP 683) and the bug is invisible; until then
it is a no-op there.
"""

from __future__ import annotations

import sys

#: Added to each singleton's reference count.
HEADROOM = 1 << 40
#: Below this count a singleton gets the headroom (again).
LOW_WATER = 1 << 39

_SINGLETONS = (None, True, False)


def guard_singletons() -> bool:
    """Make ``None``, ``True`` and ``False`` effectively immortal on CPython < 3.12. Cheap and
    idempotent: call it before making a ``QApplication``.

    Returns True when counts were raised, False where nothing is needed or possible (counts
    already high, CPython 3.12+, other interpreters, debug builds whose object header differs).
    """
    if sys.implementation.name != "cpython" or sys.version_info >= (3, 12):
        return False
    if hasattr(sys, "getobjects"):  # Py_TRACE_REFS build: ob_refcnt is not the first field
        return False
    import ctypes

    raised = False
    for obj in _SINGLETONS:
        cell = ctypes.c_ssize_t.from_address(id(obj))  # PyObject.ob_refcnt
        if cell.value < LOW_WATER:
            cell.value += HEADROOM
            raised = True
    return raised
