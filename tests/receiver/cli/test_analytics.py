"""``flowledger errors`` on --db and --url: the same groups, a table, usage errors naming the option."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from flowledger.receiver.cli._analytics import errors_command, stats_command
from flowledger.receiver.cli._commands import show_command
from tests.receiver._support import LiveReceiver, RunEvents, simple_run, typical_run


@pytest.fixture
def failing(live: LiveReceiver) -> LiveReceiver:
    """Three failed runs of two workflows and two that succeeded."""
    runs: list[RunEvents] = [
        typical_run(),
        typical_run(),
        typical_run(workflow_id="billing"),
        simple_run(),
        simple_run(),
    ]
    assert live.post([e for run in runs for e in run.events]).status_code == 200
    return live


def _where(live: LiveReceiver, how: str) -> list[str]:
    return ["--db", str(live.db_path)] if how == "db" else ["--url", live.url]


@pytest.mark.parametrize("how", ["db", "url"])
def test_errors_json_is_the_api_answer(failing: LiveReceiver, how: str) -> None:
    """errors --json prints GET /api/errors, from the file and from the receiver alike."""
    result = CliRunner().invoke(errors_command, ["--json", *_where(failing, how)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == failing.get("/api/errors").json()
    groups = json.loads(result.output)["groups"]
    assert [(g["workflow_id"], g["count"]) for g in groups] == [("order-intake", 2), ("billing", 1)]


def test_errors_filters_by_workflow(failing: LiveReceiver) -> None:
    """--workflow narrows the groups."""
    result = CliRunner().invoke(errors_command, ["--json", "--workflow", "billing", *_where(failing, "db")])
    assert [g["workflow_id"] for g in json.loads(result.output)["groups"]] == ["billing"]


def test_errors_table_shows_count_error_and_place(failing: LiveReceiver) -> None:
    """The table has the count, the normalised error, the workflow and the fingerprint."""
    result = CliRunner().invoke(errors_command, _where(failing, "db"), terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "2 error groups, biggest first" in result.output
    line = next(line for line in result.output.splitlines() if "order-intake" in line)
    assert line.split()[:3] == ["2", "ValueError:", "price"]
    assert (
        json.loads(CliRunner().invoke(errors_command, ["--json", *_where(failing, "db")]).output)["groups"][0][
            "fingerprint"
        ]
        in line
    )


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--since", "yesterday"], "--since"),
        (["--since", "2026-02-01T00:00:00Z", "--until", "2026-01-01T00:00:00Z"], "--until"),
        (["--limit", "0"], "--limit"),
    ],
)
def test_a_bad_option_is_a_usage_error_naming_it(failing: LiveReceiver, args: list[str], named: str) -> None:
    """A bad time or limit exits 2 and names the option."""
    result = CliRunner().invoke(errors_command, [*args, *_where(failing, "db")])
    assert result.exit_code == 2
    assert named in result.output


def test_flowledger_errors_runs_as_a_command(failing: LiveReceiver) -> None:
    """The installed command answers ``flowledger errors --json`` in a real process."""
    out = subprocess.run(
        [sys.executable, "-m", "flowledger", "errors", "--json", "--db", str(failing.db_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert len(json.loads(out.stdout)["groups"]) == 2


@pytest.mark.parametrize("how", ["db", "url"])
def test_stats_json_is_the_api_answer(failing: LiveReceiver, how: str) -> None:
    """stats --json --by node --bucket day prints GET /api/stats with the same parameters."""
    args = ["--json", "--by", "node", "--bucket", "day", *_where(failing, how)]
    result = CliRunner().invoke(stats_command, args)
    assert result.exit_code == 0, result.output
    api = failing.get("/api/stats", params={"by": "node", "bucket": "day"}).json()
    assert json.loads(result.output) == api
    assert {g["key"] for g in api["groups"]} >= {"order-intake/price", "billing/price"}


def test_stats_table_shows_each_workflow(failing: LiveReceiver) -> None:
    """The default table has a row per workflow with runs, failures and success rate."""
    result = CliRunner().invoke(stats_command, _where(failing, "db"))
    assert result.exit_code == 0, result.output
    assert "2 workflows, most runs first" in result.output
    row = next(line for line in result.output.splitlines() if "order-intake" in line).split()
    assert row[1:4] == ["4", "2", "50.0%"]


@pytest.mark.parametrize(
    ("args", "named"),
    [(["--by", "user"], "--by"), (["--since", "soon"], "--since"), (["--bucket", "week"], "--bucket")],
)
def test_stats_bad_option_is_a_usage_error(failing: LiveReceiver, args: list[str], named: str) -> None:
    """A bad --by, time or bucket exits 2 naming the option."""
    result = CliRunner().invoke(stats_command, [*args, *_where(failing, "db")])
    assert result.exit_code == 2
    assert named in result.output


@pytest.mark.parametrize("how", ["db", "url"])
def test_errors_name_each_sample_runs_project(live: LiveReceiver, how: str) -> None:
    """Keys off, one run id failing in two projects: errors --json gives each sample run with its project (the
    ids alone stay in sample_run_ids, in the same order), and each opens with show --project."""
    run = typical_run(project="alpha")
    other = [{**event, "project": "beta"} for event in run.events]
    assert live.post([*run.events, *other]).json()["rejected"] == []
    result = CliRunner().invoke(errors_command, ["--json", *_where(live, how)])
    assert result.exit_code == 0, result.output
    [group] = json.loads(result.output)["groups"]
    assert sorted((s["run_id"], s["project"]) for s in group["sample_runs"]) == [
        (run.run_id, "alpha"),
        (run.run_id, "beta"),
    ]
    assert group["sample_run_ids"] == [s["run_id"] for s in group["sample_runs"]]
    for sample in group["sample_runs"]:
        args = [sample["run_id"], "--project", sample["project"], "--json", *_where(live, how)]
        shown = CliRunner().invoke(show_command, args)
        assert shown.exit_code == 0, shown.output
        assert json.loads(shown.output)["project"] == sample["project"]
