"""implicit_viz: explore implicit layers, fixed-point maps and their solvers.

The compute backend lives in :mod:`implicit_viz.core` (torch, no Qt); the command line in
:mod:`implicit_viz.cli`. Importing this package is cheap: torch loads only when a solve needs it.
"""

__version__ = "0.1.0"
