"""The newest-request-wins hand-over of the app's workers."""

from __future__ import annotations

import threading

from implicit_viz.gui.latest_slot import LatestSlot


def test_newest_put_replaces_the_waiting_one_and_ids_increase():
    slot: LatestSlot[str] = LatestSlot()
    assert slot.last_id == 0 and not slot.waiting
    ids = [slot.put(lambda rid, v=v: f"{v}:{rid}") for v in "abc"]
    assert ids == [1, 2, 3] and slot.last_id == 3
    assert slot.take() == (3, "c:3")  # a and b were dropped
    assert not slot.waiting


def test_hooks_run_and_clear_drops():
    seen = []
    slot: LatestSlot[int] = LatestSlot()
    slot.put(lambda rid: rid * 10, on_put=lambda rid: seen.append(("put", rid)))
    slot.clear(on_clear=lambda last: seen.append(("clear", last)))
    assert not slot.waiting
    slot.put(lambda rid: rid * 10)
    assert slot.take(on_take=lambda rid: seen.append(("take", rid))) == (2, 20)
    assert seen == [("put", 1), ("clear", 1), ("take", 2)]


def test_take_blocks_until_put_and_stop_releases_it():
    slot: LatestSlot[str] = LatestSlot()
    got = []
    t = threading.Thread(target=lambda: got.append(slot.take()))
    t.start()
    slot.put(lambda _rid: "x")
    t.join(5)
    assert got == [(1, "x")]
    t = threading.Thread(target=lambda: got.append(slot.take()))
    t.start()
    slot.stop()
    t.join(5)
    assert not t.is_alive() and got[-1] is None and slot.stopping
