"""The custom_metrics projection: summed per workflow, node, name, labels and hour, once per attempt, rebuilt alike."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from typing import Any

import httpx

from flowledger.receiver._config import ReceiverConfig
from tests.receiver._support import LiveReceiver, RunEvents, start_receiver


def _with_metrics(run: RunEvents, node_id: str, metrics: list[dict[str, Any]]) -> dict[str, Any]:
    """Put ``metrics`` on the node_finished of ``node_id`` (as the SDK does, with the run's workflow_id)."""
    event = next(e for e in run.events if e["kind"] == "node_finished" and e["data"]["node_id"] == node_id)
    event["data"]["metrics"] = metrics
    event["data"]["workflow_id"] = run.workflow_id
    return event


def _summary(value: float, *, labels: dict[str, str] | None = None, name: str = "cache_hit") -> dict[str, Any]:
    return {"name": name, "labels": labels or {}, "count": 1, "sum": value, "min": value, "max": value, "value": value}


def _rows(live: LiveReceiver) -> list[tuple[Any, ...]]:
    with sqlite3.connect(live.db_path) as conn:
        return conn.execute(
            "SELECT project, workflow_id, node_id, name, labels, count, sum, min, max FROM custom_metrics "
            "ORDER BY workflow_id, node_id, name, labels"
        ).fetchall()


def test_attempts_add_up_once_in_any_order_and_a_rebuild_agrees(live: LiveReceiver) -> None:
    """Two runs' attempts sum into one row per series; a node's finish before its run's start still has its workflow;
    a replayed batch adds nothing; refolding the ledger gives the same rows."""
    first = RunEvents(workflow_id="agent").start().node("ask").finish()
    _with_metrics(first, "ask", [_summary(1, labels={"provider": "openai"}), _summary(0.5, name="latency_s")])
    second = RunEvents(workflow_id="agent")
    second.clock_ns = first.clock_ns  # the same hour
    second.start().node("ask").finish()
    _with_metrics(second, "ask", [_summary(0, labels={"provider": "openai"})])
    late_start = list(reversed(second.events))  # run_finished and node_finished arrive before run_started

    assert live.post(first.events).json()["accepted"] == len(first.events)
    assert live.post(late_start).json()["accepted"] == len(second.events)
    assert live.post(first.events + second.events).json()["duplicates"] == len(first.events) + len(second.events)
    expected = [
        ("", "agent", "ask", "cache_hit", '{"provider":"openai"}', 2, 1.0, 0.0, 1.0),
        ("", "agent", "ask", "latency_s", "{}", 1, 0.5, 0.5, 0.5),
    ]
    assert _rows(live) == expected
    drift = httpx.post(f"{live.url}/api/rebuild", timeout=30).json()
    assert drift["clean"] is True
    assert _rows(live) == expected


def test_a_bad_metric_rejects_its_event_only(live: LiveReceiver) -> None:
    """A run id as a label, a value past 2**53 or nine labels reject that event, naming the field; others are stored."""
    runs = [RunEvents(workflow_id="agent").start().node("ask").finish() for _ in range(4)]
    good = _with_metrics(runs[0], "ask", [_summary(1)])
    bad_label = _with_metrics(runs[1], "ask", [_summary(1, labels={"run_id": runs[1].run_id})])
    bad_value = _with_metrics(runs[2], "ask", [_summary(1e300)])
    many_labels = _with_metrics(runs[3], "ask", [_summary(1, labels={f"l{i}": "x" for i in range(9)})])
    events = [e for run in runs for e in run.events]
    answer = live.post(events).json()
    rejected = {r["index"]: r["error"] for r in answer["rejected"]}
    assert set(rejected) == {events.index(bad_label), events.index(bad_value), events.index(many_labels)}
    assert all("metrics" in error for error in rejected.values()), rejected
    assert answer["accepted"] == len(events) - 3
    assert good in events
    assert [row[3:6] for row in _rows(live)] == [("cache_hit", "{}", 1)]


def test_an_api_key_sees_its_projects_totals_only(receiver_config: ReceiverConfig) -> None:
    """/api/metrics/custom answers a key the rows of its project; no key is a 401."""
    live = start_receiver(replace(receiver_config, api_keys={"key-a": "proj-a", "key-b": "proj-b"}))
    try:
        for key in ("key-a", "key-b"):
            run = RunEvents(workflow_id="agent").start().node("ask").finish()
            _with_metrics(run, "ask", [_summary(1, name=f"hits_{key[-1]}")])
            answer = live.post(run.events, headers={"authorization": f"Bearer {key}"}).json()
            assert answer["accepted"] == len(run.events)
        seen = live.get("/api/metrics/custom", headers={"authorization": "Bearer key-a"}).json()["metrics"]
        assert [(row["project"], row["name"]) for row in seen] == [("proj-a", "hits_a")]
        assert live.get("/api/metrics/custom").status_code == 401
    finally:
        live.stop()
