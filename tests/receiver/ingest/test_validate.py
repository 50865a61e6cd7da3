"""Values no store can keep, over a real socket: each is one event's rejection, never a 500 or a 503."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.receiver._support import LiveReceiver, simple_run


def _set(event: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    target = event
    for part in parents:
        target = target[part]
    target[last] = value


HUGE: list[tuple[int, str, Any]] = [
    (3, "data.duration_ms", 1e300),
    (3, "data.duration_ms", 2**64),
    (3, "data.cost.usd", 2**70),
    (3, "data.cost.tokens", 2**63),
    (0, "data.heartbeat_interval_s", 2**64),
    (0, "producer_seq", 2**64),
    (0, "seq", 2**63),
]


@pytest.mark.parametrize(("index", "path", "value"), HUGE, ids=[f"{p}={v!r}"[:40] for _, p, v in HUGE])
def test_a_number_sqlite_cannot_store_is_rejected_naming_its_field(
    live: LiveReceiver, index: int, path: str, value: Any
) -> None:
    """A schema-valid-looking number beyond 64 bits or 2**53 is refused per event; the other events are stored."""
    run = simple_run()
    _set(run.events[index], path, value)
    answer = live.post(run.events)
    assert answer.status_code == 200
    body = answer.json()
    assert body["accepted"] == len(run.events) - 1
    assert [r["index"] for r in body["rejected"]] == [index]
    assert path.rsplit(".", 1)[-1] in body["rejected"][0]["error"]


def test_a_duration_that_ends_after_the_year_9999_is_rejected(live: LiveReceiver) -> None:
    """A duration_ms within the number bound whose finish time is past 9999-12-31 is one event's rejection."""
    run = simple_run()
    run.events[3]["data"]["duration_ms"] = 2**52
    body = live.post(run.events).json()
    assert [r["index"] for r in body["rejected"]] == [3]
    assert "after the year 9999" in body["rejected"][0]["error"]


def test_an_unstorable_event_does_not_hurt_concurrent_requests(live: LiveReceiver) -> None:
    """Good batches sent at the same time as bad ones are all stored: no 503 for anyone, no retry loop."""
    good = [simple_run() for _ in range(12)]
    bad = []
    for value in (1e300, 2**70, 2**64):
        run = simple_run()
        run.events[3]["data"]["duration_ms"] = value
        bad.append(run)
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda run: live.post(run.events), [*bad, *good]))
    assert [a.status_code for a in answers] == [200] * len(answers)
    assert all(a.json()["accepted"] == 4 for a in answers[len(bad) :])
    assert all([r["index"] for r in a.json()["rejected"]] == [3] for a in answers[: len(bad)])


@pytest.mark.parametrize(
    ("field", "text"),
    [
        ("run_id", '"run_id": "{run_id}\\ud800"'),
        ("data key", '"data": {{"k\\ud800": 1, '),
        ("nested key", '"trigger_data": {{"k\\udfff": 1, '),
    ],
)
def test_a_lone_surrogate_anywhere_is_one_events_rejection(live: LiveReceiver, field: str, text: str) -> None:
    """A lone surrogate in a validated value or in a key is a per-event rejection, never a 500."""
    run = simple_run()
    raw = json.dumps({"events": run.events})
    if field == "run_id":
        old = f'"run_id": "{run.run_id}"'
        raw = raw.replace(old, text.format(run_id=run.run_id), 1)
    elif field == "data key":
        raw = raw.replace('"data": {', text.format(), 1)
    else:
        raw = raw.replace('"trigger_data": {', text.format(), 1)
    answer = httpx.post(f"{live.url}/v1/events", content=raw.encode(), timeout=30)
    assert answer.status_code == 200
    body = answer.json()
    assert [r["index"] for r in body["rejected"]] == [0]
    assert "surrogate" in body["rejected"][0]["error"]
    assert body["accepted"] == len(run.events) - 1


@pytest.mark.parametrize("ts", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
@pytest.mark.parametrize("where", ["ts", "data.started_at"])
def test_a_timestamp_that_overflows_in_utc_is_one_events_rejection(live: LiveReceiver, ts: str, where: str) -> None:
    """A timestamp outside the years 1 to 9999 once made UTC is refused per event; the good events are kept."""
    run = simple_run()
    _set(run.events[3], where, ts)
    answer = live.post(run.events)
    assert answer.status_code == 200
    body = answer.json()
    assert body["accepted"] == len(run.events) - 1
    assert [r["index"] for r in body["rejected"]] == [3]
    assert where.rsplit(".", 1)[-1] in body["rejected"][0]["error"]


@pytest.mark.parametrize("value", [5, 1e300, "not a time", "0001-01-01T00:00:00+01:00"])
def test_started_at_on_a_kind_that_does_not_define_it_is_free_data(live: LiveReceiver, value: Any) -> None:
    """A heartbeat or node_started carrying started_at or duration_ms of any type is not read as a time (no 500)."""
    run = simple_run()
    run.events[1]["data"]["started_at"] = value
    run.events[1]["data"]["duration_ms"] = value
    answer = live.post(run.events)
    assert answer.status_code == 200
    assert answer.json()["accepted"] == len(run.events)
    drift = httpx.post(f"{live.url}/api/rebuild", timeout=60).json()
    assert drift["clean"] is True
