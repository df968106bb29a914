"""The one background-thread worker the app's live solve, sweeps and gradient lab stand on.

A :class:`Worker` owns one thread and serves requests one at a time. Every request gets an id
(increasing) that each of its signals carries, so a view drops stale answers. The newest request
wins: a waiting request is replaced, and the running one is cancelled per the worker's policy
(``supersede_after``: 0 at once, a grace time in seconds, or None never). Cancel and pause reach
the computation through ONE callable handed to the core function as ``cancel=``, which the core
already polls at its check points: it returns True when the run must stop, and while the worker
is paused it blocks until resume, cancel, a superseding request or shutdown.

Why not superqt's ``thread_worker`` / ``GeneratorWorker``: they pause only at a generator's
yields (``run_live`` and ``gradient_lab`` are plain functions, and a sweep yields once per tile,
not inside one), poll a pause flag with ``sleep``, start one runnable per call on the shared
``QThreadPool`` (no ordering between calls) and have no newest-request-wins. Hence this class.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Signal

log = logging.getLogger(__name__)

#: Durations of this many most recent runs are kept for :meth:`Worker.duration`.
KEEP_DURATIONS = 64


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


def _is_cancelled_error(exc: BaseException) -> bool:
    """``exc`` is the core's :class:`~implicit_viz.core.errors.Cancelled`."""
    from implicit_viz.core.errors import Cancelled

    return isinstance(exc, Cancelled)


class Worker(QObject):
    """One thread serving requests, newest first; subclasses implement :meth:`_work`.

    Signals: ``failed(int, str)`` ``(request_id, message)`` for a request that raised;
    ``busyChanged(bool)`` when the thread starts or ends a run.
    """

    failed = Signal(int, str)
    busyChanged = Signal(bool)

    #: How the out-of-memory message ends (see :func:`describe_error`).
    memory_hint = "lower max_iter or the spec's dim"

    def __init__(
        self,
        parent: QObject | None = None,
        *,
        name: str,
        supersede_after: float | None,
        torch_threads: int | None = None,
    ) -> None:
        """``supersede_after``: seconds a run may go on while a newer request waits (0: cancel
        at once, None: never); ``torch_threads``: ``torch.set_num_threads`` for the thread."""
        super().__init__(parent)
        self._grace = supersede_after
        self._torch_threads = torch_threads
        self._cond = threading.Condition()
        self._next_id = 0
        self._waiting: tuple[int, Any] | None = None
        self._running_id = 0
        self._started = 0.0
        self._held_s = 0.0  # seconds the running request has spent paused
        self._cancel_up_to = 0  # requests with an id up to this one are cancelled
        self._paused = False
        self._stopping = False
        self._durations: dict[int, float] = {}
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    # GUI side ----------------------------------------------------------------------------------
    def submit(self, request: Any) -> int:
        """Queue ``request`` in place of any waiting one; returns its id (increasing)."""
        with self._cond:
            self._next_id += 1
            self._waiting = (self._next_id, self._prepare(request, self._next_id))
            self._cond.notify_all()
            return self._next_id

    def cancel(self) -> None:
        """Drop the waiting request and stop the running one at its next check point."""
        with self._cond:
            self._waiting = None
            self._cancel_up_to = self._next_id
            self._cond.notify_all()

    def pause(self) -> None:
        """Hold the running request at its next check point; start no new one until resumed."""
        with self._cond:
            self._paused = True

    def resume(self) -> None:
        with self._cond:
            self._paused = False
            self._cond.notify_all()

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def last_id(self) -> int:
        """The id of the newest request submitted (0 before the first)."""
        return self._next_id

    @property
    def busy(self) -> bool:
        """A request is running or waiting."""
        with self._cond:
            return self._running_id != 0 or self._waiting is not None

    def duration(self, request_id: int) -> float | None:
        """Wall seconds the run of ``request_id`` took, less any time paused, once it has ended
        (None before, or for a request replaced while it waited)."""
        with self._cond:
            return self._durations.get(request_id)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Drop the waiting request, stop the running one (also a paused one) and the thread."""
        with self._cond:
            self._stopping = True
            self._waiting = None
            self._cond.notify_all()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    # subclass side -----------------------------------------------------------------------------
    def _prepare(self, request: Any, request_id: int) -> Any:
        """The request as the thread will run it (e.g. stamped with its id)."""
        return request

    def _work(self, request_id: int, request: Any, cancel: Callable[[], bool]) -> Any:
        """Run one request on the worker thread (emitting progress as it goes); returns the
        answer for :meth:`_deliver`. Raise to fail the request (``Cancelled``: silently)."""
        raise NotImplementedError

    def _deliver(self, request_id: int, answer: Any) -> None:
        """Emit the answer of a run (after its duration is recorded)."""
        raise NotImplementedError

    def _stale(self, request_id: int) -> bool:
        """The run of ``request_id`` must stop (cancelled, superseded or shutting down); never
        blocks."""
        with self._cond:
            return self._stop_locked(request_id)

    def _emit(self, signal_name: str, *args: object) -> None:
        """Emit unless the QObject is already gone (the app closing under a running request)."""
        try:
            getattr(self, signal_name).emit(*args)
        except RuntimeError:  # the C++ object was deleted
            log.debug("%s: %s dropped, the worker is gone", type(self).__name__, signal_name)

    # thread side -------------------------------------------------------------------------------
    def _stop_locked(self, rid: int) -> bool:
        if self._stopping or rid <= self._cancel_up_to:
            return True
        if self._grace is None or self._waiting is None:
            return False
        return time.perf_counter() - self._started >= self._grace

    def _check(self, rid: int) -> bool:
        """The ``cancel=`` callable of run ``rid``: True to stop; blocks while paused."""
        if not (self._paused or self._stopping or self._waiting or rid <= self._cancel_up_to):
            return False  # the hot path: no lock (each read is atomic under the GIL)
        with self._cond:
            while True:
                if self._stop_locked(rid):
                    return True
                if not self._paused:
                    return False
                left = None
                if self._grace is not None and self._waiting is not None:
                    left = max(0.0, self._started + self._grace - time.perf_counter())
                t0 = time.perf_counter()
                self._cond.wait(left)
                self._held_s += time.perf_counter() - t0

    def _take(self) -> tuple[int, Any] | None:
        with self._cond:
            while not self._stopping and (self._waiting is None or self._paused):
                self._cond.wait()
            if self._stopping:
                return None
            item, self._waiting = self._waiting, None
            self._running_id, self._started = item[0], time.perf_counter()
            self._held_s = 0.0
            return item

    def _loop(self) -> None:
        if self._torch_threads is not None:
            import torch

            torch.set_num_threads(self._torch_threads)
        while (taken := self._take()) is not None:
            rid, request = taken
            self._emit("busyChanged", True)
            try:
                try:
                    answer = self._work(rid, request, lambda rid=rid: self._check(rid))
                finally:
                    self._record(rid)  # before the answer: its receiver may ask for it
                self._deliver(rid, answer)
            except BaseException as exc:  # every failure becomes a message, never a crash
                if not _is_cancelled_error(exc):
                    self._report(rid, exc)
            finally:
                with self._cond:
                    self._running_id = 0
                self._emit("busyChanged", False)

    def _record(self, rid: int) -> None:
        with self._cond:
            self._durations[rid] = time.perf_counter() - self._started - self._held_s
            for old in sorted(self._durations)[:-KEEP_DURATIONS]:
                del self._durations[old]

    def _report(self, rid: int, exc: BaseException) -> None:
        if not isinstance(exc, ValueError):  # SpecError, SolverError, ... are the user's
            log.exception("%s: request %d failed", type(self).__name__, rid, exc_info=exc)
        self._emit("failed", rid, describe_error(exc, self.memory_hint))
