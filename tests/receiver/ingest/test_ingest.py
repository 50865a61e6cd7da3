"""POST /v1/events against a real uvicorn receiver: outcomes per event and unusable bodies."""

from __future__ import annotations

import copy
import gzip
import json
import sqlite3
import zlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from flowledger.receiver._config import IngestLimits, ReceiverConfig
from tests.receiver._support import LiveReceiver, Producer, simple_run, start_receiver, typical_run


def _ledger_count(live: LiveReceiver) -> int:
    with sqlite3.connect(live.db_path) as conn:
        return int(conn.execute("SELECT count(*) FROM ledger").fetchone()[0])


def test_valid_batch_is_stored_and_counted(live: LiveReceiver) -> None:
    """Every valid event of a batch is accepted and lands in the ledger."""
    run = typical_run()
    answer = live.post(run.events)
    assert answer.status_code == 200
    assert answer.json() == {"accepted": len(run.events), "duplicates": 0, "conflicts": 0, "rejected": []}
    assert _ledger_count(live) == len(run.events)


def test_gzip_body_is_accepted(live: LiveReceiver) -> None:
    """A gzip Content-Encoding body is inflated and stored like a plain one."""
    run = typical_run()
    assert live.post(run.events, gzip_body=True).json()["accepted"] == len(run.events)


def test_replayed_batch_counts_duplicates_and_changes_nothing(live: LiveReceiver) -> None:
    """Sending the same events again stores nothing new and reports them as duplicates."""
    run = typical_run()
    live.post(run.events)
    before = live.get(f"/api/runs/{run.run_id}").json()
    answer = live.post(run.events).json()
    assert answer == {"accepted": 0, "duplicates": len(run.events), "conflicts": 0, "rejected": []}
    assert _ledger_count(live) == len(run.events)
    assert live.get(f"/api/runs/{run.run_id}").json() == before


def test_duplicate_within_one_batch_is_stored_once(live: LiveReceiver) -> None:
    """An event repeated inside one batch is stored once and counted once as a duplicate."""
    run = simple_run()
    answer = live.post([*run.events, run.events[0]]).json()
    assert answer["accepted"] == len(run.events)
    assert answer["duplicates"] == 1
    assert _ledger_count(live) == len(run.events)


def test_same_id_different_content_is_a_conflict(live: LiveReceiver) -> None:
    """An event_id already stored with other content is rejected as a conflict, not accepted."""
    run = simple_run()
    live.post(run.events)
    changed = copy.deepcopy(run.events[-1])
    changed["data"]["status"] = "failed"
    answer = live.post([changed]).json()
    assert answer["accepted"] == 0
    assert answer["conflicts"] == 1
    assert answer["rejected"][0]["index"] == 0
    assert "taken by a different event" in answer["rejected"][0]["error"]
    assert live.get(f"/api/runs/{run.run_id}").json()["status"] == "succeeded"


def test_mixed_batch_stores_the_valid_and_names_each_bad_field(live: LiveReceiver) -> None:
    """Invalid events are listed with their index and a reason naming the field; the rest are stored."""
    run = simple_run()
    good = run.events
    bad_kind = {**copy.deepcopy(good[0]), "kind": "run_paused"}
    missing = copy.deepcopy(good[1])
    del missing["data"]["span_id"]
    bad_status = copy.deepcopy(good[-1])
    bad_status["event_id"] = Producer().producer_id
    bad_status["data"]["status"] = "exploded"
    bad_ts = {**copy.deepcopy(good[0]), "ts": "2026-13-45T99:00:00Z"}
    batch: list[Any] = [good[0], bad_kind, good[1], missing, 17, good[2], bad_status, good[3], bad_ts]
    answer = live.post(batch).json()
    assert answer["accepted"] == 4
    errors = {r["index"]: r["error"] for r in answer["rejected"]}
    assert sorted(errors) == [1, 3, 4, 6, 8]
    assert "event.kind" in errors[1]
    assert "span_id" in errors[3]
    assert "JSON object" in errors[4]
    assert "event.data.status" in errors[6]
    assert "event.ts" in errors[8]
    assert live.get(f"/api/runs/{run.run_id}").json()["status"] == "succeeded"


def test_unknown_top_level_field_is_rejected(live: LiveReceiver) -> None:
    """A field the wire format does not define is named in the rejection."""
    event = {**simple_run().events[0], "colour": "red"}
    error = live.post([event]).json()["rejected"][0]["error"]
    assert "colour" in error


@pytest.mark.parametrize(
    ("body", "headers", "status", "words"),
    [
        (b"not json at all", {}, 400, "not valid JSON"),
        (b"", {}, 400, "not valid JSON"),
        (b"[1, 2, 3]", {}, 400, "JSON object"),
        (b'{"events": 3}', {}, 400, "events"),
        (b'{"evnts": []}', {}, 400, "events"),
        (b'{"events": [NaN]}', {}, 400, "NaN"),
        (b'{"events": [' + b"9" * 5000 + b"]}", {}, 400, "not valid JSON"),
        (b'{"events": ["\xff\xfe"]}', {}, 400, "UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, {}, 400, "too deeply"),
        (b'{"events": []}', {"content-encoding": "br"}, 415, "Content-Encoding"),
        (b"this is not gzip", {"content-encoding": "gzip"}, 400, "gzip"),
        (gzip.compress(b'{"events": []}')[:-6], {"content-encoding": "gzip"}, 400, "gzip"),
        (gzip.compress(b'{"events": []}') + b"trailing", {"content-encoding": "gzip"}, 400, "gzip"),
    ],
    ids=[
        "not-json",
        "empty",
        "array",
        "events-not-list",
        "no-events",
        "nan",
        "huge-int",
        "invalid-utf8",
        "deep-nesting",
        "unknown-encoding",
        "not-gzip",
        "truncated-gzip",
        "gzip-trailing-bytes",
    ],
)
def test_unusable_bodies_get_a_clear_client_error(
    live: LiveReceiver, body: bytes, headers: dict[str, str], status: int, words: str
) -> None:
    """Each malformed body is answered with a 4xx and a message naming the problem, never a 500."""
    answer = httpx.post(f"{live.url}/v1/events", content=body, headers=headers, timeout=30)
    assert answer.status_code == status
    assert words in answer.json()["error"]


def test_empty_batch_is_fine(live: LiveReceiver) -> None:
    """An empty events list is a valid no-op."""
    assert live.post([]).json() == {"accepted": 0, "duplicates": 0, "conflicts": 0, "rejected": []}


def test_lone_surrogate_is_rejected_per_event(live: LiveReceiver) -> None:
    """A string with a lone surrogate escape is rejected naming where it is; the other events are stored."""
    run = simple_run()
    raw = json.dumps({"events": run.events}).replace('"Order intake"', '"Order \\ud800 intake"', 1)
    answer = httpx.post(f"{live.url}/v1/events", content=raw.encode(), timeout=30).json()
    assert answer["accepted"] == len(run.events) - 1
    assert answer["rejected"][0]["index"] == 0
    assert "event.data.workflow_name" in answer["rejected"][0]["error"]
    assert "surrogate" in answer["rejected"][0]["error"]


def test_deep_payload_is_rejected_by_the_depth_limit(live: LiveReceiver) -> None:
    """A payload nested past max_depth is rejected with the depth and the limit."""
    run = simple_run()
    nested: object = "leaf"
    for _ in range(100):
        nested = [nested]
    run.events[1]["data"]["input"] = nested
    answer = live.post(run.events).json()
    assert [r["index"] for r in answer["rejected"]] == [1]
    assert "deep" in answer["rejected"][0]["error"]


def test_many_brackets_in_strings_are_not_mistaken_for_depth(live: LiveReceiver) -> None:
    """Brackets inside strings do not count as nesting."""
    run = simple_run()
    run.events[1]["data"]["input"] = {"text": "[[[{{{" * 100}
    assert live.post(run.events).json()["accepted"] == len(run.events)


def test_integer_too_large_to_store_is_rejected(live: LiveReceiver) -> None:
    """An integer beyond 64 bits in a stored column is rejected, not a 500."""
    run = simple_run()
    run.events[1]["data"]["attempt"] = 2**70
    answer = live.post(run.events).json()
    assert [r["index"] for r in answer["rejected"]] == [1]
    assert "attempt" in answer["rejected"][0]["error"]


def test_number_too_large_for_json_is_rejected_per_event(live: LiveReceiver) -> None:
    """A number that parses to infinity (1e400) is rejected as one event, not answered with a 500."""
    run = simple_run()
    raw = json.dumps({"events": run.events}).replace('"order": 42', '"order": 1e400', 1)
    answer = httpx.post(f"{live.url}/v1/events", content=raw.encode(), timeout=30)
    assert answer.status_code == 200
    assert answer.json()["accepted"] == len(run.events) - 1
    assert "1e400" in answer.json()["rejected"][0]["error"]


@pytest.fixture
def small_receiver(receiver_config: ReceiverConfig) -> Iterator[LiveReceiver]:
    """A receiver with tiny limits."""
    from dataclasses import replace

    limits = IngestLimits(
        max_body_bytes=64 * 1024, max_inflated_bytes=256 * 1024, max_batch_events=5, max_event_bytes=4096
    )
    receiver = start_receiver(replace(receiver_config, limits=limits))
    yield receiver
    receiver.stop()


def test_huge_body_gets_413(small_receiver: LiveReceiver) -> None:
    """A body over max_body_bytes is refused with 413 before it is parsed."""
    answer = httpx.post(f"{small_receiver.url}/v1/events", content=b"x" * 200_000, timeout=30)
    assert answer.status_code == 413
    assert "over the limit" in answer.json()["error"]


def test_huge_chunked_body_without_length_gets_413(small_receiver: LiveReceiver) -> None:
    """A streamed body with no Content-Length is cut off at the limit too."""

    def chunks() -> Iterator[bytes]:
        for _ in range(100):
            yield b"x" * 10_000

    answer = httpx.post(f"{small_receiver.url}/v1/events", content=chunks(), timeout=30)
    assert answer.status_code == 413


def test_gzip_bomb_gets_413_without_inflating_it_all(small_receiver: LiveReceiver) -> None:
    """A small gzip body inflating past max_inflated_bytes is refused with 413."""
    bomb = gzip.compress(b"{" + b" " * (50 * 1024 * 1024) + b"}", compresslevel=9)
    assert len(bomb) < 64 * 1024
    answer = httpx.post(
        f"{small_receiver.url}/v1/events", content=bomb, headers={"content-encoding": "gzip"}, timeout=30
    )
    assert answer.status_code == 413
    assert "inflates" in answer.json()["error"]


def test_batch_over_the_length_limit_gets_413(small_receiver: LiveReceiver) -> None:
    """More events than max_batch_events is a 413 naming both numbers."""
    answer = small_receiver.post(typical_run().events)
    assert answer.status_code == 413
    assert "over the limit of 5" in answer.json()["error"]


def test_event_over_the_size_limit_names_its_largest_field(small_receiver: LiveReceiver) -> None:
    """An event larger than max_event_bytes is rejected naming its biggest field."""
    run = simple_run()
    run.events[2]["data"]["output"] = "y" * 10_000
    answer = small_receiver.post(run.events).json()
    assert [r["index"] for r in answer["rejected"]] == [2]
    assert "event.data.output" in answer["rejected"][0]["error"]


def test_raw_deflate_is_not_taken_for_gzip(live: LiveReceiver) -> None:
    """A zlib stream labelled gzip is a 400, not a 500."""
    body = zlib.compress(b'{"events": []}')
    answer = httpx.post(f"{live.url}/v1/events", content=body, headers={"content-encoding": "gzip"}, timeout=30)
    assert answer.status_code == 400


def test_traces_endpoint_answers_empty_success(live: LiveReceiver) -> None:
    """POST /v1/traces answers an empty OTLP success in the request's content type."""
    answer = httpx.post(f"{live.url}/v1/traces", json={"resourceSpans": []}, timeout=30)
    assert answer.status_code == 200
    assert answer.json() == {}
    proto = httpx.post(
        f"{live.url}/v1/traces", content=b"", headers={"content-type": "application/x-protobuf"}, timeout=30
    )
    assert proto.status_code == 200
    assert proto.headers["content-type"].startswith("application/x-protobuf")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda e: e.update(seq="3"), "event.seq"),
        (lambda e: e.update(seq=-1), "event.seq"),
        (lambda e: e.update(v=2), "event.v"),
        (lambda e: e.update(data=[]), "event.data"),
        (lambda e: e.update(event_id="not-a-uuid"), "event.event_id"),
        (lambda e: e["data"].update(dry_run="no"), "event.data.dry_run"),
        (lambda e: e["data"].update(trace_id="xyz"), "event.data.trace_id"),
        (lambda e: e.update(project="no spaces allowed"), "event.project"),
    ],
    ids=["seq-string", "seq-negative", "version", "data-list", "event-id", "dry-run", "trace-id", "project"],
)
def test_wrong_types_are_rejected_naming_the_field(live: LiveReceiver, change: Any, field: str) -> None:
    """A field of the wrong type or form is rejected with its path in the reason."""
    event = simple_run().events[0]
    change(event)
    answer = live.post([event]).json()
    assert answer["accepted"] == 0
    assert field in answer["rejected"][0]["error"]


def test_another_projects_ids_are_taken_as_new(tmp_path: Any) -> None:
    """A key of one project that reuses another's run id and event id gets the answer an unused id gets:
    accepted, as its own run and event (ids are per project), confirming nothing about the other project."""
    config = ReceiverConfig(
        db_path=tmp_path / "keys.db", sweep_interval_s=0, api_keys={"token-a": "shop", "token-b": "billing"}
    )
    live = start_receiver(config)
    try:
        shop = simple_run()
        assert live.post(shop.events, headers={"Authorization": "Bearer token-a"}).json()["rejected"] == []
        same_run = copy.deepcopy(shop.events[1:2])
        same_run[0]["event_id"] = simple_run().events[0]["event_id"]
        same_event = copy.deepcopy(simple_run().events[:1])
        same_event[0]["event_id"] = shop.events[0]["event_id"]
        unused = copy.deepcopy(simple_run().events[:2])
        answer = live.post([*same_run, *same_event], headers={"Authorization": "Bearer token-b"}).json()
        fresh = live.post(unused, headers={"Authorization": "Bearer token-b"}).json()
        assert answer == fresh
        assert (answer["accepted"], answer["rejected"]) == (2, [])
        shop_run = live.get(f"/api/runs/{shop.run_id}", headers={"Authorization": "Bearer token-a"}).json()
        assert (shop_run["project"], shop_run["status"], len(shop_run["nodes"])) == ("shop", "succeeded", 1)
    finally:
        live.stop()
