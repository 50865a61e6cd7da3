"""The EventSink protocol, held to every sink: delivered in full on flush, bounded, idempotent shutdown, never raises.

Each case builds one sink against a real destination (a receiver on a free
port for ``receiver`` and ``otlp``, a file for ``jsonl``) and says how many
events reached it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from flowledger.instrument.delivery import EventSink
from flowledger.instrument.delivery._jsonl import JsonlSender
from flowledger.instrument.delivery._memory import MemorySink
from flowledger.instrument.delivery._otlp_sink import OtlpSender
from flowledger.instrument.delivery._sender import Sender
from flowledger.receiver._config import ReceiverConfig
from tests.instrument.delivery._sender_support import make_settings
from tests.otel._support import LiveReceiver, receiver_running

EVENTS = 20


@dataclass
class Case:
    sink: EventSink
    delivered: Callable[[], int]
    """How many of the submitted events reached the destination."""


def _events(count: int) -> list[dict[str, Any]]:
    from tests.receiver._support import simple_run

    events: list[dict[str, Any]] = []
    while len(events) < count:
        events.extend(simple_run().events)
    return events[:count]


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveReceiver]:
    with receiver_running(ReceiverConfig(db_path=tmp_path_factory.mktemp("conformance") / "ledger.db")) as live:
        yield live


def _build(kind: str, tmp_path: Path, receiver: LiveReceiver) -> Case:
    settings = make_settings(tmp_path / "spool", receiver.url, otlp_traces_endpoint=f"{receiver.url}/v1/traces")
    if kind == "memory":
        memory = MemorySink(EVENTS * 2)
        return Case(memory, lambda: len(memory))
    if kind == "jsonl":
        path = tmp_path / "events.jsonl"
        return Case(JsonlSender(settings, path), lambda: len(path.read_text().splitlines()) if path.exists() else 0)
    if kind == "otlp":
        otlp = OtlpSender(settings, spool_dir=tmp_path / "spool-otlp")
        return Case(otlp, lambda: otlp.stats()["sent"])
    sender = Sender(settings)
    return Case(sender, lambda: sender.stats()["sent"])


@pytest.fixture(params=["receiver", "otlp", "jsonl", "memory"])
def case(request: pytest.FixtureRequest, tmp_path: Path, receiver: LiveReceiver) -> Iterator[Case]:
    built = _build(str(request.param), tmp_path, receiver)
    yield built
    built.sink.shutdown(0.5)


def test_flush_delivers_everything_submitted(case: Case) -> None:
    """After flush() returns True, every submitted event has reached the destination."""
    events = _events(EVENTS)
    for event in events:
        case.sink.submit(json.loads(json.dumps(event)), 400)
    assert case.sink.flush(10.0)
    assert case.delivered() == EVENTS


def test_shutdown_is_idempotent_and_later_events_are_dropped_and_counted(case: Case) -> None:
    """shutdown() twice is fine; an event submitted afterwards is counted as dropped, never raised."""
    assert case.sink.shutdown(2.0)
    assert case.sink.shutdown(0.1)
    case.sink.submit(_events(1)[0], 400)
    stats = getattr(case.sink, "stats")()  # noqa: B009 - every built-in sink has counters
    assert stats["dropped_closed"] == 1


def test_submit_never_raises_on_what_cannot_be_encoded(case: Case) -> None:
    """An event holding a value JSON cannot carry never raises; the events beside it still go."""
    events = _events(3)
    bad = dict(events[1], data={**events[1]["data"], "oops": object()})
    case.sink.submit(events[0], 400)
    case.sink.submit(bad, 400)
    case.sink.submit(events[2], 400)
    case.sink.flush(10.0)
    stats = getattr(case.sink, "stats")()  # noqa: B009
    assert case.delivered() + stats["dropped_unserializable"] == 3
    assert case.delivered() >= 2
    assert stats["failures"] == 0
