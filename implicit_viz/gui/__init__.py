"""The desktop app and Qt-side rendering (PySide6, pyqtgraph, superqt). Never imported by core."""
