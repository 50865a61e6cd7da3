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


def _run(project: str | None = None) -> RunEvents:
    run = RunEvents(workflow_id="agent", project=project).start().node("ask").finish()
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
