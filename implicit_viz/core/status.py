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
    CONVERGING = 6
    QUASI_PERIODIC = 7

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
    Status.MAX_ITER: (
        "out of budget with no verdict: none of the above, and the end-of-budget evidence "
        "(residual trend, Lyapunov estimate) decides nothing"
    ),
    Status.CHAOTIC: (
        "out of budget, no cycle, and a positive Lyapunov estimate whose uncertainty excludes 0 "
        "(two half-window estimates; lyapunov +- lyapunov_err)"
    ),
    Status.CONVERGING: (
        "out of budget but still converging: the residual falls geometrically over the end of "
        "the budget (rate per step in rate, steps still needed to reach tol in steps_needed)"
    ),
    Status.QUASI_PERIODIC: (
        "out of budget, bounded, not converging, no cycle close by, and a Lyapunov estimate "
        "about 0 within its uncertainty: an invariant circle (or a cycle longer than max_period)"
    ),
}


def status_names() -> dict[int, str]:
    """Map every code to its lower-case name, e.g. ``{1: "converged", ...}``."""
    return {int(s): s.label for s in Status}


def status_descriptions() -> dict[str, str]:
    """Map every lower-case name to its one-line description."""
    return {s.label: s.description for s in Status}
