"""Conformance: cost breakdowns, node metrics and artifacts, and the custom metric totals, for every engine."""

from __future__ import annotations

from typing import Any

import pytest

from flowledger.receiver.store._custom_metrics import CustomMetricQuery
from flowledger.receiver.store._protocol import EventOutcome, RunQuery, Store
from tests.receiver._support import RunEvents
from tests.receiver.store.conformance.conftest import prepared

pytestmark = pytest.mark.asyncio

_BREAKDOWN = {"tokens_in": {"count": 10, "usd_nanos": 7}, "penalty:retry": {"count": 1, "usd_nanos": 0}}


def _finished(run: RunEvents, node_id: str) -> dict[str, Any]:
    event: dict[str, Any] = next(
        e for e in run.events if e["kind"] == "node_finished" and e["data"]["node_id"] == node_id
    )
    return event


def _run(project: str | None = None, *, clock_ns: int | None = None) -> RunEvents:
    run = RunEvents(workflow_id="agent", project=project)
    if clock_ns is not None:
        run.clock_ns = clock_ns
    run.start().node("ask").finish()
    data = _finished(run, "ask")["data"]
    data["cost"] = {"tokens": 10, "tool_calls": 0, "external_requests": 0, "usd": 7e-9, "breakdown": _BREAKDOWN}
    data["workflow_id"] = "agent"
    data["metrics"] = [
        {"name": "hits", "labels": {"tier": "gold"}, "count": 2, "sum": 3.0, "min": 1.0, "max": 2.0, "value": 2.0}
    ]
    data["artifacts"] = [{"name": "a.txt", "uri": None, "media_type": "text/plain", "size_bytes": 1, "sha256": None}]
    return run


async def test_breakdown_metrics_and_artifacts_read_back_as_sent(store: Store) -> None:
    """A node's cost breakdown (with exact dollars), metrics and artifacts come back from get_run and iter_runs."""
    run = _run()
    assert {o for o, _ in await store.append(prepared(run.events))} == {EventOutcome.ACCEPTED}
    detail = await store.get_run(run.run_id)
    assert detail is not None
    (node,) = detail["nodes"]
    assert node["cost"]["breakdown"] == {
        "tokens_in": {"count": 10, "usd_nanos": 7, "usd": 7e-9},
        "penalty:retry": {"count": 1, "usd_nanos": 0, "usd": 0.0},
    }
    assert node["metrics"] == _finished(run, "ask")["data"]["metrics"]
    assert node["artifacts"] == _finished(run, "ask")["data"]["artifacts"]
    assert detail["cost"]["breakdown"] is None  # the run's own cost was sent without one
    (exported,) = [r async for r in store.iter_runs(RunQuery(), with_nodes=True)]
    assert exported["nodes"][0]["metrics"] == node["metrics"]


async def test_an_attempt_without_metrics_or_artifacts_has_empty_lists(store: Store) -> None:
    """Metrics and artifacts are lists whether or not the attempt recorded any: [] when none, never null."""
    run = RunEvents().start().node("plain").finish()
    await store.append(prepared(run.events))
    detail = await store.get_run(run.run_id)
    assert detail is not None
    (node,) = detail["nodes"]
    assert (node["metrics"], node["artifacts"]) == ([], [])
    (exported,) = [r async for r in store.iter_runs(RunQuery(), with_nodes=True)]
    assert (exported["nodes"][0]["metrics"], exported["nodes"][0]["artifacts"]) == ([], [])


async def test_custom_metric_totals_filter_by_name_labels_workflow_and_project(store: Store) -> None:
    """Totals add attempts of one series; filters narrow them; a project sees its own rows only."""
    runs = [_run(), _run(), _run(project="other")]
    await store.append(prepared([e for run in runs[:2] for e in run.events]))
    await store.append(prepared(runs[2].events, project="other"))
    rows = await store.custom_metrics(CustomMetricQuery(name="hits"))  # the runs' clocks fall in random hours
    assert sum(row["count"] for row in rows if row["project"] is None) == 4
    assert sum(row["sum"] for row in rows if row["project"] is None) == 6.0
    assert [row["hour"] for row in rows] == sorted((row["hour"] for row in rows), reverse=True)
    only_other = await store.custom_metrics(CustomMetricQuery(project="other"))
    assert {row["project"] for row in only_other} == {"other"}
    assert sum(row["count"] for row in only_other) == 2
    assert await store.custom_metrics(CustomMetricQuery(labels={"tier": "silver"})) == []
    assert await store.custom_metrics(CustomMetricQuery(workflow_id="nope")) == []
    gold = await store.custom_metrics(CustomMetricQuery(labels={"tier": "gold"}, node_id="ask", limit=1))
    assert len(gold) == 1
    assert gold[0]["avg"] == gold[0]["sum"] / gold[0]["count"]


async def test_custom_metrics_with_the_longest_labels_add_up_and_filter(store: Store) -> None:
    """A series with the most labels, each the longest value in characters of 3 and 4 UTF-8 bytes (past an index
    entry's size on PostgreSQL), is stored with the other events of its batch, adds up and filters by its labels;
    a label set differing in one character is another series."""
    labels = {f"l{i}": "".join(chr(0x4E00 + (i * 128 + j) * 7 % 20_000) for j in range(128)) for i in range(7)}
    labels["l7"] = "".join(chr(0x1F300 + j) for j in range(128))
    near = {**labels, "l7": labels["l7"][:-1] + "x"}
    clock_ns = RunEvents().clock_ns
    runs = [_run(clock_ns=clock_ns), _run(), _run()]
    for run, its_labels in zip(runs, (labels, labels, near), strict=True):
        _finished(run, "ask")["data"]["metrics"][0]["labels"] = its_labels
    plain = _run()
    outcomes = await store.append(prepared([e for run in [*runs, plain] for e in run.events]))
    assert {outcome for outcome, _ in outcomes} == {EventOutcome.ACCEPTED}
    again = _run(clock_ns=clock_ns)  # its attempt finishes when the first run's did: the same row
    _finished(again, "ask")["data"]["metrics"][0]["labels"] = labels
    await store.append(prepared(again.events))  # a later batch adds to the stored row
    rows = await store.custom_metrics(CustomMetricQuery(name="hits", labels=labels))
    assert sum(row["count"] for row in rows) == 6
    assert max(row["count"] for row in rows) >= 4  # the first run's attempt and the later one's, in one row
    assert all(row["labels"] == labels for row in rows)
    assert sum(row["count"] for row in await store.custom_metrics(CustomMetricQuery(labels={"l7": near["l7"]}))) == 2
    assert sum(row["count"] for row in await store.custom_metrics(CustomMetricQuery(labels={"l0": labels["l0"]}))) == 8
    assert sum(row["count"] for row in await store.custom_metrics(CustomMetricQuery(name="hits"))) == 10
    assert (await store.rebuild()).clean
    assert sum(row["count"] for row in await store.custom_metrics(CustomMetricQuery(labels=labels))) == 6
