"""The writer task over a real SQLite store: one request's unstorable event never fails another request."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from flowledger.receiver._config import IngestLimits
from flowledger.receiver._metrics import Metrics
from flowledger.receiver._validate import prepare_event
from flowledger.receiver._writer import Writer
from flowledger.receiver.store._event import PreparedEvent
from flowledger.receiver.store._protocol import EventOutcome
from flowledger.receiver.store._sqlite import SqliteStore
from tests.receiver._support import simple_run

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def writer(tmp_path: Path) -> AsyncIterator[Writer]:
    """A started writer on a fresh SQLite file."""
    store = SqliteStore(tmp_path / "writer.db")
    await store.open()
    the_writer = Writer(store, Metrics(), max_requests=16, commit_max_events=10_000)
    the_writer.start()
    yield the_writer
    await the_writer.stop()
    await store.close()


def _prepared(events: list[dict[str, object]]) -> list[PreparedEvent]:
    out = []
    for index, raw in enumerate(events):
        event = prepare_event(copy.deepcopy(raw), index, IngestLimits(), None)
        assert isinstance(event, PreparedEvent), event
        out.append(event)
    return out


async def test_an_unstorable_event_is_refused_alone_and_other_requests_of_its_commit_are_stored(
    writer: Writer,
) -> None:
    """An event the store cannot keep (past validation) is UNSTORABLE; the rest of its commit group is stored."""
    bad_request = _prepared(simple_run().events)
    bad_request[-1].data["duration_ms"] = 1e300  # slipped past validation: its finish time cannot be computed
    good_requests = [_prepared(simple_run().events) for _ in range(3)]
    futures = [writer.submit(bad_request)] + [writer.submit(events) for events in good_requests]
    answers = await asyncio.gather(*futures)  # queued together: one commit group
    bad_answer, *good_answers = answers
    for answer in good_answers:
        assert [outcome for outcome, _ in answer] == [EventOutcome.ACCEPTED] * 4
    assert [outcome for outcome, _ in bad_answer[:-1]] == [EventOutcome.ACCEPTED] * 3
    outcome, reason = bad_answer[-1]
    assert outcome is EventOutcome.UNSTORABLE
    assert reason is not None
    assert "cannot keep" in reason


async def test_a_request_alone_keeps_its_storable_events(writer: Writer) -> None:
    """A request committed on its own with one unstorable event stores the rest and refuses only that event."""
    request = _prepared(simple_run().events)
    request[1].data["span_id"] = 2**70  # a node attempt key SQLite cannot bind
    answer = await writer.submit(request)
    assert [outcome for outcome, _ in answer] == [
        EventOutcome.ACCEPTED,
        EventOutcome.UNSTORABLE,
        EventOutcome.ACCEPTED,
        EventOutcome.ACCEPTED,
    ]
