"""Run context end to end: the SDK in a real process, a real receiver, and the API, the CLI and the export."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from flowledger.receiver._config import ReceiverConfig
from flowledger.receiver.cli._commands import export_command, runs_command, show_command
from tests.receiver._support import LiveReceiver, simple_run, start_receiver

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import json
    import flowledger

    @flowledger.node
    def delegate(order):
        with flowledger.run("booker", agent_id="booker-agent", intent="book", data={"order": order}) as inner:
            inner.set_output({"booked": order})
        return "ok"

    with flowledger.run("planner", intent="plan-trip", user_id="u-7", data={"trip": 1}) as parent:
        delegate(1)
        parent.set_output({"planned": True})
    with flowledger.run("followup", parent_run_id=parent.run_id):
        pass
    try:
        with flowledger.run("planner", project="other", intent="plan-trip"):
            raise ValueError("no seats")
    except ValueError:
        pass
    flushed = flowledger.flush(timeout_s=10.0)
    print(json.dumps({"parent": parent.run_id, "flushed": flushed}))
    """
)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveReceiver, str]]:
    """A receiver holding the four runs of SCRIPT (sent by a real SDK process), and the parent run's id."""
    folder = tmp_path_factory.mktemp("context")
    live = start_receiver(ReceiverConfig(db_path=folder / "flowledger.db", sweep_interval_s=0))
    script = folder / "agents.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWLEDGER_", "OTEL_"))}
    env |= {
        "FLOWLEDGER_ENDPOINT": live.url,
        "FLOWLEDGER_SPOOL_DIR": str(folder / "spool"),
        "FLOWLEDGER_PROJECT": "travel",
        "FLOWLEDGER_USER_ID": "u-1",
        "FLOWLEDGER_AGENT_ID": "svc",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]),
    }
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["flushed"] is True
    yield live, out["parent"]
    live.stop()


def _runs(live: LiveReceiver, pairs: list[tuple[str, str]] | None = None, **params: Any) -> list[dict[str, Any]]:
    answer = live.get("/api/runs", params=pairs if pairs is not None else params)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["total"] == len(body["runs"])
    runs: list[dict[str, Any]] = body["runs"]
    return runs


def _names(runs: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    return sorted((r["workflow_id"], r["project"]) for r in runs)


def test_each_run_has_its_context(recorded: tuple[LiveReceiver, str]) -> None:
    """Arguments, the environment's defaults and the parent run decide each run's context."""
    live, parent = recorded
    by_workflow = {(r["workflow_id"], r["project"]): r for r in _runs(live)}
    context = {key: (r["user_id"], r["agent_id"], r["intent"], r["parent_run_id"]) for key, r in by_workflow.items()}
    assert context == {
        ("planner", "travel"): ("u-7", "svc", "plan-trip", None),
        ("booker", "travel"): ("u-7", "booker-agent", "book", parent),
        ("followup", "travel"): ("u-1", "svc", None, parent),
        ("planner", "other"): ("u-1", "svc", "plan-trip", None),
    }


def test_runs_filter_by_context_and_time(recorded: tuple[LiveReceiver, str]) -> None:
    """project, user_id, agent_id, intent, parent_run_id, since, until and repeated status narrow the listing."""
    live, parent = recorded
    assert _names(_runs(live, user_id="u-7")) == [("booker", "travel"), ("planner", "travel")]
    assert _names(_runs(live, agent_id="booker-agent")) == [("booker", "travel")]
    assert _names(_runs(live, intent="plan-trip", project="other")) == [("planner", "other")]
    assert _names(_runs(live, parent_run_id=parent)) == [("booker", "travel"), ("followup", "travel")]
    both = [("project", "travel"), ("status", "failed"), ("status", "succeeded")]
    assert len(_runs(live, both)) == 3
    assert _runs(live, project="travel", status="failed") == []
    assert len(_runs(live, since="2000-01-01T00:00:00Z", until="2999-01-01T00:00:00+02:00")) == 4
    assert _runs(live, since="2999-01-01T00:00:00Z") == []
    assert _runs(live, user_id="u-7", until="2000-01-01T00:00:00Z") == []


def test_a_run_lists_its_children(recorded: tuple[LiveReceiver, str]) -> None:
    """GET /api/runs/{id} of the parent has its two children with workflow and status; a child has none."""
    live, parent = recorded
    run = live.get(f"/api/runs/{parent}").json()
    children = run["children"]
    assert children["count"] == 2
    assert children["count_capped"] is False
    assert sorted((c["workflow_id"], c["status"]) for c in children["runs"]) == [
        ("booker", "succeeded"),
        ("followup", "succeeded"),
    ]
    child = live.get(f"/api/runs/{children['runs'][0]['run_id']}").json()
    assert child["parent_run_id"] == parent
    assert child["children"] == {"count": 0, "count_capped": False, "runs": []}


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"user_id": ""}, "user_id must not be empty"),
        ({"agent_id": "a" * 257}, "agent_id"),
        ({"parent_run_id": "not-a-run"}, "parent_run_id 'not-a-run' is not a run id"),
        ({"project": "two words"}, "project 'two words' is not a project name"),
        ({"since": "yesterday"}, "since='yesterday'"),
        ({"until": "2026-01-01T00:00:00"}, "until="),
        ({"agent": "x"}, "unknown query parameter 'agent'"),
        ({"intent": ["a", "b"]}, "intent is given 2 times"),
    ],
)
@pytest.mark.parametrize("route", ["/api/runs", "/api/export"])
def test_a_bad_filter_is_a_400_naming_it(
    recorded: tuple[LiveReceiver, str], route: str, params: dict[str, Any], named: str
) -> None:
    """A filter value no run can have, or an unknown parameter, is refused with 400 naming the parameter."""
    live, _ = recorded
    answer = live.get(route, params=params)
    assert answer.status_code == 400
    assert named in answer.json()["error"]


def test_export_filters_and_carries_input_and_output(recorded: tuple[LiveReceiver, str]) -> None:
    """The JSONL export narrowed to one agent has the run with its input, output and nodes; CSV has the fields."""
    live, parent = recorded
    lines = live.get("/api/export", params={"format": "jsonl", "agent_id": "booker-agent"}).text.splitlines()
    (booker,) = [json.loads(line) for line in lines]
    assert booker["input"] == {"order": 1}
    assert booker["output"] == {"booked": 1}
    assert booker["parent_run_id"] == parent
    assert booker["nodes"] == []
    (planner,) = [
        json.loads(line)
        for line in live.get(
            "/api/export", params={"format": "jsonl", "workflow_id": "planner", "status": "succeeded"}
        ).text.splitlines()
    ]
    assert (planner["input"], planner["output"]) == ({"trip": 1}, {"planned": True})
    assert [n["node_id"] for n in planner["nodes"]] == ["delegate"]
    text = live.get(
        "/api/export", params=[("format", "csv"), ("project", "travel"), ("since", "2000-01-01T00:00:00Z")]
    ).text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 3
    assert {"project", "user_id", "agent_id", "intent", "parent_run_id"} <= set(rows[0])
    assert sorted(r["agent_id"] for r in rows) == ["booker-agent", "svc", "svc"]


def _where(live: LiveReceiver, how: str) -> list[str]:
    return ["--db", str(live.db_path)] if how == "db" else ["--url", live.url]


@pytest.mark.parametrize("how", ["db", "url"])
def test_the_cli_filters_shows_and_exports_the_context(recorded: tuple[LiveReceiver, str], how: str) -> None:
    """runs, show and export take the filters and show the context, on --db and --url alike."""
    live, parent = recorded
    runner = CliRunner()
    listed = runner.invoke(
        runs_command, ["--json", "--user-id", "u-7", "--since", "2000-01-01T00:00:00Z", *_where(live, how)]
    )
    assert listed.exit_code == 0, listed.output
    assert sorted(r["workflow_id"] for r in json.loads(listed.output)["runs"]) == ["booker", "planner"]
    children = runner.invoke(runs_command, ["--json", "--parent-run-id", parent, *_where(live, how)])
    assert json.loads(children.output)["total"] == 2
    other = runner.invoke(runs_command, ["--json", "--project", "other", "--intent", "plan-trip", *_where(live, how)])
    assert [r["status"] for r in json.loads(other.output)["runs"]] == ["failed"]
    shown = runner.invoke(show_command, [parent, *_where(live, how)], terminal_width=200)
    assert shown.exit_code == 0, shown.output
    assert "intent plan-trip" in shown.output
    assert "user   u-7" in shown.output
    assert "children 2" in shown.output
    exported = runner.invoke(
        export_command,
        ["--format", "jsonl", "--agent-id", "booker-agent", "--until", "2999-01-01T00:00:00Z", *_where(live, how)],
    )
    assert exported.exit_code == 0, exported.output
    (booker,) = [json.loads(line) for line in exported.output.splitlines()]
    assert (booker["input"], booker["output"]) == ({"order": 1}, {"booked": 1})


_WIDE = {"COLUMNS": "200"}
"""A terminal wide enough for every column of the table of runs on one line."""


@pytest.mark.parametrize("how", ["db", "url"])
def test_the_runs_table_shows_the_context_columns_when_a_run_has_them(
    recorded: tuple[LiveReceiver, str], how: str
) -> None:
    """The table of runs has project, user, agent and intent columns when a listed run has one, and not otherwise;
    in a narrow terminal they share one column."""
    live, _ = recorded
    runner = CliRunner()
    table = runner.invoke(runs_command, ["--workflow", "booker", *_where(live, how)], env=_WIDE)
    assert table.exit_code == 0, table.output
    header = next(line for line in table.output.splitlines() if "run_id" in line).split()
    assert header[:5] == ["run_id", "workflow", "project", "user", "agent"]
    assert "intent" in header
    row = next(line for line in table.output.splitlines() if "booker-agent" in line).split()
    assert row[1:5] == ["booker", "travel", "u-7", "booker-agent"]
    assert "book" in row
    followup = runner.invoke(runs_command, ["--workflow", "followup", *_where(live, how)], env=_WIDE)
    header = next(line for line in followup.output.splitlines() if "run_id" in line).split()
    assert "intent" not in header  # no listed run has one
    assert header[:5] == ["run_id", "workflow", "project", "user", "agent"]
    narrow = runner.invoke(runs_command, ["--workflow", "booker", *_where(live, how)], env={"COLUMNS": "80"})
    lines = narrow.output.splitlines()
    header_line = next(line for line in lines if "run_id" in line)
    assert header_line.split()[:3] == ["run_id", "workflow", "context"]
    at = header_line.index("context")  # the context shares one column, a value a line
    cells = [line[at:].split()[0] for line in lines[3:] if line[at:].strip()]
    assert cells[:2] == ["travel", "u-7"]
    assert "".join(cells[2:]) == "booker-agentbook"  # a long value folds within the column


def test_the_runs_table_has_no_context_columns_when_no_run_has_context(tmp_path: Path) -> None:
    """Runs without any context are listed in the table without the project, user, agent and intent columns."""
    live = start_receiver(ReceiverConfig(db_path=tmp_path / "plain.db", sweep_interval_s=0))
    try:
        live.post(simple_run().events)
        table = CliRunner().invoke(runs_command, ["--db", str(live.db_path)], env=_WIDE)
    finally:
        live.stop()
    assert table.exit_code == 0, table.output
    header = next(line for line in table.output.splitlines() if "run_id" in line).split()
    assert header == ["run_id", "workflow", "status", "mode", "started_at", "duration", "error"]


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--since", "yesterday"], "--since"),
        (["--parent-run-id", "nope"], "--parent-run-id"),
        (["--user-id", ""], "--user-id"),
        (["--project", "a b"], "--project"),
    ],
)
def test_the_cli_refuses_a_bad_filter_naming_the_option(
    recorded: tuple[LiveReceiver, str], args: list[str], named: str
) -> None:
    """A bad filter value is a usage error (exit 2) that names the option, before anything is read."""
    live, _ = recorded
    for command in (runs_command, export_command):
        extra = ["--format", "csv"] if command is export_command else []
        result = CliRunner().invoke(command, [*extra, *args, "--db", str(live.db_path)])
        assert result.exit_code == 2, result.output
        assert named in result.output


def test_the_viewer_list_takes_the_context_filters(recorded: tuple[LiveReceiver, str]) -> None:
    """The viewer's run list narrows by the same filters, and refuses a bad one with 400 naming it."""
    live, parent = recorded
    page = live.get("/api/viewer/runs", params={"parent_run_id": parent, "agent_id": "booker-agent"}).json()
    assert [r["workflow_id"] for r in page["runs"]] == ["booker"]
    summary = live.get("/api/viewer/summary", params={"user_id": "u-7"}).json()
    assert summary["total"] == 2
    answer = live.get("/api/viewer/runs", params={"parent_run_id": "0190"})
    assert answer.status_code == 400
    assert "parent_run_id" in answer.json()["error"]


def test_a_project_filter_narrows_within_the_api_keys_project(tmp_path: Path) -> None:
    """With API keys on, project= never shows another project's runs: it only narrows the key's own."""
    live = start_receiver(
        ReceiverConfig(db_path=tmp_path / "keys.db", sweep_interval_s=0, api_keys={"key-t": "travel", "key-o": "other"})
    )
    try:
        for key, project in (("key-t", "travel"), ("key-o", "other")):
            run = simple_run()
            run.events[0]["data"]["agent_id"] = "booker"
            answer = live.post(run.events, headers={"Authorization": f"Bearer {key}"})
            assert answer.json()["accepted"] == len(run.events), project
        travel = {"Authorization": "Bearer key-t"}
        mine = live.get("/api/runs", params={"agent_id": "booker"}, headers=travel).json()
        assert [r["project"] for r in mine["runs"]] == ["travel"]
        assert live.get("/api/runs", params={"project": "other"}, headers=travel).json()["total"] == 0
        assert live.get("/api/runs", params={"project": "travel"}, headers=travel).json()["total"] == 1
    finally:
        live.stop()
