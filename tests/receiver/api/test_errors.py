"""``GET /api/errors`` on a real receiver: a corpus of real-looking failures grouped, filters validated."""

from __future__ import annotations

from typing import Any

import pytest

from flowledger.receiver.store._error_groups import error_fingerprint
from tests.receiver._support import LiveReceiver, RunEvents

CORPUS: list[tuple[str, str, str]] = [
    # (node, error type, message): each block of one node and type is one group
    *[("fetch", "httpx.ReadTimeout", f"timed out after {s}s") for s in (5, 10.5, 30, 61.25)],
    *[("fetch", "httpx.HTTPStatusError", f"HTTP 503 Service Unavailable (request id req_{i:012x}ab)") for i in (1, 77)],
    ("fetch", "httpx.HTTPStatusError", "HTTP 404 Not Found (request id req_00000000abcd)"),
    *[("price", "KeyError", f"'{key}'") for key in ("sku", "user_42", "discount")],
    *[("save", "sqlite3.IntegrityError", f"UNIQUE constraint failed: orders.id ({n})") for n in (3, 4411)],
    *[
        (
            "save",
            "ValueError",
            f'Traceback (most recent call last):\n  File "/srv/app/{f}.py", line {ln}, in save\n'
            f"ValueError: quantity {q} is negative",
        )
        for f, ln, q in (("steps", 12, -1), ("other", 40, -17))
    ],
]


def _failing_run(node: str, error_type: str, message: str, workflow_id: str = "orders") -> RunEvents:
    run = RunEvents(workflow_id=workflow_id).start().node(node, status="failed")
    finish = run.events[-1]
    finish["data"]["error"] = {"type": error_type, "message": message, "stack": "Traceback ..."}
    run.finish("failed", error_node=node)
    run.events[-1]["data"]["error"] = {"type": error_type, "message": message, "node_id": node}
    return run


@pytest.fixture
def corpus(live: LiveReceiver) -> list[RunEvents]:
    runs = [_failing_run(*case) for case in CORPUS]
    answer = live.post([e for run in runs for e in run.events])
    assert answer.status_code == 200, answer.text
    return runs


def test_a_corpus_of_failures_folds_into_its_groups(live: LiveReceiver, corpus: list[RunEvents]) -> None:
    """Timeouts, 503s with request ids, KeyErrors, SQL errors and tracebacks: one group each, the 404 its own."""
    groups: list[dict[str, Any]] = live.get("/api/errors").json()["groups"]
    got = {(g["node_id"], g["type"], g["message"]): g["count"] for g in groups}
    assert got == {
        ("fetch", "httpx.ReadTimeout", "timed out after <n>s"): 4,
        ("price", "KeyError", "'<str>'"): 3,
        ("fetch", "httpx.HTTPStatusError", "HTTP 503 Service Unavailable (request id <hex>)"): 2,
        ("save", "sqlite3.IntegrityError", "UNIQUE constraint failed: orders.id (<n>)"): 2,
        ("save", "ValueError", "ValueError: quantity -<n> is negative"): 2,
        ("fetch", "httpx.HTTPStatusError", "HTTP 404 Not Found (request id <hex>)"): 1,
    }
    assert [g["count"] for g in groups] == sorted((g["count"] for g in groups), reverse=True)
    assert all(g["workflow_id"] == "orders" for g in groups)


def test_each_failed_run_names_its_group(live: LiveReceiver, corpus: list[RunEvents]) -> None:
    """GET /api/runs/{id} gives the run's error its fingerprint, and that group lists the run among its samples."""
    groups = {g["fingerprint"]: g for g in live.get("/api/errors").json()["groups"]}
    for run in corpus[:4]:
        error = live.get(f"/api/runs/{run.run_id}").json()["error"]
        assert error["fingerprint"] == error_fingerprint(error["type"], error["message"], error["node_id"], "orders")
        assert run.run_id in groups[error["fingerprint"]]["sample_run_ids"]


def test_filters_narrow_the_groups(live: LiveReceiver, corpus: list[RunEvents]) -> None:
    """workflow_id, limit and the time range answer only what matches."""
    other = _failing_run("fetch", "OSError", "disk full", workflow_id="billing")
    live.post(other.events)
    assert [g["workflow_id"] for g in live.get("/api/errors", params={"workflow_id": "billing"}).json()["groups"]] == [
        "billing"
    ]
    assert len(live.get("/api/errors", params={"limit": 2}).json()["groups"]) == 2
    assert live.get("/api/errors", params={"since": "2999-01-01T00:00:00Z"}).json() == {"groups": []}
    backwards = {"since": "2999-01-01T00:00:00Z", "until": "2000-01-01T00:00:00Z"}
    assert live.get("/api/errors", params=backwards).json() == {"groups": []}
    everything = live.get("/api/errors", params={"since": "2000-01-01T00:00:00Z", "until": "2999-01-01T00:00:00Z"})
    assert len(everything.json()["groups"]) == 7


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-01-01"}, "until"),
        ({"workflow": "orders"}, "'workflow'"),
    ],
)
def test_a_bad_parameter_is_a_400_naming_it(live: LiveReceiver, params: dict[str, str], named: str) -> None:
    """Every client mistake is a 400 whose message names the parameter."""
    answer = live.get("/api/errors", params=params)
    assert answer.status_code == 400
    assert named in answer.json()["error"]
