"""The live solve, off the GUI thread, where the newest request wins.

A :class:`~implicit_viz.gui.workers.Worker` running :func:`implicit_viz.core.live.run_live`.
:meth:`SolveWorker.submit` replaces any request still waiting (so a dragged slider queues at most
one solve), and a solve that has run longer than :data:`STALE_AFTER_S` while a newer request
waits is cancelled. Results and errors come back as Qt signals carrying plain data, delivered on
the GUI thread.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from PySide6.QtCore import QObject, Signal

from implicit_viz.core.live import LiveRequest, LiveSnapshot, MapCache, run_live
from implicit_viz.gui.workers import Worker, describe_error

__all__ = ["STALE_AFTER_S", "SolveWorker", "describe_error"]

#: A running solve is dropped for a newer request once it has run this long (seconds).
STALE_AFTER_S = 0.25


class SolveWorker(Worker):
    """Runs live solves on a background thread.

    Signals
    -------
    snapshotReady(LiveSnapshot)
        A finished solve (not cancelled, not superseded); its ``request_id`` is the id.
    failed(int, str)
        ``(request_id, message)`` for a request that raised.
    busyChanged(bool)
        The thread started or finished a solve.
    """

    snapshotReady = Signal(object)

    def __init__(self, parent: QObject | None = None) -> None:
        # A live solve is a chain of microsecond ops: one thread avoids wake-up stalls.
        super().__init__(
            parent, name="implicit-viz-solve", supersede_after=STALE_AFTER_S, torch_threads=1
        )
        self._cache = MapCache()

    def submit(self, request: LiveRequest) -> int:
        """Queue ``request`` (replacing any waiting one); returns its id (increasing)."""
        return super().submit(request)

    def _prepare(self, request: LiveRequest, request_id: int) -> LiveRequest:
        return replace(request, request_id=request_id)

    def _work(self, rid: int, request: LiveRequest, cancel: Callable[[], bool]) -> LiveSnapshot:
        return run_live(request, cache=self._cache, cancel=cancel)

    def _deliver(self, rid: int, answer: LiveSnapshot) -> None:
        if not self._stale(rid):  # a cancelled solve holds "not run" traces: never shown
            self._emit("snapshotReady", answer)
