"""A query past the receiver's limit for one read (``FLOWLEDGER_RECEIVER_READ_TIMEOUT_S``) is answered 503 naming
the limit, without Retry-After, while exports, verify and ingest go on; 0 sets no limit."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest

from flowledger.receiver._config import DEFAULT_READ_TIMEOUT_S, ReceiverConfig, config_from_env
from tests.receiver._support import LiveReceiver, RunEvents, start_receiver

RUNS = 1000


@pytest.fixture
def limited(receiver_config: ReceiverConfig) -> Iterator[LiveReceiver]:
    """A receiver whose limit for one read no query can meet, holding :data:`RUNS` runs, half of them failed."""
    receiver = start_receiver(replace(receiver_config, read_timeout_s=1e-9))
    try:
        events = []
        for index in range(RUNS):
            failing = index % 2 == 1
            run = RunEvents(workflow_id="shop").start().node(f"n{index}", status="failed" if failing else "succeeded")
            events += run.finish(
                "failed" if failing else "succeeded", error_node=f"n{index}" if failing else None
            ).events
        assert receiver.post(events).status_code == 200
        yield receiver
    finally:
        receiver.stop()


def test_a_query_past_the_limit_is_503_without_retry_after_and_the_rest_goes_on(limited: LiveReceiver) -> None:
    for path in ("/api/runs?limit=1000", "/api/errors", "/api/viewer/summary?since=2000-01-01T00:00:00Z"):
        answer = limited.get(path)
        assert answer.status_code == 503, (path, answer.text)
        assert "retry-after" not in answer.headers
        assert "limit of 1e-09 s for one read" in answer.json()["error"]
        assert "FLOWLEDGER_RECEIVER_READ_TIMEOUT_S" in answer.json()["error"]
    exported = limited.get("/api/export?format=jsonl")
    assert exported.status_code == 200
    assert len(exported.text.splitlines()) == RUNS
    verified = limited.get("/api/verify")
    assert verified.status_code == 200
    assert verified.json()["ok"] is True
    more = RunEvents(workflow_id="shop").start().finish("succeeded")
    assert limited.post(more.events).status_code == 200
    assert limited.get("/healthz").status_code == 200


def test_the_limit_is_read_from_the_environment_and_zero_sets_none() -> None:
    assert ReceiverConfig().read_timeout_s == DEFAULT_READ_TIMEOUT_S == 30.0
    assert config_from_env(environ={"FLOWLEDGER_RECEIVER_READ_TIMEOUT_S": "2.5"}).read_timeout_s == 2.5
    assert config_from_env(environ={"FLOWLEDGER_RECEIVER_READ_TIMEOUT_S": "0"}).read_timeout_s == 0


def test_without_a_limit_the_same_queries_answer(receiver_config: ReceiverConfig) -> None:
    receiver = start_receiver(replace(receiver_config, read_timeout_s=0))
    try:
        run = RunEvents(workflow_id="shop").start().node("a", status="failed").finish("failed", error_node="a")
        assert receiver.post(run.events).status_code == 200
        assert receiver.get("/api/runs").json()["total"] == 1
        assert receiver.get("/api/errors").status_code == 200
    finally:
        receiver.stop()
