"""The desktop app and Qt-side rendering (PySide6, pyqtgraph, superqt). Never imported by core.

Importing this package has no side effects. Code that makes a ``QApplication`` first starts
:func:`implicit_viz.gui._refcount_guard.guard_singletons` (the app's entry point,
:func:`implicit_viz.gui.sweep_image.ensure_gui_app`, the test suite's ``conftest.py``).
"""
