"""The live solve, off the GUI thread, where the newest request wins.

One background thread runs :func:`implicit_viz.core.live.run_live`. :meth:`SolveWorker.submit`
replaces any request still waiting (so a dragged slider queues at most one solve), and a solve
that has run longer than :data:`STALE_AFTER_S` while a newer request waits is cancelled. Results
and errors come back as Qt signals carrying plain data, delivered on the GUI thread.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace

from PySide6.QtCore import QObject, Signal

from implicit_viz.core.live import LiveRequest, MapCache, run_live
from implicit_viz.gui.latest_slot import LatestSlot

log = logging.getLogger(__name__)

#: A running solve is dropped for a newer request once it has run this long (seconds).
STALE_AFTER_S = 0.25


def describe_error(
    exc: BaseException, memory_hint: str = "lower max_iter or the spec's dim"
) -> str:
    """One line for the window, shared by every worker: the backend's own message (SpecError,
    SolverError, SweepError and other ValueErrors), or ``internal error: Type: message``."""
    from implicit_viz.core.errors import SolverError, SpecError

    if isinstance(exc, SpecError):
        return exc.one_line()
    if isinstance(exc, (SolverError, ValueError)):
        return str(exc)
    if isinstance(exc, MemoryError):
        return f"out of memory: {memory_hint}"
    return f"internal error: {type(exc).__name__}: {exc}"


class SolveWorker(QObject):
    """Runs live solves on a background thread.

    Signals
    -------
    snapshotReady(LiveSnapshot)
        A finished solve (not cancelled).
    failed(int, str)
        ``(request_id, message)`` for a request that raised.
    busyChanged(bool)
        The thread started or finished a solve.
    """

    snapshotReady = Signal(object)
    failed = Signal(int, str)
    busyChanged = Signal(bool)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._slot: LatestSlot[LiveRequest] = LatestSlot()
        self._started = 0.0
        self._cache = MapCache()
        self._thread = threading.Thread(target=self._loop, name="implicit-viz-solve", daemon=True)
        self._thread.start()

    def submit(self, request: LiveRequest) -> int:
        """Queue ``request`` (replacing any waiting one); returns its id (increasing)."""
        return self._slot.put(lambda rid: replace(request, request_id=rid))

    @property
    def last_id(self) -> int:
        return self._slot.last_id

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop the thread (a running solve is cancelled at its next check point)."""
        self._slot.stop()
        self._thread.join(timeout)

    # thread side -----------------------------------------------------------------------------
    def _cancelled(self) -> bool:
        if self._slot.stopping:
            return True
        return self._slot.waiting and time.perf_counter() - self._started > STALE_AFTER_S

    def _mark_start(self, _rid: int) -> None:
        self._started = time.perf_counter()

    def _loop(self) -> None:
        import torch

        # A live solve is a chain of microsecond ops: one thread avoids wake-up stalls.
        torch.set_num_threads(1)
        while (taken := self._slot.take(self._mark_start)) is not None:
            req = taken[1]
            self.busyChanged.emit(True)
            try:
                snap = run_live(req, cache=self._cache, cancel=self._cancelled)
            except Exception as exc:  # every failure becomes a message, never a crash
                if not isinstance(exc, ValueError):
                    log.exception("live solve %d failed", req.request_id)
                self.failed.emit(req.request_id, describe_error(exc))
            else:
                if not self._cancelled():
                    self.snapshotReady.emit(snap)
            finally:
                self.busyChanged.emit(False)
