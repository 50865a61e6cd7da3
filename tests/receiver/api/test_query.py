"""The query API: run listing, filters, stable paging, one run with its nodes, export."""

from __future__ import annotations

import base64
import csv
import io
import json

import httpx
import pytest

from flowledger.receiver.store import _sqlite
from tests.receiver._support import LiveReceiver, RunEvents, simple_run, typical_run

DOCUMENTED_RUN_FIELDS = {
    "run_id",
    "workflow_id",
    "workflow_name",
    "workflow_version",
    "status",
    "trigger_type",
    "dry_run",
    "started_at",
    "completed_at",
    "duration_ms",
    "error",
    "cost",
    "trace_id",
}
DOCUMENTED_NODE_FIELDS = {
    "node_id",
    "attempt",
    "status",
    "skip_reason",
    "started_at",
    "completed_at",
    "duration_ms",
    "input",
    "output",
    "error",
    "span_id",
}


@pytest.fixture
def many(live: LiveReceiver) -> tuple[LiveReceiver, list[RunEvents]]:
    """Twelve runs of two workflows, one failed, one still running."""
    runs = [simple_run(workflow_id="a" if i % 2 else "b") for i in range(10)]
    runs.append(typical_run())
    running = RunEvents(workflow_id="b").start().node("fetch")
    runs.append(running)
    live.post([e for run in runs for e in run.events])
    return live, runs


def test_run_has_the_contract_fields(many: tuple[LiveReceiver, list[RunEvents]]) -> None:
    """Every listed run carries the fields the query API documents, with error and cost as objects."""
    live, runs = many
    body = live.get("/api/runs").json()
    assert body["total"] == len(runs)
    for run in body["runs"]:
        assert run.keys() >= DOCUMENTED_RUN_FIELDS
    failed = next(r for r in body["runs"] if r["status"] == "failed")
    assert failed["error"] == {"type": "ValueError", "message": "price broke", "node_id": "price"}
    assert set(failed["cost"]) == {"tokens", "tool_calls", "external_requests", "usd", "breakdown"}
    assert failed["cost"]["breakdown"] is None  # events without a breakdown fold as before


def test_runs_are_newest_first(many: tuple[LiveReceiver, list[RunEvents]]) -> None:
    """The listing is ordered by start time, newest first."""
    live, _ = many
    starts = [r["started_at"] for r in live.get("/api/runs?limit=100").json()["runs"]]
    assert starts == sorted(starts, reverse=True)


def test_filters_by_workflow_and_status(many: tuple[LiveReceiver, list[RunEvents]]) -> None:
    """workflow_id and status narrow the listing and its total."""
    live, _ = many
    a = live.get("/api/runs", params={"workflow_id": "a"}).json()
    assert a["total"] == 5
    assert {r["workflow_id"] for r in a["runs"]} == {"a"}
    running = live.get("/api/runs", params={"status": "running"}).json()
    assert running["total"] == 1
    assert live.get("/api/runs", params={"workflow_id": "b", "status": "succeeded"}).json()["total"] == 5


def test_paging_is_stable_and_complete(many: tuple[LiveReceiver, list[RunEvents]]) -> None:
    """Pages of 5 cover every run exactly once."""
    live, runs = many
    seen: list[str] = []
    for offset in range(0, 15, 5):
        seen += [r["run_id"] for r in live.get("/api/runs", params={"limit": 5, "offset": offset}).json()["runs"]]
    assert sorted(seen) == sorted(r.run_id for r in runs)


@pytest.mark.parametrize(
    "params",
    [{"limit": "0"}, {"limit": "x"}, {"limit": "5000"}, {"offset": "-1"}, {"status": "sleeping"}],
)
def test_bad_query_parameters_are_400(live: LiveReceiver, params: dict[str, str]) -> None:
    """A query parameter out of range or of the wrong kind is a 400 naming it."""
    answer = live.get("/api/runs", params=params)
    assert answer.status_code == 400
    assert next(iter(params)) in answer.json()["error"]


def test_next_cursor_pages_through_every_run(many: tuple[LiveReceiver, list[RunEvents]]) -> None:
    """next is an opaque cursor: passed back as cursor= it gives the following page, null after the last."""
    live, runs = many
    seen: list[str] = []
    body = live.get("/api/runs", params={"limit": 5}).json()
    while True:
        seen += [r["run_id"] for r in body["runs"]]
        assert body["total"] == len(runs)
        assert body["total_capped"] is False
        if body["next"] is None:
            break
        body = live.get("/api/runs", params={"limit": 5, "cursor": body["next"]}).json()
    assert sorted(seen) == sorted(r.run_id for r in runs)
    assert len(seen) == len(runs)
    bad = live.get("/api/runs", params={"cursor": "not-a-cursor"})
    assert bad.status_code == 400
    assert "cursor" in bad.json()["error"]
    for key in (
        ["2024-01-01T00:00:00.000000Z", "x", "\ud800"],
        ["2024-01-01T00:00:00.000000Z", "x\u0000y"],
        ["not a time", "x", "p"],  # answered a page from wherever that text sorts
        ["2024-01-01T00:00:00Z", "x", "p"],  # a time, but not as the store keeps it: no cursor made it
    ):
        token = base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")  # a lone surrogate, a NUL
        for route in ("/api/runs", "/api/viewer/runs"):
            refused = live.get(route, params={"cursor": token})
            assert refused.status_code == 400, (route, key, refused.text)  # was 500: the database refused the text


def test_total_is_capped_and_says_so(
    many: tuple[LiveReceiver, list[RunEvents]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the count cap the total stops there with total_capped true: no request counts every row."""
    live, _runs = many
    monkeypatch.setattr(_sqlite, "TOTAL_COUNT_MAX", 4)
    body = live.get("/api/runs", params={"limit": 2}).json()
    assert (body["total"], body["total_capped"]) == (4, True)
    assert len(body["runs"]) == 2
    exact = live.get("/api/runs", params={"workflow_id": "zzz"}).json()
    assert (exact["total"], exact["total_capped"]) == (0, False)


@pytest.mark.parametrize("route", ["/api/runs", "/api/export"])
def test_unknown_query_parameters_are_400_naming_them(many: tuple[LiveReceiver, list[RunEvents]], route: str) -> None:
    """A misspelt filter (?workflow=x) is a 400 naming it, never a listing of everything."""
    live, _runs = many
    answer = live.get(route, params={"workflow": "a", "limmit": "3"})
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert "'workflow'" in error
    assert "'limmit'" in error
    assert "workflow_id" in error  # says what the route takes


def test_every_api_route_refuses_an_unknown_query_parameter(many: tuple[LiveReceiver, list[RunEvents]]) -> None:
    """Every route of the API and the viewer's, whatever it reads, answers an unknown parameter with a 400 naming
    it before doing anything (the ingest routes, whose input is their body, excepted)."""
    live, runs = many
    run = runs[0]
    run_id, span_id, trace_id = run.run_id, run.events[1]["data"]["span_id"], run.trace_id
    routes = {
        "GET": ["/api/coverage", "/api/diff", "/api/errors", "/api/export", "/api/metrics/custom", "/api/otlp/logs",
                "/api/otlp/metrics", "/api/otlp/stats", "/api/reconcile", "/api/runs", f"/api/runs/{run_id}",
                f"/api/runs/{run_id}/attempts/{span_id}/logs", f"/api/runs/{run_id}/chain",
                f"/api/runs/{run_id}/outputs", "/api/sampling", "/api/stats", f"/api/traces/{trace_id}", "/api/tree",
                "/api/tree/consistency", f"/api/tree/runs/{run_id}", "/api/verify", "/api/viewer/facets",
                "/api/viewer/runs", f"/api/viewer/runs/{run_id}", f"/api/viewer/runs/{run_id}/attempts",
                f"/api/viewer/runs/{run_id}/attempts/{span_id}", f"/api/viewer/runs/{run_id}/attempts/{span_id}/input",
                f"/api/viewer/runs/{run_id}/payload/input", "/api/viewer/summary", "/healthz", "/metrics",
                "/openapi.json"],
        "POST": ["/api/purge", "/api/rebuild", "/api/reconcile", f"/api/runs/{run_id}/resume"],
        "DELETE": [f"/api/runs/{run_id}"],
    }  # fmt: skip
    with httpx.Client(base_url=live.url, timeout=30) as client:
        for method, paths in routes.items():
            for path in paths:
                answer = client.request(method, path, params={"zz_unknown": "1"})
                assert answer.status_code == 400, (method, path, answer.status_code, answer.text[:200])
                assert "'zz_unknown'" in answer.json()["error"], (method, path)
    assert live.get(f"/api/runs/{run_id}").status_code == 200  # the DELETE refused did nothing


def test_a_bad_project_name_is_400_on_every_route_that_takes_one(many: tuple[LiveReceiver, list[RunEvents]]) -> None:
    """?project=bad%20name is a 400 naming it on a run's routes too, as on the listing (it was "no such run")."""
    live, runs = many
    run_id = runs[0].run_id
    with httpx.Client(base_url=live.url, timeout=30) as client:
        for method, path in (("GET", "/api/runs"), ("GET", f"/api/runs/{run_id}"), ("DELETE", f"/api/runs/{run_id}"),
                             ("GET", f"/api/runs/{run_id}/chain"), ("GET", f"/api/viewer/runs/{run_id}")):  # fmt: skip
            answer = client.request(method, path, params={"project": "bad name"})
            assert answer.status_code == 400, (method, path, answer.text)
            assert "'bad name' is not a project name" in answer.json()["error"], (method, path)
        assert client.get(f"/api/runs/{run_id}", params={"project": ""}).status_code == 200  # the run of no project


def test_a_single_valued_parameter_given_twice_is_400(many: tuple[LiveReceiver, list[RunEvents]]) -> None:
    """?workflow_id=a&workflow_id=b is refused rather than silently reduced to one of them."""
    live, _runs = many
    answer = live.get("/api/runs?workflow_id=a&workflow_id=b")
    assert answer.status_code == 400
    assert "workflow_id" in answer.json()["error"]


def test_status_may_repeat(live: LiveReceiver) -> None:
    """?status=failed&status=aborted lists the runs in either status, on /api/runs and /api/export."""
    failed = RunEvents().start().node("fetch").finish("failed", error_node="fetch")
    aborted = RunEvents().start().node("fetch").finish("aborted", error_node="fetch")
    done = simple_run()
    live.post([e for run in (failed, aborted, done) for e in run.events])
    body = live.get("/api/runs?status=failed&status=aborted").json()
    assert body["total"] == 2
    assert {r["run_id"] for r in body["runs"]} == {failed.run_id, aborted.run_id}
    exported = live.get("/api/export?format=jsonl&status=failed&status=aborted&status=failed").text.splitlines()
    assert {json.loads(line)["run_id"] for line in exported} == {failed.run_id, aborted.run_id}
    assert live.get("/api/runs?status=failed&status=sleeping").status_code == 400


def test_one_run_with_nodes_in_start_order(live: LiveReceiver) -> None:
    """GET /api/runs/{id} lists every attempt (retries, mapped items, skipped) in start order."""
    run = typical_run()
    live.post(run.events)
    body = live.get(f"/api/runs/{run.run_id}").json()
    nodes = body["nodes"]
    for node in nodes:
        assert node.keys() >= DOCUMENTED_NODE_FIELDS
    assert [(n["node_id"], n["attempt"], n["item"], n["status"]) for n in nodes] == [
        ("fetch", 1, None, "succeeded"),
        ("price", 1, None, "failed"),
        ("price", 2, None, "succeeded"),
        ("stock", 1, 0, "succeeded"),
        ("stock", 1, 1, "succeeded"),
        ("notify", 1, None, "skipped"),
    ]
    assert nodes[1]["error"] == {"type": "ValueError", "message": "price broke", "stack": "Traceback ..."}
    assert nodes[5]["skip_reason"] == "upstream failed"
    assert nodes[0]["input"] == {"node": "fetch", "item": None}
    assert nodes[0]["location"] == {"file": "shop/steps.py", "line": 10}
    assert body["input"] == {"order": 42, "password": "[REDACTED]"}
    assert body["output"] == {"decision": "ship"}


def test_unknown_run_is_404(live: LiveReceiver) -> None:
    """A run id that is not stored answers 404 with an error body."""
    answer = live.get("/api/runs/nope")
    assert answer.status_code == 404
    assert "nope" in answer.json()["error"]


def test_unknown_route_is_json_404(live: LiveReceiver) -> None:
    """Routes that do not exist answer with the same JSON error shape."""
    answer = live.get("/api/nothing")
    assert answer.status_code == 404
    assert "error" in answer.json()


def test_export_jsonl_streams_runs_with_nodes(many: tuple[LiveReceiver, list[RunEvents]]) -> None:
    """GET /api/export?format=jsonl gives one JSON line per run, nodes included."""
    live, runs = many
    lines = live.get("/api/export", params={"format": "jsonl"}).text.splitlines()
    assert len(lines) == len(runs)
    parsed = [json.loads(line) for line in lines]
    assert all("nodes" in run for run in parsed)


def test_export_csv_has_a_header_and_a_row_per_run(many: tuple[LiveReceiver, list[RunEvents]]) -> None:
    """GET /api/export?format=csv gives a header and one flattened row per run."""
    live, runs = many
    rows = list(csv.DictReader(io.StringIO(live.get("/api/export", params={"format": "csv"}).text)))
    assert len(rows) == len(runs)
    assert {"run_id", "status", "error_type", "cost_usd"} <= set(rows[0])


def test_export_csv_neutralises_formulas_and_nul(live: LiveReceiver) -> None:
    """CSV cells starting with = + - @ tab or CR get a leading apostrophe; NUL is never written raw; JSONL is exact."""
    hostile = {
        '=HYPERLINK("http://x","y")': '\'=HYPERLINK("http://x","y")',
        "+1+2": "'+1+2",
        "-2+3": "'-2+3",
        "@SUM(A1)": "'@SUM(A1)",
        "\t=1": "'\t=1",
        "\r=1": "'\r=1",
        "a\x00b": "a\ufffdb",
        "plain =1": "plain =1",
    }
    runs = [RunEvents().start(workflow_name=name).node("fetch").finish() for name in hostile]
    live.post([e for run in runs for e in run.events])
    text = live.get("/api/export", params={"format": "csv"}).text
    assert "\x00" not in text
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    got = {row["run_id"]: row["workflow_name"] for row in rows}
    assert {got[run.run_id] for run in runs} == set(hostile.values())
    assert all(row["cost_usd"] == "0.004" for row in rows)  # numbers stay numbers
    exact = [json.loads(line) for line in live.get("/api/export", params={"format": "jsonl"}).text.splitlines()]
    assert {run["workflow_name"] for run in exact} == set(hostile)


def test_money_is_exact_in_the_api_and_the_export(live: LiveReceiver) -> None:
    """A noisy dollar amount from an older SDK is listed and exported as the amount it stands for."""
    run = RunEvents().start().node("fetch").finish()
    run.events[-1]["data"]["cost"]["usd"] = 0.6000000000000003
    live.post(run.events)
    assert repr(live.get(f"/api/runs/{run.run_id}").json()["cost"]["usd"]) == "0.6"
    rows = list(csv.DictReader(io.StringIO(live.get("/api/export", params={"format": "csv"}).text, newline="")))
    assert rows[0]["cost_usd"] == "0.6"


def test_healthz(live: LiveReceiver) -> None:
    """/healthz answers ok."""
    assert live.get("/healthz").json() == {"status": "ok"}
