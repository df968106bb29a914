"""The "newest request wins" hand-over shared by the app's worker threads. No Qt.

The GUI thread :meth:`LatestSlot.put` s a request (replacing any that still waits, so a dragged
slider queues at most one); the worker thread :meth:`LatestSlot.take` s it, blocking while the
slot is empty. Ids increase with every ``put``, so the GUI can drop answers to stale requests.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class LatestSlot(Generic[T]):
    """At most one waiting request, with an increasing id; thread-safe."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: tuple[int, T] | None = None
        self._next_id = 0
        self._stopping = False

    @property
    def last_id(self) -> int:
        """The id of the newest request put (0 before the first)."""
        return self._next_id

    @property
    def waiting(self) -> bool:
        return self._item is not None

    @property
    def stopping(self) -> bool:
        return self._stopping

    def put(self, make: Callable[[int], T], on_put: Callable[[int], None] | None = None) -> int:
        """Store ``make(new_id)`` in place of any waiting request; ``on_put(new_id)`` runs under
        the same lock. Returns the new id."""
        with self._cond:
            self._next_id += 1
            self._item = (self._next_id, make(self._next_id))
            if on_put is not None:
                on_put(self._next_id)
            self._cond.notify()
            return self._next_id

    def clear(self, on_clear: Callable[[int], None] | None = None) -> None:
        """Drop the waiting request; ``on_clear(last_id)`` runs under the same lock."""
        with self._cond:
            self._item = None
            if on_clear is not None:
                on_clear(self._next_id)

    def take(self, on_take: Callable[[int], None] | None = None) -> tuple[int, T] | None:
        """Block until a request waits and return ``(id, request)``; None once stopping.
        ``on_take(id)`` runs under the lock."""
        with self._cond:
            while self._item is None and not self._stopping:
                self._cond.wait()
            if self._stopping:
                return None
            item, self._item = self._item, None
            if on_take is not None:
                on_take(item[0])
            return item

    def stop(self) -> None:
        """Drop the waiting request and make every ``take`` return None."""
        with self._cond:
            self._stopping = True
            self._item = None
            self._cond.notify_all()

    def locked(self, read: Callable[[], bool]) -> bool:
        """``read()`` under the slot's lock (for state a worker keeps beside the slot)."""
        with self._cond:
            return read()
