"""``GET /api/stats`` on a real receiver: groups by workflow, agent, project and node, series, validation."""

from __future__ import annotations

import pytest

from tests.receiver._support import LiveReceiver, RunEvents, simple_run, typical_run


@pytest.fixture
def filled(live: LiveReceiver) -> LiveReceiver:
    """Three runs of order-intake (one failed, two by agent bot-1) and one of billing."""
    runs = [
        simple_run(),
        RunEvents().start(agent_id="bot-1").node("fetch").finish(),
        typical_run(),
        RunEvents(workflow_id="billing").start(agent_id="bot-1").node("fetch").finish(),
        RunEvents(workflow_id="billing").start().node("fetch"),  # still running: not counted
    ]
    runs[2].events[0]["data"]["agent_id"] = "bot-1"
    assert live.post([e for run in runs for e in run.events]).status_code == 200
    return live


def test_stats_by_workflow_has_the_contract_shape(filled: LiveReceiver) -> None:
    """Each group has key, runs, by_status, success_rate, cost_usd and duration_ms; most runs first."""
    groups = filled.get("/api/stats").json()["groups"]
    assert [(g["key"], g["runs"]) for g in groups] == [("order-intake", 3), ("billing", 1)]
    first = groups[0]
    assert list(first) == ["key", "runs", "by_status", "success_rate", "cost_usd", "duration_ms"]
    assert first["by_status"] == {"failed": 1, "succeeded": 2}
    assert first["success_rate"] == pytest.approx(2 / 3)
    assert first["cost_usd"] == {"total": pytest.approx(0.012), "avg": 0.004, "min": 0.004, "max": 0.004}
    assert set(first["duration_ms"]) == {"avg", "p50", "p95"}
    assert first["duration_ms"]["p50"] <= first["duration_ms"]["p95"]


def test_stats_by_agent_project_and_node(filled: LiveReceiver) -> None:
    """by=agent groups by agent_id ('' for none), by=project by project, by=node by workflow/node."""
    agents = {g["key"]: g["runs"] for g in filled.get("/api/stats", params={"by": "agent"}).json()["groups"]}
    assert agents == {"bot-1": 3, "": 1}
    projects = {g["key"]: g["runs"] for g in filled.get("/api/stats", params={"by": "project"}).json()["groups"]}
    assert projects == {"": 4}
    nodes = {g["key"]: g for g in filled.get("/api/stats", params={"by": "node"}).json()["groups"]}
    assert nodes["order-intake/price"]["by_status"] == {"failed": 1, "succeeded": 1}
    assert nodes["order-intake/notify"]["by_status"] == {"skipped": 1}


def test_a_bucket_adds_a_series(filled: LiveReceiver) -> None:
    """bucket=hour|day adds each group's series, which sums to the group."""
    for bucket in ("hour", "day"):
        groups = filled.get("/api/stats", params={"bucket": bucket}).json()["groups"]
        for group in groups:
            assert sum(point["runs"] for point in group["series"]) == group["runs"]


def test_a_time_range_narrows_the_runs(filled: LiveReceiver) -> None:
    """A range in the far future has no runs; one around now has them all."""
    assert filled.get("/api/stats", params={"since": "2999-01-01T00:00:00Z"}).json() == {"groups": []}
    wide = {"since": "2000-01-01T00:00:00+02:00", "until": "2999-01-01T00:00:00Z"}
    assert sum(g["runs"] for g in filled.get("/api/stats", params=wide).json()["groups"]) == 4


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"by": "user"}, "by"),
        ({"bucket": "week"}, "bucket"),
        ({"since": "last week"}, "since"),
        ({"until": "12:00"}, "until"),
        ({"limit": "0"}, "limit"),
        ({"by": ["node", "agent"]}, "by"),
        ({"group": "x"}, "'group'"),
    ],
)
def test_a_bad_parameter_is_a_400_naming_it(live: LiveReceiver, params: dict[str, str], named: str) -> None:
    """Every client mistake is a 400 whose message names the parameter."""
    answer = live.get("/api/stats", params=params)
    assert answer.status_code == 400
    assert named in answer.json()["error"]
