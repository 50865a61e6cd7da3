"""Finding runs: GET /api/runs?q= (errors, log lines, payload text), attr.KEY=VALUE, and runs --search."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from typing import Any

import httpx
import pytest

from tests.receiver._support import LiveReceiver, RunEvents


def _ids(live: LiveReceiver, **params: Any) -> set[str]:
    answer = live.get("/api/runs", params=params)
    assert answer.status_code == 200, answer.text
    return {run["run_id"] for run in answer.json()["runs"]}


@pytest.fixture
def three_runs(live: LiveReceiver) -> dict[str, RunEvents]:
    """A run that failed on a timeout, one whose node logged about a refund, one carrying a customer payload."""
    failed = RunEvents().start(attributes={"region": "eu", "tier": 2, "beta": True}).node("charge", status="failed")
    failed.finish("failed", error_node="charge")
    logged = RunEvents().start(attributes={"region": "us"}).node("refund")
    logged.logs("refund", ["refund issued to acct-7781 after dispute"]).finish()
    payload = RunEvents().start().node("lookup", output={"customer": "Zanzibar Trading", "vip": True}).finish()
    posted = live.post(failed.events + logged.events + payload.events)
    assert posted.json()["accepted"] == len(failed.events + logged.events + payload.events)
    return {"failed": failed, "logged": logged, "payload": payload}


def test_search_matches_errors_log_lines_and_payload_text(live: LiveReceiver, three_runs: dict[str, RunEvents]) -> None:
    """Each kind of text finds its run and no other; every word must match, the last as a prefix."""
    assert _ids(live, q="charge broke") == {three_runs["failed"].run_id}
    assert _ids(live, q="dispute acct") == {three_runs["logged"].run_id}
    assert _ids(live, q="zanzib") == {three_runs["payload"].run_id}
    assert _ids(live, q="refund zanzibar") == set()
    # FTS5's own syntax is taken as text, never as a query.
    assert _ids(live, q='NEAR("refund" OR *') == set()
    both = live.get("/api/runs", params={"q": "order", "status": "failed"}).json()
    assert [run["run_id"] for run in both["runs"]] == [three_runs["failed"].run_id]


def test_an_id_looking_search_lists_that_run(live: LiveReceiver, three_runs: dict[str, RunEvents]) -> None:
    """The start of a run id finds that run; hex that starts no id is searched as text."""
    run_id = three_runs["logged"].run_id
    assert _ids(live, q=run_id) == {run_id}
    assert run_id in _ids(live, q=run_id[:13])
    assert _ids(live, q="ffffffff") == set()


def test_attribute_filters(live: LiveReceiver, three_runs: dict[str, RunEvents]) -> None:
    """attr.KEY=VALUE matches runs started with that attribute (values as text), repeatable, with q too."""
    failed = three_runs["failed"].run_id
    assert _ids(live, **{"attr.region": "eu"}) == {failed}
    assert _ids(live, **{"attr.region": "eu", "attr.tier": "2", "attr.beta": "true"}) == {failed}
    assert _ids(live, **{"attr.region": "eu", "attr.tier": "3"}) == set()
    assert _ids(live, **{"attr.region": "us", "q": "dispute"}) == {three_runs["logged"].run_id}
    refused = live.get("/api/runs", params={"attr.": "x"})
    assert refused.status_code == 400
    assert "attr.KEY=VALUE" in refused.json()["error"]
    assert live.get("/api/runs", params={"attr." + "k" * 200: "x"}).status_code == 400


def test_bad_searches_are_400_naming_q(live: LiveReceiver) -> None:
    """A search without a word, or an over-long one, is a 400 naming the parameter, never a 500."""
    for text in ("!!!", "x" * 300):
        answer = live.get("/api/runs", params={"q": text})
        assert answer.status_code == 400
        assert "q" in answer.json()["error"]


def test_purge_removes_indexed_text(live: LiveReceiver, three_runs: dict[str, RunEvents]) -> None:
    """After a purge neither the API nor the FTS index finds the run's text."""
    run_id = three_runs["logged"].run_id
    assert httpx.delete(f"{live.url}/api/runs/{run_id}", timeout=30).status_code == 200
    assert _ids(live, q="dispute") == set()
    conn = sqlite3.connect(live.db_path)
    try:
        assert conn.execute("SELECT count(*) FROM search_fts WHERE search_fts MATCH 'dispute'").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM search_text WHERE run_id = ?", (run_id,)).fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM run_attributes WHERE run_id = ?", (run_id,)).fetchone()[0] == 0
        # The index is consistent with its content table.
        conn.execute("INSERT INTO search_fts (search_fts, rank) VALUES ('integrity-check', 1)")
    finally:
        conn.close()


def test_rebuild_keeps_search_answers(live: LiveReceiver, three_runs: dict[str, RunEvents]) -> None:
    """A rebuild refolds the indexed text: the same searches find the same runs."""
    before = {text: _ids(live, q=text) for text in ("broke", "dispute", "zanzibar")}
    assert httpx.post(f"{live.url}/api/rebuild", timeout=60).status_code == 200
    assert {text: _ids(live, q=text) for text in before} == before
    assert _ids(live, **{"attr.region": "eu"}) == {three_runs["failed"].run_id}


def test_runs_search_on_the_command_line(live: LiveReceiver, three_runs: dict[str, RunEvents]) -> None:
    """runs --search and --attr work over --url and --db; a bad --attr exits 2 naming it."""
    cli = [sys.executable, "-m", "flowledger", "runs", "--json"]
    for where in (["--url", live.url], ["--db", str(live.db_path)]):
        found = subprocess.run([*cli, "--search", "dispute", *where], capture_output=True, text=True, timeout=60)
        assert found.returncode == 0, found.stderr
        assert three_runs["logged"].run_id in found.stdout
        assert three_runs["failed"].run_id not in found.stdout
        by_attr = subprocess.run([*cli, "--attr", "region=eu", *where], capture_output=True, text=True, timeout=60)
        assert three_runs["failed"].run_id in by_attr.stdout
        assert three_runs["logged"].run_id not in by_attr.stdout
    bad = subprocess.run([*cli, "--attr", "region", "--db", str(live.db_path)], capture_output=True, text=True)
    assert bad.returncode == 2
    assert "--attr" in bad.stderr
