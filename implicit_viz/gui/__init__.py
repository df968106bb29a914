"""The desktop app and Qt-side rendering (PySide6, pyqtgraph, superqt). Never imported by core.

Importing this package guards ``None``/``True``/``False`` against PySide6 6.12's reference-count
bug on CPython 3.11 (see :mod:`implicit_viz.gui._refcount_guard`).
"""

from implicit_viz.gui._refcount_guard import guard_singletons

guard_singletons()
