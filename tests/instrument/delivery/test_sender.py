"""The sender at the transport seam (httpx.MockTransport): batching, retry, 413, spool, counters."""

from __future__ import annotations

import gzip
import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry import context as otel_context

from flowledger._exceptions import UsageError
from flowledger._version import __version__
from flowledger.instrument.delivery import _sender as sender_module
from flowledger.instrument.delivery._sender import DropReason, Sender
from flowledger.instrument.delivery._sink import EventSink
from flowledger.instrument.delivery._spool import Spool, SpoolResult
from flowledger.instrument.delivery._transport import parse_retry_after
from flowledger.instrument.delivery._wait import ReentrantEvent
from tests.instrument.delivery._sender_support import (
    MockReceiver,
    RecordingSender,
    make_event,
    make_settings,
    recorder,
    spooled_events,
    wait_until,
)

FLUSH_S = 10.0


def _sender(tmp_path: Path, receiver: MockReceiver, **changes: Any) -> RecordingSender:
    return RecordingSender(make_settings(tmp_path / "spool", **changes), transport=receiver.transport())


def _submit(sender: Sender, count: int, **data: Any) -> list[dict[str, Any]]:
    events = [make_event(i, index=i, **data) for i in range(count)]
    for event in events:
        sender.submit(event, 300)
    return events


def test_sender_is_an_event_sink(tmp_path: Path) -> None:
    """Sender satisfies the EventSink protocol the hooks hand events to."""
    sender = Sender(make_settings(tmp_path))
    assert isinstance(sender, EventSink)
    assert sender.shutdown(0.1)


def test_batch_is_gzip_json_with_headers(tmp_path: Path) -> None:
    """A batch is POSTed as gzip-compressed {"events": [...]} with auth, agent and encoding headers."""
    receiver = MockReceiver()
    sender = _sender(tmp_path, receiver, api_key="k-123", endpoint="http://receiver.test:4318/", batch_max_age_s=60.0)
    events = _submit(sender, 3)
    assert sender.flush(FLUSH_S)
    request = receiver.requests[0]
    assert request.method == "POST"
    assert str(request.url) == "http://receiver.test:4318/v1/events"
    assert request.headers["Content-Encoding"] == "gzip"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Authorization"] == "Bearer k-123"
    assert request.headers["User-Agent"] == f"flowledger/{__version__}"
    assert json.loads(gzip.decompress(request.content)) == {"events": events}
    assert sender.stats()["sent"] == 3
    sender.shutdown(1.0)


def test_no_authorization_header_without_api_key(tmp_path: Path) -> None:
    """Without an api_key no Authorization header is sent."""
    receiver = MockReceiver()
    sender = _sender(tmp_path, receiver)
    _submit(sender, 1)
    assert sender.flush(FLUSH_S)
    assert "Authorization" not in receiver.requests[0].headers
    sender.shutdown(1.0)


def test_an_unusable_api_key_in_unvalidated_settings_is_never_sent_or_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Settings built directly with a key holding a newline: events go out without the header, and no log shows it."""
    receiver = MockReceiver()
    with caplog.at_level(logging.DEBUG, logger="flowledger"):
        sender = _sender(tmp_path, receiver, api_key="sekrit-55\n")
        _submit(sender, 2)
        assert sender.flush(FLUSH_S)
        sender.shutdown(1.0)
    assert "Authorization" not in receiver.requests[0].headers
    assert sender.stats()["sent"] == 2
    assert all("sekrit" not in record.getMessage() for record in caplog.records)


def test_batches_respect_item_limit(tmp_path: Path) -> None:
    """No request carries more than batch_max_items events, and every event is sent once."""
    receiver = MockReceiver()
    sender = _sender(tmp_path, receiver, batch_max_items=7)
    events = _submit(sender, 50)
    assert sender.flush(FLUSH_S)
    assert max(len(body) for body in receiver.bodies) <= 7
    assert sorted(receiver.event_ids()) == sorted(e["event_id"] for e in events)
    sender.shutdown(1.0)


def test_batches_respect_byte_limit(tmp_path: Path) -> None:
    """Batches are cut by batch_max_bytes using the sizes given to submit."""
    receiver = MockReceiver()
    sender = _sender(tmp_path, receiver, batch_max_bytes=1000)
    _submit(sender, 20)  # 300 bytes each: at most 3 per batch
    assert sender.flush(FLUSH_S)
    assert max(len(body) for body in receiver.bodies) <= 3
    assert len(receiver.event_ids()) == 20
    sender.shutdown(1.0)


def _worker_of(sender: Sender) -> threading.Thread | None:
    return sender._worker


def test_worker_is_started_lazily(tmp_path: Path) -> None:
    """No thread runs until the first event is submitted."""
    sender = Sender(make_settings(tmp_path), transport=MockReceiver().transport())
    assert _worker_of(sender) is None
    _submit(sender, 1)
    worker = _worker_of(sender)
    assert worker is not None
    assert worker.daemon
    sender.shutdown(1.0)


def test_an_event_after_a_quiet_spell_is_sent_by_its_age(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first event queued while the worker idles wakes it: it is sent at batch_max_age_s, not at the idle tick."""
    monkeypatch.setattr(sender_module, "IDLE_WAIT_S", 3600.0)
    receiver = MockReceiver()
    sender = _sender(tmp_path, receiver, batch_max_age_s=0.05)
    _submit(sender, 1)
    assert sender.flush(FLUSH_S)  # delivered; the worker now idles
    assert wait_until(lambda: not sender._wake.is_set())
    later = make_event(1)
    sender.submit(later, 300)
    assert wait_until(lambda: later["event_id"] in receiver.event_ids())  # a hang guard: the idle tick is an hour
    sender.shutdown(1.0)


def test_worker_suppresses_otel_instrumentation(tmp_path: Path) -> None:
    """Requests are made with OTel instrumentation suppressed, so the SDK never traces itself."""
    flags: list[object] = []
    key = otel_context._SUPPRESS_INSTRUMENTATION_KEY
    receiver = MockReceiver(seen=lambda request: flags.append(otel_context.get_value(key)))
    sender = _sender(tmp_path, receiver)
    _submit(sender, 1)
    assert sender.flush(FLUSH_S)
    assert flags == [True]
    assert otel_context.get_value(key) is None  # the caller's context is untouched
    sender.shutdown(1.0)


def test_5xx_is_retried_then_delivered(tmp_path: Path) -> None:
    """A 500 followed by a 200 delivers the batch once and counts one retry."""
    receiver = MockReceiver(script=[500])
    sender = _sender(tmp_path, receiver)
    events = _submit(sender, 4)
    assert sender.flush(FLUSH_S)
    assert receiver.event_ids() == [e["event_id"] for e in events]
    stats = sender.stats()
    assert (stats["sent"], stats["retries"], stats["spooled"]) == (4, 1, 0)
    sender.shutdown(1.0)


def test_backoff_is_exponential_with_full_jitter(tmp_path: Path) -> None:
    """Each retry waits a random time below a bound that doubles per attempt."""
    receiver = MockReceiver(script=[503, 503, 503, 503])
    sender = _sender(tmp_path, receiver, max_retries=4)
    _submit(sender, 1)
    assert sender.flush(FLUSH_S)
    assert len(sender.waits) == 4
    for attempt, wait in enumerate(sender.waits):
        assert 0.0 <= wait <= 0.1 * 2**attempt


def test_429_honours_retry_after(tmp_path: Path) -> None:
    """A 429 waits the Retry-After seconds before the retry."""
    receiver = MockReceiver(script=[429], headers={"Retry-After": "2"})
    sender = _sender(tmp_path, receiver)
    _submit(sender, 1)
    assert sender.flush(FLUSH_S)
    assert sender.waits == [2.0]
    assert sender.stats()["sent"] == 1
    sender.shutdown(1.0)


def test_retry_after_beyond_the_budget_spools_and_is_honoured_by_the_probe(tmp_path: Path) -> None:
    """A 429 asking for more time than a batch's retry budget: the batch is spooled at once, the next probe waits."""
    receiver = MockReceiver(script=[429] * 10, headers={"Retry-After": "3600"})
    sender = _sender(tmp_path, receiver, max_retries=5)
    events = _submit(sender, 2)
    assert wait_until(lambda: sender.stats()["spooled"] == 2)
    assert sender.waits == []
    assert len(receiver.requests) == 1
    assert sender._outage.down
    assert sender._outage.probe_at - time.monotonic() > 20.0  # Retry-After is capped to 30 s, then honoured
    assert [e["event_id"] for e in spooled_events(tmp_path / "spool")] == [e["event_id"] for e in events]
    sender.shutdown(1.0)


def test_retry_time_per_batch_is_bounded(tmp_path: Path) -> None:
    """However many retries are allowed, a failing batch's waits stay within the retry budget, then it is spooled."""
    receiver = MockReceiver(script=[429] * 1000, headers={"Retry-After": "1"})
    sender = _sender(tmp_path, receiver, max_retries=1000)
    _submit(sender, 1)
    assert wait_until(lambda: sender.stats()["spooled"] == 1)
    assert 0 < sum(sender.waits) <= Sender.retry_budget_s
    assert sender.stats()["retries"] == len(sender.waits) < 10
    sender.shutdown(1.0)


class _PatientSender(Sender):
    """A sender whose retry budget outlasts any test, so a batch stays in its backoff wait."""

    retry_budget_s = 3600.0


class _CountingEvent(ReentrantEvent):
    """The sender's wake-up event, counting its set() calls."""

    def __init__(self) -> None:
        super().__init__()
        self.sets = 0

    def set(self) -> None:
        self.sets += 1
        super().set()


def test_a_busy_worker_is_signalled_once_not_for_every_event(tmp_path: Path) -> None:
    """While the worker posts a batch, the full queue behind it wakes it once: later events find it already told."""
    posting = threading.Event()

    def hold(request: httpx.Request) -> None:
        posting.wait(FLUSH_S)

    receiver = MockReceiver(seen=hold)
    sender = _sender(tmp_path, receiver, batch_max_items=10)
    _submit(sender, 10)  # a full batch: the worker takes it and waits in its post
    assert wait_until(lambda: len(receiver.requests) == 1)
    sender._wake = wake = _CountingEvent()
    _submit(sender, 50)  # every one of these finds the queue at a full batch or more
    assert wake.sets == 1
    posting.set()
    assert sender.flush(FLUSH_S)
    assert len(receiver.event_ids()) == 60
    sender.shutdown(1.0)


def test_queue_past_high_water_is_spooled_while_a_batch_waits(tmp_path: Path) -> None:
    """While a batch waits out a Retry-After, a queue passing its high-water mark is spooled, not dropped."""
    receiver = MockReceiver(script=[429] * 10, headers={"Retry-After": "30"})
    settings = make_settings(tmp_path / "spool", queue_max_items=100, max_retries=5)
    sender = _PatientSender(settings, transport=receiver.transport())
    first = _submit(sender, 1)
    assert wait_until(lambda: len(receiver.requests) == 1 and sender._outage.failing)
    later = [make_event(i, index=i) for i in range(1, 61)]  # past the high-water mark of 50
    for event in later:
        sender.submit(event, 300)
    assert wait_until(lambda: sender.stats()["spooled"] >= 50)  # a hang guard: the batch waits 30 s
    stats = sender.stats()
    assert stats["queued"] < 50
    assert (stats["queued"] + stats["spooled"], stats["dropped"], stats["sent"]) == (60, 0, 0)
    assert not sender.shutdown(1.0)  # ends the wait; the waiting batch and the rest of the queue are spooled too
    assert sender.stats()["spooled"] == 61
    spooled = sorted(e["event_id"] for e in spooled_events(tmp_path / "spool"))
    assert spooled == sorted(e["event_id"] for e in first + later)


def test_exhausted_retries_spool_the_batch(tmp_path: Path) -> None:
    """After max_retries failures the batch is written to the spool, nothing is lost."""
    receiver = MockReceiver(script=[500] * 10)
    sender = _sender(tmp_path, receiver, max_retries=2)
    events = _submit(sender, 5)
    assert not sender.flush(FLUSH_S)
    stats = sender.stats()
    assert (stats["sent"], stats["spooled"], stats["retries"]) == (0, 5, 2)
    assert [e["event_id"] for e in spooled_events(tmp_path / "spool")] == [e["event_id"] for e in events]
    sender.shutdown(1.0)


def test_other_4xx_is_spooled_without_retry(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A 401 is not retried in a loop: the batch is spooled and the problem logged once."""
    receiver = MockReceiver(script=[401, 401, 401, 401])
    sender = _sender(tmp_path, receiver, max_retries=3)
    with caplog.at_level(logging.WARNING, logger="flowledger"):
        _submit(sender, 2)
        assert not sender.flush(FLUSH_S)
        _submit(sender, 2)
        assert not sender.flush(FLUSH_S)
    assert sender.stats()["retries"] == 0
    assert sender.stats()["spooled"] == 4
    assert sum("401" in r.getMessage() for r in caplog.records) == 1
    sender.shutdown(1.0)


def test_413_splits_and_sets_aside_the_offender(tmp_path: Path) -> None:
    """A 413 splits the batch in halves; the one event still too large is set aside, the rest arrive."""
    receiver = MockReceiver(too_large=lambda events: any(e["data"].get("big") for e in events))
    sender = _sender(tmp_path, receiver, batch_max_items=100)
    events = _submit(sender, 9)
    big = make_event(9, big=True)
    sender.submit(big, 300)
    events += _submit(sender, 6)
    assert not sender.flush(FLUSH_S)
    assert sorted(receiver.event_ids()) == sorted(e["event_id"] for e in events)
    stats = sender.stats()
    assert (stats["sent"], stats["dropped_too_large"], stats["dropped"]) == (15, 1, 1)
    kept = list((tmp_path / "spool" / "rejected").iterdir())
    assert [json.loads(p.read_text())["event_id"] for p in kept] == [big["event_id"]]
    sender.shutdown(1.0)


def test_partial_rejection_is_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Events the receiver rejects in a 200 answer count as rejected, the rest as sent; logged once; a flush
    during which some were rejected says not everything went out."""
    receiver = MockReceiver(rejected=lambda events: [e for e in events if e["data"]["index"] % 2])
    sender = _sender(tmp_path, receiver)
    with caplog.at_level(logging.WARNING, logger="flowledger"):
        _submit(sender, 6)
        assert not sender.flush(FLUSH_S)
        _submit(sender, 6)
        assert not sender.flush(FLUSH_S)
        assert sender.flush(FLUSH_S)  # nothing new refused: the flush is clean again
    stats = sender.stats()
    assert (stats["sent"], stats["rejected"]) == (6, 6)
    assert sum("rejected" in r.getMessage() for r in caplog.records) == 1
    sender.shutdown(1.0)


@pytest.mark.parametrize("bound", [{"queue_max_items": 3}, {"queue_max_bytes": 1000}])
def test_a_full_queue_spills_to_the_spool_and_the_sender_delivers_it(tmp_path: Path, bound: dict[str, int]) -> None:
    """Past queue_max_items or queue_max_bytes the queue goes to the spool, not away; the same sender replays it."""
    with recorder() as rec:
        sender = Sender(make_settings(tmp_path / "spool", rec.url, batch_max_age_s=60.0, **bound))
        events = _submit(sender, 5)  # 300 bytes each: the fourth finds the queue full
        assert wait_until(lambda: sender.stats()["spooled"] == 3)
        stats = sender.stats()
        assert (stats["enqueued"], stats["dropped"], stats["queued"]) == (5, 0, 2)
        assert sender.flush(FLUSH_S)
        assert sorted(rec.event_ids()) == sorted(e["event_id"] for e in events)
        assert sender.stats()["replayed"] == 3
        assert spooled_events(tmp_path / "spool") == []
        sender.shutdown(1.0)


def test_a_run_finished_is_kept_when_the_spool_cannot_take_a_full_queue(tmp_path: Path) -> None:
    """A full queue meeting a full spool drops its events, counted, but keeps its run_finished for the receiver."""
    with recorder() as rec:
        sender = Sender(make_settings(tmp_path / "spool", rec.url, batch_max_age_s=60.0, queue_max_items=3))
        sender._spool.max_bytes = 1  # no file fits
        events = [make_event(0), {**make_event(1), "kind": "run_finished"}, make_event(2), make_event(3)]
        for event in events:
            sender.submit(event, 300)
        assert wait_until(lambda: sender.stats()["dropped_spool_full"] == 2)
        assert sender.flush(FLUSH_S)
        assert rec.event_ids() == [events[3]["event_id"], events[1]["event_id"]]
        assert sender.stats()["dropped"] == 2
        sender.shutdown(1.0)


@pytest.mark.parametrize("timeout_s", [None, float("inf"), 1e10, pytest.param(10**400, id="int-past-float")], ids=str)
def test_flush_and_shutdown_take_none_and_huge_timeouts_as_until_done(tmp_path: Path, timeout_s: Any) -> None:
    """flush(None), flush(inf) and shutdown(1e10) wait until done instead of failing at once (OverflowError)."""
    with recorder() as rec:
        sender = Sender(make_settings(tmp_path / "spool", rec.url, batch_max_age_s=60.0))
        first = _submit(sender, 3)
        assert sender.flush(timeout_s)
        assert rec.event_ids() == [e["event_id"] for e in first]
        second = _submit(sender, 3)
        assert sender.shutdown(timeout_s)
        assert rec.event_ids() == [e["event_id"] for e in first + second]
        assert sender.stats()["failures"] == 0


def test_flush_refuses_a_timeout_that_is_not_a_number(tmp_path: Path) -> None:
    """flush("5") is a mistake of the caller's: UsageError, with what to pass instead."""
    sender = Sender(make_settings(tmp_path / "spool"))
    with pytest.raises(UsageError, match="number of seconds, or None"):
        sender.flush("5")  # type: ignore[arg-type]
    sender.shutdown(0.0)


def test_an_event_orjson_refuses_is_sent_cleaned_as_captured(tmp_path: Path) -> None:
    """An event holding values orjson refuses goes out converted as capture converts values, not dropped."""
    receiver = MockReceiver()
    sender = _sender(tmp_path, receiver)
    good = _submit(sender, 3)
    odd = make_event(3, thing=object(), text="lone \ud800 surrogate", huge=2**70)
    sender.submit(odd, 300)
    assert sender.flush(FLUSH_S)
    assert sorted(receiver.event_ids()) == sorted(e["event_id"] for e in [*good, odd])
    sent = next(e for body in receiver.bodies for e in body if e["event_id"] == odd["event_id"])
    assert sent["kind"] == odd["kind"]
    assert sent["seq"] == odd["seq"]
    assert "object object at" in json.dumps(sent["data"]["thing"])
    assert sent["data"]["text"] == "lone \ufffd surrogate"
    assert sent["data"]["huge"] != 2**70  # a marker: orjson cannot carry it as a number
    assert sender.stats()["dropped_unserializable"] == 0
    sender.shutdown(1.0)


class _Unrepresentable:
    """A value even capture cannot convert: its repr raises."""

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def test_an_event_even_capture_cannot_convert_is_dropped_alone(tmp_path: Path) -> None:
    """When cleaning fails too, that event is dropped and counted; its batch-mates still go."""
    receiver = MockReceiver()
    sender = _sender(tmp_path, receiver)
    good = _submit(sender, 3)
    sender.submit(make_event(3, value=_Unrepresentable()), 300)
    sender.flush(FLUSH_S)
    assert sorted(receiver.event_ids()) == sorted(e["event_id"] for e in good)
    assert sender.stats()["dropped_unserializable"] == 1
    sender.shutdown(1.0)


def test_internal_error_is_counted_not_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An unexpected error in the transport is counted in failures, logged once (its type, not its text, which may
    quote a header), and the batch kept."""
    calls = {"n": 0}

    def broken(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        raise RuntimeError("boom")

    sender = RecordingSender(make_settings(tmp_path / "spool"), transport=httpx.MockTransport(broken))
    with caplog.at_level(logging.WARNING, logger="flowledger"):
        _submit(sender, 2)
        sender.flush(FLUSH_S)
        _submit(sender, 2)
        sender.flush(FLUSH_S)
    stats = sender.stats()
    assert stats["failures"] >= 2
    assert stats["spooled"] == 4
    assert sum("RuntimeError raised at" in r.getMessage() for r in caplog.records) == 1
    assert not any("boom" in r.getMessage() for r in caplog.records)
    sender.shutdown(1.0)


def test_many_threads_lose_nothing(tmp_path: Path) -> None:
    """16 threads submitting concurrently: every event arrives exactly once."""
    receiver = MockReceiver()
    sender = _sender(tmp_path, receiver, batch_max_items=64)
    ids: list[str] = []
    lock = threading.Lock()

    def produce() -> None:
        mine = [make_event(i) for i in range(250)]
        for event in mine:
            sender.submit(event, 300)
        with lock:
            ids.extend(e["event_id"] for e in mine)

    threads = [threading.Thread(target=produce) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sender.flush(FLUSH_S)
    assert sorted(receiver.event_ids()) == sorted(ids)
    assert len(set(ids)) == 16 * 250
    assert sender.stats()["enqueued"] == sender.stats()["sent"] == 4000
    sender.shutdown(1.0)


def test_flush_and_shutdown_are_idempotent(tmp_path: Path) -> None:
    """flush and shutdown can be called again; submit after shutdown drops and counts."""
    receiver = MockReceiver()
    sender = _sender(tmp_path, receiver)
    _submit(sender, 2)
    assert sender.flush(FLUSH_S)
    assert sender.flush(FLUSH_S)
    assert sender.shutdown(1.0)
    assert sender.shutdown(1.0)
    assert sender.flush(0.1)
    _submit(sender, 1)
    assert sender.stats()["dropped_closed"] == 1
    assert len(receiver.event_ids()) == 2


def test_shutdown_spools_what_it_could_not_send(tmp_path: Path) -> None:
    """With the receiver failing, shutdown returns within its budget and spools queued and in-flight events."""
    receiver = MockReceiver(script=[503] * 100)
    sender = _sender(tmp_path, receiver, batch_max_items=10, max_retries=50)
    events = _submit(sender, 35)
    assert not sender.shutdown(0.2)
    spooled = spooled_events(tmp_path / "spool")
    assert sorted(e["event_id"] for e in spooled) == sorted(e["event_id"] for e in events)
    assert sender.stats()["spooled"] == 35


def test_shutdown_retries_within_its_budget(tmp_path: Path) -> None:
    """A 503 at exit is retried inside the shutdown budget, so the events are delivered, not spooled."""
    receiver = MockReceiver(script=[503])
    sender = Sender(make_settings(tmp_path / "spool", batch_max_age_s=60.0), transport=receiver.transport())
    events = _submit(sender, 3)
    assert sender.shutdown(5.0)
    assert receiver.event_ids() == [e["event_id"] for e in events]
    assert sender.stats()["spooled"] == 0


def test_exit_waits_for_a_queue_being_spooled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Shutdown waits for a spool write begun (as long as its estimate), so none of the queue spilled is lost."""
    receiver = MockReceiver(script=[429] * 10, headers={"Retry-After": "30"})
    settings = make_settings(tmp_path / "spool", queue_max_items=100, max_retries=5)
    sender = _PatientSender(settings, transport=receiver.transport())
    first = _submit(sender, 1)
    assert wait_until(lambda: len(receiver.requests) == 1 and sender._outage.failing)
    writing, release = threading.Event(), threading.Event()
    order: list[str] = []
    real_write = sender._spool.write

    def slow_write(events: list[dict[str, Any]], **kwargs: Any) -> SpoolResult:
        if not writing.is_set():
            writing.set()
            release.wait(FLUSH_S)
        result = real_write(events, **kwargs)
        order.append("write")
        return result

    monkeypatch.setattr(sender._spool, "write", slow_write)
    for _ in range(10):
        sender._spool.observe_write(100, 1.0)  # this machine writes the spool slowly: the write is waited for
    later = [make_event(i, index=i) for i in range(1, 61)]
    for event in later:
        sender.submit(event, 300)
    assert writing.wait(FLUSH_S)
    closer = threading.Thread(target=lambda: order.append(f"shutdown {sender.shutdown(0.0)}"))
    closer.start()
    time.sleep(0.2)  # time for a shutdown that does not wait to return first (no threshold: the order is checked)
    release.set()
    closer.join(FLUSH_S)
    assert order[-1] == "shutdown False"
    stats = sender.stats()
    assert (stats["spooled"], stats["dropped"]) == (61, 0)
    spooled = sorted(e["event_id"] for e in spooled_events(tmp_path / "spool"))
    assert spooled == sorted(e["event_id"] for e in first + later)


def test_shutdown_keeps_the_time_the_spool_write_needs(tmp_path: Path) -> None:
    """When writing what is queued would take the whole exit budget, shutdown spools it rather than sending."""
    receiver = MockReceiver(script=[503])
    sender = Sender(make_settings(tmp_path / "spool", batch_max_age_s=60.0), transport=receiver.transport())
    for _ in range(10):
        sender._spool.observe_write(100, 1.0)  # this machine writes the spool very slowly
    events = _submit(sender, 3)
    assert not sender.shutdown(5.0)
    assert sender.stats()["spooled"] == 3
    assert sorted(e["event_id"] for e in spooled_events(tmp_path / "spool")) == sorted(e["event_id"] for e in events)


def test_large_spool_file_is_replayed_in_batches(tmp_path: Path) -> None:
    """A spool file bigger than a batch (as an exit writes them) is posted in batch_max_items pieces."""
    old = [make_event(i) for i in range(25)]
    Spool(tmp_path / "spool", 10**6).write(old)
    receiver = MockReceiver()
    sender = _sender(tmp_path, receiver, batch_max_items=10)
    assert sender.flush(FLUSH_S)
    assert [len(body) for body in receiver.bodies] == [10, 10, 5]
    assert receiver.event_ids() == [e["event_id"] for e in old]
    assert sender.stats()["replayed"] == 25
    assert spooled_events(tmp_path / "spool") == []
    sender.shutdown(1.0)


def test_partly_replayed_file_keeps_only_the_rest(tmp_path: Path) -> None:
    """When the receiver fails part-way through a large spool file, only the undelivered events stay spooled."""
    old = [make_event(i) for i in range(25)]
    Spool(tmp_path / "spool", 10**6).write(old)
    receiver = MockReceiver(script=[200, 503, 503])
    sender = _sender(tmp_path, receiver, batch_max_items=10, max_retries=0)
    assert not sender.flush(FLUSH_S)
    assert receiver.event_ids() == [e["event_id"] for e in old[:10]]
    assert sorted(e["event_id"] for e in spooled_events(tmp_path / "spool")) == sorted(e["event_id"] for e in old[10:])
    sender.shutdown(1.0)


def test_shutdown_without_events_is_instant(tmp_path: Path) -> None:
    """A sender that never got an event shuts down without starting a thread."""
    sender = Sender(make_settings(tmp_path))
    assert sender.shutdown(5.0)
    assert sender._worker is None


def test_spool_cap_counts_dropped_spool_full(tmp_path: Path) -> None:
    """When the spool is at spool_max_bytes, undeliverable events are dropped and counted; the spool never grows."""
    receiver = MockReceiver(script=[500] * 100)
    sender = _sender(tmp_path, receiver, spool_max_bytes=1200, max_retries=0, batch_max_items=5)
    _submit(sender, 40)
    sender.flush(FLUSH_S)
    sender.shutdown(1.0)
    stats = sender.stats()
    assert stats["dropped_spool_full"] > 0
    assert stats["spooled"] + stats["dropped_spool_full"] == 40
    assert Spool(tmp_path / "spool", 1200).size_bytes() <= 1200


def test_spool_is_replayed_on_start(tmp_path: Path) -> None:
    """Batches a previous process spooled are sent by the next sender and deleted."""
    old = [make_event(i) for i in range(8)]
    spool = Spool(tmp_path / "spool", 10**6)
    spool.write(old[:4])
    spool.write(old[4:])
    receiver = MockReceiver()
    sender = _sender(tmp_path, receiver)
    assert sender.flush(FLUSH_S)
    assert receiver.event_ids() == [e["event_id"] for e in old]
    assert sender.stats()["replayed"] == 8
    assert spool.ready_names() == []
    sender.shutdown(1.0)


def test_replay_when_the_receiver_answers_again(tmp_path: Path) -> None:
    """Events spooled during an outage are replayed once the receiver answers again, without a flush."""
    receiver = MockReceiver(down=True)
    sender = _sender(tmp_path, receiver, max_retries=1)
    first = _submit(sender, 3)
    assert wait_until(lambda: sender.stats()["spooled"] == 3)
    receiver.down = False
    second = _submit(sender, 2)  # this batch (or an earlier probe) succeeds, which starts a replay
    assert wait_until(lambda: sender.stats()["replayed"] == 3 and sender.stats()["sent"] == 5)
    assert sorted(receiver.event_ids()) == sorted(e["event_id"] for e in first + second)
    assert spooled_events(tmp_path / "spool") == []
    sender.shutdown(1.0)


def test_idle_sender_probes_and_replays_when_the_receiver_returns(tmp_path: Path) -> None:
    """With no new events, a sender holding a spool probes the receiver now and then and replays once it is back."""
    receiver = MockReceiver(down=True)
    sender = _sender(tmp_path, receiver, max_retries=0)
    events = _submit(sender, 3)
    assert wait_until(lambda: sender.stats()["spooled"] == 3)
    receiver.down = False
    assert wait_until(lambda: sender.stats()["replayed"] == 3)
    assert sorted(receiver.event_ids()) == sorted(e["event_id"] for e in events)
    sender.shutdown(1.0)


def test_corrupt_spool_file_is_moved_aside(tmp_path: Path) -> None:
    """An unreadable spool file goes to corrupt/ and is counted; good files are still replayed."""
    spool_dir = tmp_path / "spool"
    spool = Spool(spool_dir, 10**6)
    good = [make_event(i) for i in range(3)]
    spool.write(good)
    (spool_dir / "00000000-0000-7000-8000-000000000000.json.gz").write_bytes(b"not gzip")
    receiver = MockReceiver()
    sender = _sender(tmp_path, receiver)
    assert sender.flush(FLUSH_S)
    assert receiver.event_ids() == [e["event_id"] for e in good]
    assert [p.name for p in (spool_dir / "corrupt").iterdir()] == ["00000000-0000-7000-8000-000000000000.json.gz"]
    assert sender.stats()["spool_corrupt"] == 1
    sender.shutdown(1.0)


def test_stats_has_every_counter(tmp_path: Path) -> None:
    """stats() always reports every counter, one dropped_<reason> per reason."""
    stats = Sender(make_settings(tmp_path)).stats()
    expected = {"enqueued", "sent", "dropped", "spooled", "replayed", "retries", "failures", "rejected"}
    expected |= {f"dropped_{reason}" for reason in DropReason}
    expected |= {"spans_sent", "spans_dropped"}
    assert expected <= set(stats)
    assert all(value == 0 for value in stats.values())


def test_unwritable_spool_counts_spool_error(tmp_path: Path) -> None:
    """When the spool folder cannot be written, undeliverable events count as dropped_spool_error, nothing raises."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    receiver = MockReceiver(down=True)
    sender = RecordingSender(make_settings(blocker / "spool", max_retries=0), transport=receiver.transport())
    _submit(sender, 4)
    assert not sender.shutdown(1.0)
    stats = sender.stats()
    assert (stats["dropped_spool_error"], stats["spooled"]) == (4, 0)


def test_explicit_replay_sends_the_spool(tmp_path: Path) -> None:
    """replay() delivers what waits in the spool without any new event."""
    old = [make_event(i) for i in range(3)]
    Spool(tmp_path / "spool", 10**6).write(old)
    receiver = MockReceiver()
    sender = _sender(tmp_path, receiver)
    sender.replay()
    assert wait_until(lambda: sender.stats()["replayed"] == 3)
    assert receiver.event_ids() == [e["event_id"] for e in old]
    sender.shutdown(1.0)


def test_drops_are_logged_once_per_reason(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Many drops of one reason produce one log record, not a storm."""
    sender = _sender(tmp_path, MockReceiver(), batch_max_age_s=60.0)
    sender.shutdown(1.0)
    with caplog.at_level(logging.WARNING, logger="flowledger"):
        _submit(sender, 50)
    assert sender.stats()["dropped_closed"] == 50
    assert len([r for r in caplog.records if "closed" in r.getMessage()]) == 1


@pytest.mark.parametrize(
    ("header", "expected"),
    [("3", 3.0), ("0.5", 0.5), ("-4", 0.0), ("99999", 30.0), ("soon", None), ("", None), (None, None)],
)
def test_retry_after_parsing(header: str | None, expected: float | None) -> None:
    """Retry-After seconds are honoured, clamped to [0, 30] s; garbage is ignored."""
    assert parse_retry_after(header) == expected


def test_retry_after_http_date() -> None:
    """A Retry-After HTTP date in the past means no wait; one far ahead is capped."""
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert parse_retry_after("Fri, 01 Jan 2100 00:00:00 GMT") == 30.0


def test_submit_never_raises_on_bad_input(tmp_path: Path) -> None:
    """A size that is not a number is counted as an internal failure; submit still returns normally."""
    sender = _sender(tmp_path, MockReceiver())
    sender.submit(make_event(), "big")  # type: ignore[arg-type]
    assert sender.stats()["failures"] == 1
    sender.shutdown(1.0)


def test_replayed_counts_only_what_the_receiver_took(tmp_path: Path) -> None:
    """Replayed events the receiver rejects count as rejected, not replayed; the file is still done with."""
    Spool(tmp_path / "spool", 10**6).write([make_event(i, index=i) for i in range(4)])
    receiver = MockReceiver(rejected=lambda events: [e for e in events if e["data"]["index"] % 2])
    sender = _sender(tmp_path, receiver)
    assert not sender.flush(FLUSH_S)  # two of them will never be stored
    stats = sender.stats()
    assert (stats["replayed"], stats["rejected"], stats["sent"]) == (2, 2, 2)
    assert spooled_events(tmp_path / "spool") == []
    sender.shutdown(1.0)
