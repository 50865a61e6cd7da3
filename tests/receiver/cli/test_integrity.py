"""coverage and reconcile on --db and --url: missing core events posted through a real receiver, projections
edited by hand with sqlite3, repair, and usage errors."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from flowledger.receiver.cli._integrity import coverage_command, reconcile_command
from flowledger.receiver.cli._lifecycle import purge_command
from tests.receiver._support import LiveReceiver, RunEvents, simple_run, typical_run


def _where(live: LiveReceiver, how: str) -> list[str]:
    return ["--db", str(live.db_path)] if how == "db" else ["--url", live.url]


def _renumbered(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events with their producer's sequence numbers made contiguous again (so no gap is left behind)."""
    for number, event in enumerate(events):
        event["producer_seq"] = number
    return events


def _without(run: RunEvents, kind: str) -> list[dict[str, Any]]:
    """The run's events less the first one of ``kind``."""
    first = next(i for i, e in enumerate(run.events) if e["kind"] == kind)
    return run.events[:first] + run.events[first + 1 :]


@pytest.fixture
def incomplete(live: LiveReceiver) -> tuple[LiveReceiver, dict[str, RunEvents]]:
    """A receiver holding one complete run and one run for each kind of missing core event."""
    complete = typical_run()
    unfinished = RunEvents(workflow_id="wa").start().node("fetch")  # no run_finished, silent for months
    node_open = RunEvents().start().node("fetch").node("price").finish()
    gap = RunEvents().start().node("fetch").heartbeat().finish()
    no_start = RunEvents().start().node("fetch").finish()
    batch = [
        *complete.events,
        *unfinished.events,
        *_renumbered(_without(node_open, "node_finished")),
        *_without(gap, "heartbeat"),  # its producer never sent sequence number 3
        *_renumbered(_without(no_start, "run_started")),
    ]
    answer = live.post(batch).json()
    assert answer["rejected"] == []
    assert answer["accepted"] == len(batch)
    return live, {"unfinished": unfinished, "node_open": node_open, "gap": gap, "no_start": no_start}


@pytest.mark.parametrize("how", ["db", "url"])
def test_coverage_passes_on_a_complete_ledger(live: LiveReceiver, how: str) -> None:
    """Finished runs with every event: PASS, exit 0, no session with gaps."""
    runs = [typical_run(), simple_run(), simple_run()]
    assert live.post([e for run in runs for e in run.events]).json()["rejected"] == []
    result = CliRunner().invoke(coverage_command, _where(live, how))
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[:2] == ["PASS", "sessions_with_gaps: 0 (0 events missing)"]
    report = json.loads(CliRunner().invoke(coverage_command, ["--json", *_where(live, how)]).output)
    assert report["status"] == "PASS"
    assert {kind: tally["count"] for kind, tally in report["kinds"].items()} == {
        "run_finished_missing": 0,
        "run_started_missing": 0,
        "node_finished_missing": 0,
        "producer_seq_gap": 0,
    }


@pytest.mark.parametrize("how", ["db", "url"])
def test_coverage_finds_each_missing_core_event(
    incomplete: tuple[LiveReceiver, dict[str, RunEvents]], how: str
) -> None:
    """A run without run_finished, an attempt never finished, a producer gap, a run without run_started:
    FAIL_CORE_MISSING, exit 1, each counted once with its sample."""
    live, runs = incomplete
    result = CliRunner().invoke(coverage_command, ["--json", *_where(live, how)])
    assert result.exit_code == 1, result.output
    report = json.loads(result.output)
    assert report["status"] == "FAIL_CORE_MISSING"
    assert report["sessions_with_gaps"] == 1
    assert report["events_missing"] == 1
    kinds = report["kinds"]
    assert {kind: tally["count"] for kind, tally in kinds.items()} == {
        "run_finished_missing": 1,
        "run_started_missing": 1,
        "node_finished_missing": 1,
        "producer_seq_gap": 1,
    }
    assert kinds["run_finished_missing"]["samples"][0]["run_id"] == runs["unfinished"].run_id
    assert kinds["run_started_missing"]["samples"][0]["run_id"] == runs["no_start"].run_id
    node_sample = kinds["node_finished_missing"]["samples"][0]
    assert (node_sample["run_id"], node_sample["node_id"], node_sample["run_status"]) == (
        runs["node_open"].run_id,
        "fetch",
        "succeeded",
    )
    gap_sample = kinds["producer_seq_gap"]["samples"][0]
    assert gap_sample["producer_id"] == runs["gap"].producer.producer_id
    assert gap_sample["missing"] == 1
    text = CliRunner().invoke(coverage_command, _where(live, how))
    assert text.exit_code == 1
    assert text.output.splitlines()[:2] == ["FAIL_CORE_MISSING", "sessions_with_gaps: 1 (1 events missing)"]
    assert f"run {runs['unfinished'].run_id} (wa, running)" in text.output


@pytest.mark.parametrize("how", ["db", "url"])
def test_coverage_filters_by_workflow_and_time(incomplete: tuple[LiveReceiver, dict[str, RunEvents]], how: str) -> None:
    """--workflow keeps that workflow's runs (and the sessions whose newest run is one); --since a later time
    keeps nothing older."""
    live, _ = incomplete
    only = json.loads(CliRunner().invoke(coverage_command, ["--json", "--workflow", "wa", *_where(live, how)]).output)
    assert {kind: tally["count"] for kind, tally in only["kinds"].items()} == {
        "run_finished_missing": 1,
        "run_started_missing": 0,
        "node_finished_missing": 0,
        "producer_seq_gap": 0,
    }
    later = CliRunner().invoke(coverage_command, ["--since", "2099-01-01T00:00:00Z", *_where(live, how)])
    assert later.exit_code == 0, later.output
    assert later.output.startswith("PASS\n")


def test_coverage_usage_errors_exit_2_and_the_route_answers_400(live: LiveReceiver) -> None:
    """A --since that is no time is a usage error (exit 2); the route refuses it and unknown parameters with 400."""
    result = CliRunner().invoke(coverage_command, ["--since", "yesterday", "--db", str(live.db_path)])
    assert result.exit_code == 2
    assert "--since" in result.output
    bad_time = httpx.get(f"{live.url}/api/coverage", params={"since": "yesterday"}, timeout=30)
    assert bad_time.status_code == 400
    assert "since" in bad_time.json()["error"]
    unknown = httpx.get(f"{live.url}/api/coverage", params={"workflow": "w"}, timeout=30)
    assert unknown.status_code == 400
    assert "'workflow'" in unknown.json()["error"]


def _edit_by_hand(db_path: Path, runs: list[RunEvents]) -> None:
    """Change one run's status, delete another run's row, add a run no event backs, change an attempt."""
    with sqlite3.connect(db_path) as conn:
        conn.execute("UPDATE runs SET status = 'succeeded' WHERE run_id = ?", (runs[0].run_id,))
        conn.execute("DELETE FROM runs WHERE run_id = ?", (runs[1].run_id,))
        conn.execute("INSERT INTO runs (run_id, status, workflow_id) VALUES ('zz-made-up', 'failed', 'w')")
        conn.execute("UPDATE node_runs SET duration_ms = 99999 WHERE run_id = ?", (runs[2].run_id,))
    conn.close()


@pytest.mark.parametrize("how", ["db", "url"])
def test_reconcile_finds_hand_edits_and_repairs_them(live: LiveReceiver, how: str) -> None:
    """Projection rows edited with sqlite3 are reported by kind with sample ids (exit 1); --repair rewrites them
    from the ledger (exit 0) and a further check is clean."""
    runs = [typical_run(), simple_run(), simple_run(), simple_run()]
    assert live.post([e for run in runs for e in run.events]).json()["rejected"] == []
    clean = CliRunner().invoke(reconcile_command, _where(live, how))
    assert clean.exit_code == 0, clean.output
    assert clean.output.startswith("clean: 4 runs checked")
    _edit_by_hand(live.db_path, runs)
    found = CliRunner().invoke(reconcile_command, ["--json", *_where(live, how)])
    assert found.exit_code == 1, found.output
    report = json.loads(found.output)
    assert report["clean"] is False
    assert report["status_mismatch"] == {"count": 1, "runs": 1, "attempts": 0, "samples": [runs[0].run_id]}
    assert report["missing_in_projection"]["runs"] == 1
    assert report["missing_in_projection"]["samples"][0] == runs[1].run_id
    assert report["missing_in_ledger"] == {"count": 1, "runs": 1, "attempts": 0, "samples": ["zz-made-up"]}
    assert report["field_mismatch"] == {
        "count": 1,
        "runs": 0,
        "attempts": 1,
        "samples": [f"{runs[2].run_id}/{runs[2].events[1]['data']['span_id']}"],
    }
    # The run whose row was deleted still has its attempts projected: only the run row is missing.
    assert report["missing_in_projection"]["attempts"] == 0
    repaired = CliRunner().invoke(reconcile_command, ["--repair", *_where(live, how)])
    assert repaired.exit_code == 0, repaired.output
    assert "repaired 4 runs from the ledger; checked again: clean" in repaired.output
    assert CliRunner().invoke(reconcile_command, _where(live, how)).exit_code == 0
    with sqlite3.connect(live.db_path) as conn:
        status = conn.execute("SELECT status FROM runs WHERE run_id = ?", (runs[0].run_id,)).fetchone()[0]
        made_up = conn.execute("SELECT count(*) FROM runs WHERE run_id = 'zz-made-up'").fetchone()[0]
        counted = conn.execute("SELECT sum(runs) FROM run_counts").fetchone()[0]
    conn.close()
    assert (status, made_up, counted) == ("failed", 0, 4)


def test_reconcile_leaves_purged_runs_and_the_sweepers_verdict_alone(live: LiveReceiver) -> None:
    """A purged run (gone from the projection, its payloads erased) and a run marked stuck are not drift."""
    purged, running = simple_run(), RunEvents().start().node("fetch")
    kept = typical_run()
    assert live.post([e for run in (purged, running, kept) for e in run.events]).json()["rejected"] == []
    assert CliRunner().invoke(purge_command, ["--run", purged.run_id, "--url", live.url]).exit_code == 0
    with sqlite3.connect(live.db_path) as conn:
        conn.execute("UPDATE runs SET status = 'stuck', stuck_reason = 'silent' WHERE run_id = ?", (running.run_id,))
    conn.close()
    result = CliRunner().invoke(reconcile_command, ["--json", "--db", str(live.db_path)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert (report["clean"], report["runs_checked"]) == (True, 2)


def test_reconcile_over_http_is_scoped_to_the_keys_project(tmp_path: Path) -> None:
    """With API keys on, GET /api/reconcile reports only the caller's project's runs."""
    from flowledger.receiver._config import ReceiverConfig
    from tests.receiver._support import start_receiver

    config = ReceiverConfig(
        db_path=tmp_path / "keys.db", sweep_interval_s=0, api_keys={"key-alpha": "alpha", "key-beta": "beta"}
    )
    live = start_receiver(config)
    try:
        alpha, beta = simple_run(project="alpha"), simple_run(project="beta")
        for run, key in ((alpha, "key-alpha"), (beta, "key-beta")):
            assert live.post(run.events, headers={"Authorization": f"Bearer {key}"}).json()["rejected"] == []
        with sqlite3.connect(live.db_path) as conn:
            conn.execute("UPDATE runs SET status = 'aborted' WHERE run_id = ?", (beta.run_id,))
        conn.close()
        as_alpha = live.get("/api/reconcile", headers={"Authorization": "Bearer key-alpha"}).json()
        as_beta = live.get("/api/reconcile", headers={"Authorization": "Bearer key-beta"}).json()
        assert (as_alpha["clean"], as_alpha["runs_checked"]) == (True, 1)
        assert as_beta["status_mismatch"]["samples"] == [beta.run_id]
        beta_key = {"Authorization": "Bearer key-beta"}
        assert live.get("/api/reconcile", params={"x": "1"}, headers=beta_key).status_code == 400
    finally:
        live.stop()


def test_a_stuck_threshold_for_a_receiver_is_a_usage_error(live: LiveReceiver) -> None:
    """--stuck-after-s applies to --db; with --url it is refused (exit 2), since the receiver uses its own."""
    result = CliRunner().invoke(coverage_command, ["--stuck-after-s", "10", "--url", live.url])
    assert result.exit_code == 2
    assert "--stuck-after-s applies to --db" in result.output
    assert CliRunner().invoke(coverage_command, ["--stuck-after-s", "10", "--db", str(live.db_path)]).exit_code == 0


def test_reconcile_over_http_goes_slice_by_slice(live: LiveReceiver) -> None:
    """GET /api/reconcile?limit=2 over five runs answers next until the last slice; the slices cover every run."""
    runs = [simple_run() for _ in range(5)]
    assert live.post([e for run in runs for e in run.events]).json()["rejected"] == []
    checked, after, requests = 0, None, 0
    while True:
        params = {"limit": "2", **({"after": after} if after else {})}
        answer = live.get("/api/reconcile", params=params).json()
        checked += answer["runs_checked"]
        requests += 1
        after = answer["next"]
        if after is None:
            break
    assert (checked, requests) == (5, 3)
    too_many = live.get("/api/reconcile", params={"limit": "20001"})
    assert too_many.status_code == 400
    assert "limit" in too_many.json()["error"]
