"""The gradient lab, off the GUI thread, where the newest request wins.

A :class:`~implicit_viz.gui.workers.Worker` running
:func:`implicit_viz.core.gradients.gradient_lab`. :meth:`GradWorker.submit` replaces any request
still waiting, so a dragged slider queues at most one run behind the one in progress; the run in
progress goes on to its end (at the app's sizes it takes a fraction of a second) unless
:meth:`~implicit_viz.gui.workers.Worker.cancel` stops it (the lab polls ``cancel=``).
Reports and errors come back as Qt signals carrying plain data, delivered on the GUI thread; no
exception ever leaves the thread.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, Signal

from implicit_viz.core.gradients import GradReport, GradRequest, gradient_lab
from implicit_viz.gui.workers import Worker, describe_error

__all__ = ["GradWorker", "describe_error"]


class GradWorker(Worker):
    """Runs gradient-lab requests on a background thread.

    Signals
    -------
    reportReady(int, object)
        ``(request_id, GradReport)`` of a finished run (not cancelled).
    failed(int, str)
        ``(request_id, message)`` of a run that raised: the backend's message for
        :class:`~implicit_viz.core.errors.SpecError`, ``SolverError`` and ``ValueError``,
        ``"internal error: Type: message"`` for anything else.
    busyChanged(bool)
        The thread started or finished a run.
    """

    reportReady = Signal(int, object)

    def __init__(self, parent: QObject | None = None) -> None:
        # The lab runs chains of small ops on one sample: extra threads only add latency.
        super().__init__(parent, name="implicit-viz-grad", supersede_after=None, torch_threads=1)

    def submit(self, request: GradRequest) -> int:
        """Queue ``request``, replacing any waiting one; returns its id (increasing)."""
        return super().submit(request)

    def _work(self, rid: int, request: GradRequest, cancel: Callable[[], bool]) -> GradReport:
        return gradient_lab(request, cancel=cancel)  # looked up per run: tests stand in for it

    def _deliver(self, rid: int, answer: GradReport) -> None:
        if not self._stale(rid):
            self._emit("reportReady", rid, answer)
