"""Events written out off the hot path: the same event for every sink, from a snapshot taken on the caller's thread."""

from __future__ import annotations

import gc
import json
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import flowledger
from flowledger._wire import EventKind
from flowledger.instrument._pending import PendingEvent, stamped
from flowledger.instrument._pipeline import _create, pipeline
from flowledger.testing import memory_sink


@pytest.fixture
def restore_pipeline() -> Iterator[None]:
    """The settings in force before the test come back after it, its sinks shut down."""
    before = pipeline().settings
    yield
    flowledger.shutdown(0.5)
    _create(before)


def _jsonl_events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_every_sink_gets_the_same_event_written_once(tmp_path: Path, restore_pipeline: None) -> None:
    """A sink's worker writes a pending event out; a sink that takes dicts gets the same one: same ids, same order."""
    path = tmp_path / "events.jsonl"
    flowledger.configure(sinks=f"jsonl:{path},memory", spool_dir=tmp_path / "spool")

    @flowledger.node
    def double(x: int) -> int:
        return 2 * x

    with flowledger.run("pending"):
        for i in range(5):
            double(i)
    assert flowledger.flush(10.0)
    memory = memory_sink()
    assert memory is not None
    written = _jsonl_events(path)
    assert [e["event_id"] for e in written] == [e["event_id"] for e in memory.all]
    assert [e["producer_seq"] for e in written] == sorted(e["producer_seq"] for e in written)
    assert [e["seq"] for e in written] == list(range(len(written)))
    finished = [e for e in written if e["kind"] == EventKind.NODE_FINISHED.value]
    assert [e["data"]["output"] for e in finished] == [0, 2, 4, 6, 8]
    assert all(e["data"]["input"] == i for i, e in enumerate(finished))


def test_payloads_are_taken_when_the_call_ends_not_when_the_event_is_written(
    tmp_path: Path, restore_pipeline: None
) -> None:
    """Changing a node's input or output after the call, or setting an output after it ended, reaches no record."""
    path = tmp_path / "events.jsonl"
    flowledger.configure(sinks=f"jsonl:{path}", spool_dir=tmp_path / "spool", batch_max_age_s=5.0)
    lines = [1, 2]
    order: dict[str, Any] = {"id": 1, "lines": lines, "auth": {"password": "hunter2"}}

    @flowledger.node
    def price(o: dict[str, Any]) -> dict[str, Any]:
        return {"total": sum(o["lines"]), "of": o["lines"]}

    with flowledger.run("snapshot"):
        with flowledger.instrument.attempt("late", input=1) as late:
            late.set_output("kept")
        late.set_output("too late")
        result = price(order)
        lines.append(3)  # still queued: the worker has not written the event yet
        result["total"] = -1
    assert flowledger.flush(10.0)
    finished = {e["data"]["node_id"]: e["data"] for e in _jsonl_events(path) if e["kind"] == "node_finished"}
    assert finished["late"]["output"] == "kept"
    assert finished["price"]["input"] == {"id": 1, "lines": [1, 2], "auth": {"password": "[REDACTED]"}}
    assert finished["price"]["output"] == {"total": 3, "of": [1, 2]}


def test_a_pending_event_is_written_once_with_its_envelope() -> None:
    """event() makes the wire's dict on the first call (data made by a callable) and returns it again after."""
    made: list[int] = []

    def data() -> dict[str, Any]:
        made.append(1)
        return {"node_id": "a"}

    pending = PendingEvent(EventKind.NODE_FINISHED, "run-1", 3, "producer", 7, 1_700_000_000_123_456_789, "p", data)
    event = pending.event()
    assert pending.event() is event
    assert made == [1]
    assert event["ts"] == "2023-11-14T22:13:20.123456Z"
    assert (event["kind"], event["run_id"], event["seq"], event["producer_seq"]) == ("node_finished", "run-1", 3, 7)
    assert (event["producer_id"], event["project"], event["data"]) == ("producer", "p", {"node_id": "a"})
    assert stamped([pending, {"plain": True}]) == [event, {"plain": True}]


class _Big:
    """A node input that can be weakly referenced (a plain object, captured by its fields)."""

    def __init__(self) -> None:
        self.rows = list(range(100))


def test_a_queued_event_keeps_no_input_alive(tmp_path: Path, restore_pipeline: None) -> None:
    """While its events wait in the queue, a finished node holds only the snapshot of its input, not the object."""
    path = tmp_path / "events.jsonl"
    flowledger.configure(sinks=f"jsonl:{path}", spool_dir=tmp_path / "spool", batch_max_age_s=5.0)

    @flowledger.node
    def count(big: _Big) -> int:
        return len(big.rows)

    big = _Big()
    alive = weakref.ref(big)
    with flowledger.run("memory"):
        assert count(big) == 100
    del big
    gc.collect()
    assert alive() is None  # the event is still queued (5 s batches), and the input is gone
    assert flowledger.flush(10.0)
    finished = [e["data"] for e in _jsonl_events(path) if e["kind"] == "node_finished"]
    assert finished[0]["input"] == {"rows": list(range(100))}
    assert finished[0]["output"] == 100


def test_a_failing_data_maker_still_gives_an_event(caplog: pytest.LogCaptureFixture) -> None:
    """What makes an event's data raising on the worker gives the event with empty data (logged), never an exception."""

    def broken() -> dict[str, Any]:
        raise RuntimeError("a bug")

    pending = PendingEvent(EventKind.NODE_FINISHED, "run-1", 0, "producer", 0, 1_700_000_000_000_000_000, None, broken)
    event = pending.event()
    assert event["data"] == {}
    assert event["kind"] == "node_finished"
    assert "project" not in event
    assert "could not write the data of a node_finished event" in caplog.text
