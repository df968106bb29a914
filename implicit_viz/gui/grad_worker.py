"""The gradient lab, off the GUI thread, where the newest request wins.

One background thread runs :func:`implicit_viz.core.gradients.gradient_lab`. :meth:`GradWorker.submit`
replaces any request still waiting, so a dragged slider queues at most one run behind the one in
progress (a run cannot be interrupted: the lab has no cancel hook, and at the app's sizes it
takes a fraction of a second). Reports and errors come back as Qt signals carrying plain data,
delivered on the GUI thread; no exception ever leaves the thread.
"""

from __future__ import annotations

import logging
import threading
import time

from PySide6.QtCore import QObject, Signal

from implicit_viz.core.gradients import GradRequest, gradient_lab
from implicit_viz.gui.latest_slot import LatestSlot
from implicit_viz.gui.solve_worker import describe_error

log = logging.getLogger(__name__)

#: Durations of this many most recent runs are kept for :meth:`GradWorker.duration`.
_KEEP_DURATIONS = 64


class GradWorker(QObject):
    """Runs gradient-lab requests on a background thread.

    Signals
    -------
    reportReady(int, object)
        ``(request_id, GradReport)`` of a finished run.
    failed(int, str)
        ``(request_id, message)`` of a run that raised: the backend's message for
        :class:`~implicit_viz.core.errors.SpecError`, ``SolverError`` and ``ValueError``,
        ``"internal error: Type: message"`` for anything else.
    busyChanged(bool)
        The thread started or finished a run.
    """

    reportReady = Signal(int, object)
    failed = Signal(int, str)
    busyChanged = Signal(bool)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._slot: LatestSlot[GradRequest] = LatestSlot()
        self._lock = threading.Lock()
        self._durations: dict[int, float] = {}
        self._thread = threading.Thread(target=self._loop, name="implicit-viz-grad", daemon=True)
        self._thread.start()

    # GUI side ---------------------------------------------------------------------------------
    def submit(self, request: GradRequest) -> int:
        """Queue ``request``, replacing any waiting one; returns its id (increasing)."""
        return self._slot.put(lambda _rid: request)

    @property
    def last_id(self) -> int:
        """The id of the newest submitted request (0 before the first)."""
        return self._slot.last_id

    def duration(self, request_id: int) -> float | None:
        """Wall seconds the run of ``request_id`` took, once it has finished (None before, or
        for a request replaced while it waited)."""
        with self._lock:
            return self._durations.get(request_id)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Drop any waiting request and stop the thread (after the run in progress)."""
        self._slot.stop()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    # thread side ------------------------------------------------------------------------------
    def _emit(self, signal_name: str, *args: object) -> None:
        """Emit unless the QObject is already gone (the app closing under a running lab)."""
        try:
            getattr(self, signal_name).emit(*args)
        except RuntimeError:  # the C++ object was deleted
            log.debug("grad worker: %s dropped, the worker is gone", signal_name)

    def _loop(self) -> None:
        import torch

        # The lab runs chains of small ops on one sample: extra threads only add latency.
        torch.set_num_threads(1)
        while (taken := self._slot.take()) is not None:
            self._run(*taken)

    def _run(self, rid: int, request: GradRequest) -> None:
        self._emit("busyChanged", True)
        t0 = time.perf_counter()
        try:
            report = gradient_lab(request)
        except BaseException as exc:  # every failure becomes a message, never a crash
            from implicit_viz.core.errors import SolverError, SpecError

            if not isinstance(exc, (SpecError, SolverError, ValueError)):
                log.exception("gradient lab run %d failed", rid)
            self._record(rid, time.perf_counter() - t0)
            self._emit("failed", rid, _message(exc))
        else:
            self._record(rid, time.perf_counter() - t0)
            self._emit("reportReady", rid, report)
        finally:
            self._emit("busyChanged", False)

    def _record(self, rid: int, seconds: float) -> None:
        with self._lock:
            self._durations[rid] = seconds
            for old in sorted(self._durations)[:-_KEEP_DURATIONS]:
                del self._durations[old]


def _message(exc: BaseException) -> str:
    """The one-line message of a failed run (see :class:`GradWorker`)."""
    if isinstance(exc, Exception):
        return describe_error(exc)
    return f"internal error: {type(exc).__name__}: {exc}"
