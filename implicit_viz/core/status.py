"""Outcome codes of a solve, one per batch element.

The integer values are stable: they are written into NPZ/JSON exports, and every export also
carries the mapping from code to name (:func:`status_names`).
"""

from __future__ import annotations

from enum import IntEnum


class Status(IntEnum):
    """What happened to one element of a batch."""

    NOT_RUN = 0
    CONVERGED = 1
    DIVERGED = 2
    PERIODIC = 3
    MAX_ITER = 4
    CHAOTIC = 5

    @property
    def label(self) -> str:
        """Lower-case name used in tables, JSON and the CLI (``"max_iter"``)."""
        return self.name.lower()

    @property
    def description(self) -> str:
        """One line that says what the code means."""
        return _DESCRIPTIONS[self]


_DESCRIPTIONS = {
    Status.NOT_RUN: "not solved (cancelled or skipped before this element ran)",
    Status.CONVERGED: "residual ||f(z) - z|| fell below the tolerance",
    Status.DIVERGED: "an iterate became non-finite or its norm exceeded the divergence bound",
    Status.PERIODIC: "the iterates repeat with a period k >= 2 (a cycle) up to the period tolerance",
    Status.MAX_ITER: "none of the above within the iteration budget",
    Status.CHAOTIC: "no convergence and no cycle, with a positive Lyapunov estimate",
}


def status_names() -> dict[int, str]:
    """Map every code to its lower-case name, e.g. ``{1: "converged", ...}``."""
    return {int(s): s.label for s in Status}


def status_descriptions() -> dict[str, str]:
    """Map every lower-case name to its one-line description."""
    return {s.label: s.description for s in Status}
