"""The purge command on --db and --url, its usage errors, and verify reporting what purges erased."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from flowledger.receiver.cli._commands import show_command, verify_command
from flowledger.receiver.cli._lifecycle import purge_command
from tests.receiver._support import LiveReceiver, RunEvents, simple_run, typical_run


@pytest.fixture
def filled(live: LiveReceiver) -> tuple[LiveReceiver, list[RunEvents]]:
    """A receiver with four runs of workflow ``w`` and one of ``other``."""
    runs = [typical_run(workflow_id="w"), *(simple_run(workflow_id="w") for _ in range(3)), simple_run()]
    assert live.post([e for run in runs for e in run.events]).json()["rejected"] == []
    return live, runs


def _where(live: LiveReceiver, how: str) -> list[str]:
    return ["--db", str(live.db_path)] if how == "db" else ["--url", live.url]


@pytest.mark.parametrize("how", ["db", "url"])
def test_purge_one_run_then_verify_reports_it(filled: tuple[LiveReceiver, list[RunEvents]], how: str) -> None:
    """purge --run erases the run; show no longer finds it; verify passes and says what was erased."""
    live, runs = filled
    gone = runs[0]
    result = CliRunner().invoke(purge_command, ["--run", gone.run_id, "--json", *_where(live, how)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["runs"] == [gone.run_id]
    assert report["events"] == len(gone.events)
    assert CliRunner().invoke(show_command, [gone.run_id, *_where(live, how)]).exit_code != 0
    verdict = CliRunner().invoke(verify_command, _where(live, how))
    assert verdict.exit_code == 0, verdict.output
    assert f"the payloads of {len(gone.events)} events of 1 runs" in verdict.output


@pytest.mark.parametrize("how", ["db", "url"])
def test_purge_a_workflow_before_a_time(filled: tuple[LiveReceiver, list[RunEvents]], how: str) -> None:
    """purge --workflow --before erases only that workflow's runs started before the time."""
    live, runs = filled
    w_runs = sorted(runs[:4], key=lambda r: r.started_at)
    result = CliRunner().invoke(
        purge_command, ["--workflow", "w", "--before", w_runs[2].started_at, "--json", *_where(live, how)]
    )
    assert result.exit_code == 0, result.output
    assert sorted(json.loads(result.output)["runs"]) == sorted(r.run_id for r in w_runs[:2])
    with sqlite3.connect(live.db_path) as conn:
        left = {row[0] for row in conn.execute("SELECT run_id FROM runs")}
    assert left == {r.run_id for r in (*w_runs[2:], runs[4])}
    assert CliRunner().invoke(verify_command, _where(live, how)).exit_code == 0


@pytest.mark.parametrize("how", ["db", "url", "api"])
def test_purge_before_a_time_finer_than_microseconds_takes_the_run_of_that_microsecond(
    filled: tuple[LiveReceiver, list[RunEvents]], how: str
) -> None:
    """`--before` (and the API's `before`) a tenth of a microsecond after a run's start purges that run: a finer
    fraction is rounded up, not cut (which made the bound the run's own start, and kept it); `before` in another
    ISO 8601 spelling is a 400 on the API."""
    live, runs = filled
    first = min(runs[:4], key=lambda r: r.started_at)
    assert first.started_at.endswith("Z")
    just_after = first.started_at[:-1] + "1Z"
    if how == "api":
        spaced = httpx.post(f"{live.url}/api/purge", json={"workflow_id": "w", "before": "2026-01-01 00:00:00Z"})
        assert spaced.status_code == 400, spaced.text
        answer = httpx.post(f"{live.url}/api/purge", json={"workflow_id": "w", "before": just_after})
        assert answer.status_code == 200, answer.text
        purged = answer.json()["runs"]
    else:
        result = CliRunner().invoke(
            purge_command, ["--workflow", "w", "--before", just_after, "--json", *_where(live, how)]
        )
        assert result.exit_code == 0, result.output
        purged = json.loads(result.output)["runs"]
    assert purged == [first.run_id]


def test_purge_records_who_asked(filled: tuple[LiveReceiver, list[RunEvents]]) -> None:
    """The purge entry's payload names the runs and the requester; it is the last ledger row."""
    live, runs = filled
    CliRunner().invoke(purge_command, ["--run", runs[1].run_id, "--db", str(live.db_path)])
    with sqlite3.connect(live.db_path) as conn:
        kind, body = conn.execute(
            "SELECT l.kind, p.body FROM ledger l JOIN payloads p ON p.seq = l.seq ORDER BY l.seq DESC LIMIT 1"
        ).fetchone()
    assert kind == "ledger.purge"
    record = json.loads(body)
    assert record["runs"] == [runs[1].run_id]
    assert record["by"] == "cli"
    assert record["selection"] == {"run_ids": [runs[1].run_id]}


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--run", "a", "--workflow", "w"],
        ["--run", "a", "--before", "2026-01-01T00:00:00Z"],
        ["--workflow", "w", "--before", "yesterday"],
        ["--workflow", "w", "--project", "alpha"],
    ],
    ids=["neither", "both", "before-without-workflow", "bad-time", "project-without-run"],
)
def test_purge_usage_errors_exit_2(tmp_path: Path, args: list[str]) -> None:
    """A purge without a clear selection is a usage error: exit 2, nothing touched."""
    result = CliRunner().invoke(purge_command, [*args, "--db", str(tmp_path / "none.db")])
    assert result.exit_code == 2, result.output
    assert not (tmp_path / "none.db").exists()


def test_purge_of_an_unknown_run_says_so(filled: tuple[LiveReceiver, list[RunEvents]]) -> None:
    """Nothing matched: exit 0 and a sentence, no purge entry."""
    live, _ = filled
    result = CliRunner().invoke(purge_command, ["--run", "nope", "--db", str(live.db_path)])
    assert result.exit_code == 0
    assert "nothing to purge" in result.output


@pytest.mark.parametrize("how", ["db", "url"])
def test_purge_of_a_run_id_two_projects_use_names_the_project(live: LiveReceiver, how: str) -> None:
    """Keys off, one run id in two projects: purge --run without --project erases nothing and says to name the
    project; with --project only that project's run goes."""
    run = typical_run(project="alpha")
    other = [{**event, "project": "beta"} for event in run.events]
    assert live.post([*run.events, *other]).json()["rejected"] == []
    refused = CliRunner().invoke(purge_command, ["--run", run.run_id, *_where(live, how)])
    assert refused.exit_code == 2, refused.output  # name the project: a usage error
    assert "more than one project" in refused.output
    with sqlite3.connect(live.db_path) as conn:
        assert sorted(row[0] for row in conn.execute("SELECT project FROM runs")) == ["alpha", "beta"]
    result = CliRunner().invoke(purge_command, ["--run", run.run_id, "--project", "beta", "--json", *_where(live, how)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["runs"] == [run.run_id]
    with sqlite3.connect(live.db_path) as conn:
        assert [row[0] for row in conn.execute("SELECT project FROM runs")] == ["alpha"]
    assert CliRunner().invoke(verify_command, _where(live, how)).exit_code == 0
