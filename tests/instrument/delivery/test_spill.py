"""The spiller against a real receiver: what flush reports, a spool slower than the workflow, and exit."""

from __future__ import annotations

import gc
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import pytest

from flowledger._wire import EventKind, new_event_id
from flowledger.instrument._pending import PendingEvent
from flowledger.instrument.delivery import _sender as sender_module
from flowledger.instrument.delivery._sender import Sender
from flowledger.instrument.delivery._spool import SpoolResult
from tests.instrument.delivery._sender_support import (
    closed_port_url,
    make_event,
    make_settings,
    port_of,
    recorder,
    spooled_events,
    wait_until,
)

FLUSH_S = 10.0
HOLD_LIMIT_S = 60.0
"""How long a held spool write waits for the test to let it go (a hang guard)."""


class _HeldWrites:
    """Holds the spiller's spool writes until released, noting which thread made each write; all are real."""

    def __init__(self, sender: Sender, monkeypatch: pytest.MonkeyPatch) -> None:
        self.release = threading.Event()
        self.writing = threading.Event()
        self.threads: list[str] = []
        real_write = sender._spool.write

        def held_write(events: list[dict[str, Any]], **kwargs: Any) -> SpoolResult:
            self.threads.append(threading.current_thread().name)
            if threading.current_thread().name == "flowledger-spill":
                self.writing.set()
                self.release.wait(HOLD_LIMIT_S)
            return real_write(events, **kwargs)

        monkeypatch.setattr(sender._spool, "write", held_write)


def test_flush_reports_a_new_drop_while_replaying_an_earlier_process_spool(tmp_path: Path) -> None:
    """Replaying 5 events an earlier process spooled does not hide one new event refused as too large."""
    spool = tmp_path / "spool"
    down = closed_port_url()
    earlier = Sender(make_settings(spool, down, max_retries=0))
    for i in range(5):
        earlier.submit(make_event(i, index=i), 300)
    assert not earlier.shutdown(FLUSH_S)
    assert len(spooled_events(spool)) == 5
    with recorder(port=port_of(down)) as rec:  # the receiver back where the earlier process sent
        rec.too_large = lambda events: any(e["data"].get("big") for e in events)
        sender = Sender(make_settings(spool, rec.url, batch_max_age_s=60.0))
        sender.submit(make_event(0, big=True), 300)
        assert not sender.flush(FLUSH_S)
        stats = sender.stats()
        assert (stats["replayed"], stats["dropped_too_large"], stats["dropped"]) == (5, 1, 1)
        sender.shutdown(1.0)


def test_a_spool_slower_than_the_workflow_drops_events_and_never_writes_on_the_callers_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the spiller stuck on one queue and two more waiting, submit drops and counts, keeps run_finished."""
    with recorder() as rec:
        sender = Sender(make_settings(tmp_path / "spool", rec.url, batch_max_age_s=60.0, queue_max_items=10))
        held = _HeldWrites(sender, monkeypatch)
        events = [make_event(i, index=i) for i in range(41)]
        for event in events[:11]:  # the eleventh hands the first ten to the spiller
            sender.submit(event, 300)
        assert held.writing.wait(FLUSH_S)
        finished = {**make_event(41, index=41), "kind": "run_finished"}

        def submit_rest() -> None:
            for event in [*events[11:], finished]:
                sender.submit(event, 300)

        submitter = threading.Thread(target=submit_rest, name="workflow")
        submitter.start()
        submitter.join(FLUSH_S)
        try:
            assert not submitter.is_alive(), "submit waited for the spool"
            stats = sender.stats()
            # 10..19 and 20..29 wait for the spiller, 30..39 are queued, 40 is dropped, run_finished kept.
            assert (stats["dropped_queue_full"], stats["dropped"], stats["queued"]) == (1, 1, 11)
        finally:
            held.release.set()
            submitter.join(FLUSH_S)
        assert sender.flush(FLUSH_S)  # the drop came before this flush
        assert set(held.threads) == {"flowledger-spill"}
        delivered = set(rec.event_ids())
        assert delivered == {e["event_id"] for e in [*events[:40], finished]}
        assert sender.stats()["dropped"] == 1
        sender.shutdown(1.0)


def test_exit_waits_for_a_spill_write_begun_no_longer_than_its_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """shutdown(0) with a spill file being written returns within its budget, not after SETTLE_WAIT_S."""
    monkeypatch.setattr(sender_module, "SETTLE_WAIT_S", HOLD_LIMIT_S)
    with recorder() as rec:
        sender = Sender(make_settings(tmp_path / "spool", rec.url, batch_max_age_s=60.0, queue_max_items=3))
        held = _HeldWrites(sender, monkeypatch)
        events = [make_event(i, index=i) for i in range(4)]
        for event in events:  # the fourth hands the first three to the spiller
            sender.submit(event, 300)
        assert held.writing.wait(FLUSH_S)
        results: list[bool] = []
        closer = threading.Thread(target=lambda: results.append(sender.shutdown(0.0)))
        closer.start()
        closer.join(FLUSH_S)
        try:
            assert not closer.is_alive(), "shutdown(0) waited for the spill write past its budget"
            assert results == [False]
        finally:
            held.release.set()
            closer.join(FLUSH_S)
        assert wait_until(lambda: sender.stats()["spooled"] == 4)  # the spill, then the fourth event
        spooled = sorted(e["event_id"] for e in spooled_events(tmp_path / "spool"))
        assert spooled == sorted(e["event_id"] for e in events)


def test_a_spill_that_cannot_write_its_events_out_counts_them_dropped(tmp_path: Path) -> None:
    """An event that cannot be written out (a time out of range) fails its spill: the queue counts as dropped."""
    with recorder() as rec:
        sender = Sender(make_settings(tmp_path / "spool", rec.url, batch_max_age_s=60.0, queue_max_items=3))
        run_id = new_event_id()
        bad = PendingEvent(EventKind.HEARTBEAT, run_id, 0, new_event_id(), 0, 10**30, None, {})
        sender.submit(bad, 300)
        for i in range(1, 4):  # the fourth hands the first three to the spiller
            sender.submit(make_event(i, run_id=run_id, index=i), 300)
        assert wait_until(lambda: sender.stats()["dropped"] == 3)
        stats = sender.stats()
        assert (stats["dropped_spool_error"], stats["failures"], stats["queued"]) == (3, 1, 1)
        sender.shutdown(1.0)


class _Payload:
    """An event's data, made when the event is written out; a weak reference tells whether anything still holds it."""

    def __init__(self, index: int) -> None:
        self.index = index

    def __call__(self) -> dict[str, Any]:
        return {"index": self.index, "blob": "x" * 1000}


def test_a_spilled_queue_is_not_held_in_memory_once_written(tmp_path: Path) -> None:
    """After flush(), nothing keeps the events a spill wrote out: their payloads are freed (not at the next spill)."""
    with recorder() as rec:
        sender = Sender(make_settings(tmp_path / "spool", rec.url, batch_max_age_s=60.0, queue_max_items=10))
        run_id, producer_id = new_event_id(), new_event_id()
        payloads = [_Payload(i) for i in range(11)]
        spilled = [weakref.ref(payload) for payload in payloads[:10]]
        for i, payload in enumerate(payloads):  # the eleventh hands the first ten to the spiller
            sender.submit(
                PendingEvent(EventKind.HEARTBEAT, run_id, i, producer_id, i, time.time_ns(), None, payload), 300
            )
        del payloads, payload
        try:
            assert sender.flush(FLUSH_S)
            assert sender.stats()["spooled"] == 10
            assert len(rec.event_ids()) == 11
            # wait_until: a guard against the moment between the spill's end and the spiller's next statement
            assert wait_until(lambda: gc.collect() >= 0 and all(ref() is None for ref in spilled), 5.0)
        finally:
            sender.shutdown(1.0)
