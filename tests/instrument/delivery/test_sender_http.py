"""The sender over a real socket, against a recording receiver on 127.0.0.1."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

import pytest

from flowledger.instrument.delivery._sender import Sender
from tests.instrument.delivery._sender_support import (
    CLOSE,
    HANG,
    RecordingSender,
    closed_port_url,
    make_event,
    make_settings,
    recorder,
    spooled_events,
    wait_until,
)

FLUSH_S = 10.0


def _submit(sender: Sender, count: int, start: int = 0) -> list[str]:
    events = [make_event(i, index=i) for i in range(start, start + count)]
    for event in events:
        sender.submit(event, 300)
    return [e["event_id"] for e in events]


def _sender(tmp_path: Path, url: str, **changes: Any) -> RecordingSender:
    return RecordingSender(make_settings(tmp_path / "spool", url, **changes))


def test_delivers_to_a_real_receiver(tmp_path: Path) -> None:
    """Events reach a real HTTP receiver, each exactly once."""
    with recorder() as rec:
        sender = _sender(tmp_path, rec.url, batch_max_items=50)
        ids = _submit(sender, 200)
        assert sender.flush(FLUSH_S)
        assert sorted(rec.event_ids()) == sorted(ids)
        assert sender.shutdown(1.0)


def test_refused_connection_spools(tmp_path: Path) -> None:
    """A receiver that refuses connections: the batch is retried, then spooled."""
    sender = _sender(tmp_path, closed_port_url(), max_retries=2)
    ids = _submit(sender, 5)
    assert not sender.flush(FLUSH_S)
    stats = sender.stats()
    assert (stats["retries"], stats["spooled"], stats["sent"]) == (2, 5, 0)
    assert [e["event_id"] for e in spooled_events(tmp_path / "spool")] == ids
    sender.shutdown(1.0)


def test_500_then_200(tmp_path: Path) -> None:
    """A real 500 answer is retried and the next 200 delivers the batch."""
    with recorder([500]) as rec:
        sender = _sender(tmp_path, rec.url)
        ids = _submit(sender, 3)
        assert sender.flush(FLUSH_S)
        assert rec.event_ids() == ids
        assert sender.stats()["retries"] == 1
        sender.shutdown(1.0)


def test_429_with_retry_after(tmp_path: Path) -> None:
    """A real 429 with Retry-After: 1 sets the wait before the retry to one second, then delivers."""
    with recorder([429]) as rec:
        rec.retry_after = "1"
        sender = _sender(tmp_path, rec.url)
        ids = _submit(sender, 2)
        assert sender.flush(FLUSH_S)
        assert sender.waits == [1.0]
        assert rec.event_ids() == ids
        sender.shutdown(1.0)


def test_hang_past_the_timeout_is_retried(tmp_path: Path) -> None:
    """A receiver that hangs past request_timeout_s times out; the retry delivers."""
    with recorder([HANG]) as rec:
        sender = _sender(tmp_path, rec.url, request_timeout_s=2.0)  # the retry must beat it, busy or not
        ids = _submit(sender, 2)
        assert sender.flush(FLUSH_S)
        assert rec.event_ids() == ids
        assert sender.stats()["retries"] == 1
        sender.shutdown(1.0)


class _BudgetedSender(RecordingSender):
    """A sender with a one-second retry budget per batch."""

    retry_budget_s = 1.0


def test_hanging_receiver_costs_a_batch_its_retry_budget_only(tmp_path: Path) -> None:
    """A receiver hanging every request: the batch is spooled once its retry budget is spent, not after all retries."""
    with recorder([HANG] * 200) as rec:
        sender = _BudgetedSender(make_settings(tmp_path / "spool", rec.url, request_timeout_s=0.3, max_retries=100))
        ids = _submit(sender, 3)
        assert wait_until(lambda: sender.stats()["spooled"] == 3)  # a hang guard: all retries would take 30 s
        assert sender.stats()["retries"] < 100
        assert [e["event_id"] for e in spooled_events(tmp_path / "spool")] == ids
        sender.shutdown(1.0)


def test_connection_closed_mid_request_is_retried(tmp_path: Path) -> None:
    """A receiver that closes the connection without answering is retried; nothing is lost."""
    with recorder([CLOSE]) as rec:
        sender = _sender(tmp_path, rec.url)
        ids = _submit(sender, 4)
        assert sender.flush(FLUSH_S)
        assert rec.event_ids() == ids
        assert sender.stats()["retries"] == 1
        sender.shutdown(1.0)


def test_413_splitting_over_http(tmp_path: Path) -> None:
    """A real receiver answering 413 for batches over 3 events gets them all, in smaller batches."""
    with recorder() as rec:
        rec.too_large = lambda events: len(events) > 3
        sender = _sender(tmp_path, rec.url, batch_max_items=20)
        ids = _submit(sender, 20)
        assert sender.flush(FLUSH_S)
        assert sorted(rec.event_ids()) == sorted(ids)
        assert sender.stats()["dropped"] == 0
        sender.shutdown(1.0)


def test_partial_rejection_over_http(tmp_path: Path) -> None:
    """A real receiver rejecting two events of a batch: the others count as sent."""
    with recorder() as rec:
        rec.rejected_index = {1, 3}
        sender = _sender(tmp_path, rec.url)
        _submit(sender, 5)
        assert not sender.flush(FLUSH_S)  # not everything went out: two will never be stored
        stats = sender.stats()
        assert (stats["sent"], stats["rejected"]) == (3, 2)
        sender.shutdown(1.0)


def test_shutdown_with_hanging_receiver_spools_in_flight_batch(tmp_path: Path) -> None:
    """Shutdown while a request hangs spools the in-flight batch and the queue, within its budget."""
    with recorder([HANG]) as rec:
        sender = _sender(tmp_path, rec.url, request_timeout_s=5.0, batch_max_items=10)
        ids = _submit(sender, 25)
        assert rec.hanging.wait(5.0)
        assert not sender.shutdown(0.2)
        assert sorted(e["event_id"] for e in spooled_events(tmp_path / "spool")) == sorted(ids)


def test_exit_spools_in_flight_and_queued_events_as_one_file(tmp_path: Path) -> None:
    """At exit, everything still in memory goes to the spool in a single file, not one file per batch."""
    with recorder([HANG]) as rec:
        sender = _sender(tmp_path, rec.url, request_timeout_s=5.0, batch_max_items=10)
        ids = _submit(sender, 45)
        assert rec.hanging.wait(5.0)
        assert not sender.shutdown(0.2)
        files = list((tmp_path / "spool").glob("*.json.gz"))
        assert len(files) == 1
        assert sorted(e["event_id"] for e in spooled_events(tmp_path / "spool")) == sorted(ids)


def test_replay_after_outage_reaches_the_receiver(tmp_path: Path) -> None:
    """Spooled during an outage (503s), replayed exactly once when the receiver recovers."""
    with recorder([503, 503, 503]) as rec:
        sender = _sender(tmp_path, rec.url, max_retries=2)
        first = _submit(sender, 4)
        assert not sender.flush(FLUSH_S)
        second = _submit(sender, 3, start=4)
        assert sender.flush(FLUSH_S)
        assert sorted(rec.event_ids()) == sorted(first + second)
        assert sender.stats()["replayed"] == 4
        sender.shutdown(1.0)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_child_gets_a_fresh_worker(tmp_path: Path) -> None:
    """After fork the child has its own queue, worker and client; its events arrive, the parent's only once."""
    with recorder() as rec:
        sender = _sender(tmp_path, rec.url, batch_max_age_s=30.0)
        parent_ids = _submit(sender, 3)  # queued in the parent, not yet sent
        parent_worker, parent_client = sender._worker, sender._client
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 1
            try:
                fresh = sender._worker is None and sender.stats()["queued"] == 0
                child_ids = _submit(sender, 2, start=100)
                ok = sender.flush(5.0) and sender._worker is not parent_worker
                ok = ok and sender._client is not None and sender._client is not parent_client
                with open(tmp_path / "child.txt", "w") as fh:
                    fh.write("\n".join(child_ids))
                code = 0 if (fresh and ok) else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        child_ids = (tmp_path / "child.txt").read_text().split("\n")
        assert sender.flush(FLUSH_S)
        assert sorted(rec.event_ids()) == sorted(parent_ids + child_ids)
        sender.shutdown(1.0)


def test_each_reason_a_real_receiver_rejects_for_is_logged_once_with_a_hint_for_unknown_fields(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Events a receiver does not know (a kind or a cost field of a newer SDK, as an older receiver sees them) are
    each reason logged once, saying the receiver may be older than the SDK; the rest is delivered."""
    from flowledger._wire import new_event_id
    from flowledger.receiver._config import ReceiverConfig
    from tests.receiver._support import RunEvents, start_receiver

    live = start_receiver(ReceiverConfig(db_path=tmp_path / "r.db", sweep_interval_s=0))
    try:
        sender = _sender(tmp_path, live.url)
        with caplog.at_level(logging.WARNING, logger="flowledger"):
            for _ in range(2):
                run = RunEvents().start().node("a", cost={"usd": 0.01}).finish()
                unknown_kind = {**run.events[-1], "event_id": new_event_id(), "kind": "run_paused"}
                node_finished = run.events[-2]
                assert node_finished["kind"] == "node_finished"
                node_finished["data"]["cost"]["from_the_future"] = 1
                for event in [*run.events, unknown_kind]:
                    sender.submit(event, 500)
                assert not sender.flush(FLUSH_S)  # what was refused will never be stored
        stats = sender.stats()
        assert (stats["sent"], stats["rejected"]) == (2 * (len(run.events) - 1), 4)
        messages = [r.getMessage() for r in caplog.records if "rejected" in r.getMessage()]
        assert len(messages) == 2, messages  # two reasons, each once, though each came twice
        assert all("older than this SDK" in m for m in messages), messages
        assert any("run_paused" in m for m in messages)
        assert any("from_the_future" in m for m in messages)
        sender.shutdown(1.0)
    finally:
        live.stop()
