"""``flowledger diff`` and ``GET /api/diff`` on runs of a real generated workflow."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from flowledger.receiver._config import ReceiverConfig
from flowledger.receiver.cli._diff_command import diff_command
from tests._five_steps import Workflow
from tests.receiver._support import LiveReceiver, start_receiver, typical_run


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveReceiver]:
    """A real receiver with a real SQLite ledger on 127.0.0.1."""
    receiver = start_receiver(ReceiverConfig(db_path=tmp_path / "ledger.db"))
    yield receiver
    receiver.stop()


@pytest.fixture
def wf(tmp_path: Path, live: LiveReceiver) -> Workflow:
    """The five-node workflow, generated."""
    folder = tmp_path / "work"
    folder.mkdir()
    return Workflow(folder, live)


def _succeeded(wf: Workflow, qty: int) -> str:
    done = wf.run("--input", json.dumps({"id": "A-1", "qty": qty}))
    assert done.returncode == 0, done.stderr
    return str(wf.latest_run()["run_id"])


def _diff(live: LiveReceiver, a: str, b: str, how: str) -> dict[str, Any]:
    where = ["--db", str(live.db_path)] if how == "db" else ["--url", live.url]
    result = CliRunner().invoke(diff_command, [a, b, "--json", *where])
    assert result.exit_code == 0, result.output
    out: dict[str, Any] = json.loads(result.output)
    return out


def _by_node(diff: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n["node_id"]: n for n in diff["nodes"]}


@pytest.mark.slow
@pytest.mark.parametrize("how", ["db", "url"])
def test_diff_of_runs_with_different_inputs_diverges_at_the_first_node(wf: Workflow, how: str) -> None:
    """Different quantities: the first divergence is fetch's input, and the structural diff names the path."""
    a, b = _succeeded(wf, 3), _succeeded(wf, 5)
    diff = _diff(wf.live, a, b, how)
    assert diff["first_divergence"] == {"node_id": "fetch", "verdict": "different_input"}
    assert diff["input_changes"] == [{"path": "$.qty", "kind": "changed", "a": 3, "b": 5}]
    fetch = _by_node(diff)["fetch"]
    assert fetch["output_changes"] == [{"path": "$.lines[0].qty", "kind": "changed", "a": 3, "b": 5}]
    assert _by_node(diff)["price"]["verdict"] == "same"
    assert diff["same_definition"] is True
    assert diff["duration_ms"]["delta"] == pytest.approx(diff["b"]["duration_ms"] - diff["a"]["duration_ms"])


@pytest.mark.slow
def test_diff_of_a_failed_and_a_succeeded_run_names_the_status_change(wf: Workflow) -> None:
    """The failed run against its resume: price changed status, pack and ship were added by the resume's run."""
    failed = wf.failed_run()
    assert wf.run("--resume", failed).returncode == 0
    resumed = str(wf.latest_run()["run_id"])
    diff = _diff(wf.live, failed, resumed, "db")
    assert diff["status_changed"] is True
    assert diff["first_divergence"] == {"node_id": "price", "verdict": "status_changed"}
    nodes = _by_node(diff)
    assert nodes["price"]["status"] == {"a": "failed", "b": "succeeded"}
    assert nodes["fetch"]["verdict"] == "same"
    assert nodes["pack"]["status"] == {"a": "skipped", "b": "succeeded"}
    text = CliRunner().invoke(diff_command, [failed, resumed, "--db", str(wf.live.db_path)])
    assert text.exit_code == 0, text.output
    assert "first divergence: price (status_changed)" in text.output


@pytest.mark.slow
def test_diff_across_definition_versions_lists_added_nodes(wf: Workflow) -> None:
    """A version with an audit node after ship: the diff says the definition changed and audit was added."""
    a = _succeeded(wf, 3)
    wf.generate(audit=True)
    b = _succeeded(wf, 3)
    diff = _diff(wf.live, a, b, "url")
    assert diff["same_definition"] is False
    assert diff["added"] == ["audit"]
    assert diff["removed"] == []
    assert diff["first_divergence"] == {"node_id": "audit", "verdict": "added"}
    reverse = _diff(wf.live, b, a, "db")
    assert reverse["removed"] == ["audit"]
    text = CliRunner().invoke(diff_command, [a, b, "--db", str(wf.live.db_path)])
    assert text.exit_code == 0, text.output
    [audit] = [line for line in text.output.splitlines() if line.strip().startswith("audit ")]
    assert "- -> succeeded" in audit  # a node of one run only: "-" for the other, where it said None
    assert "None" not in text.output


def test_api_diff_refuses_missing_and_unknown_runs(live: LiveReceiver) -> None:
    """GET /api/diff needs both a and b (400 naming the missing one) and answers 404 for an unknown run."""
    missing = live.get("/api/diff", params={"a": "x"})
    assert missing.status_code == 400
    assert "query parameter b is required" in missing.json()["error"]
    unknown = live.get("/api/diff", params={"a": "x", "b": "y"})
    assert unknown.status_code == 404
    assert "'x'" in unknown.json()["error"]
    extra = live.get("/api/diff", params={"a": "x", "b": "y", "c": "z"})
    assert extra.status_code == 400


def test_diff_of_an_unknown_run_is_one_line_and_exit_1(tmp_path: Path, live: LiveReceiver) -> None:
    """An unknown run id is an error line naming it, not a traceback."""
    result = CliRunner().invoke(diff_command, ["nope", "nada", "--db", str(live.db_path)])
    assert result.exit_code == 1
    assert "there is no run 'nope'" in result.output


@pytest.mark.parametrize("how", ["db", "url"])
def test_diff_project_options_name_the_runs_of_an_id_two_projects_use(live: LiveReceiver, how: str) -> None:
    """Keys off, one run id in two projects: diff without a project stops naming the choice; --project-a and
    --project-b compare the two projects' runs, --project one with itself."""
    alpha = typical_run(project="alpha")
    beta = [{**event, "project": "beta"} for event in alpha.events]
    finished = next(event for event in beta if event["kind"] == "run_finished")
    finished["data"] = {**finished["data"], "duration_ms": finished["data"]["duration_ms"] + 250}
    assert live.post([*alpha.events, *beta]).json()["rejected"] == []
    where = ["--db", str(live.db_path)] if how == "db" else ["--url", live.url]
    refused = CliRunner().invoke(diff_command, [alpha.run_id, alpha.run_id, *where])
    assert refused.exit_code == 2  # an id several projects use: name one (a usage error)
    assert "more than one project" in refused.output
    args = [alpha.run_id, alpha.run_id, "--project-a", "alpha", "--project-b", "beta", "--json", *where]
    across = CliRunner().invoke(diff_command, args)
    assert across.exit_code == 0, across.output
    assert json.loads(across.output)["duration_ms"]["delta"] == 250
    same = CliRunner().invoke(diff_command, [alpha.run_id, alpha.run_id, "--project", "beta", "--json", *where])
    assert same.exit_code == 0, same.output
    assert json.loads(same.output)["duration_ms"]["delta"] == 0
    missing = CliRunner().invoke(diff_command, [alpha.run_id, alpha.run_id, "--project", "gamma", *where])
    assert missing.exit_code == 1
    assert "of project 'gamma'" in missing.output


def test_api_diff_takes_each_runs_project(live: LiveReceiver) -> None:
    """GET /api/diff: 409 for an id two projects use, project_a/project_b (or project) choose, unknown 400."""
    alpha = typical_run(project="alpha")
    beta = [{**event, "project": "beta"} for event in alpha.events]
    assert live.post([*alpha.events, *beta]).json()["rejected"] == []
    ids = {"a": alpha.run_id, "b": alpha.run_id}
    assert live.get("/api/diff", params=ids).status_code == 409
    both = live.get("/api/diff", params={**ids, "project_a": "alpha", "project_b": "beta"})
    assert both.status_code == 200, both.text
    assert live.get("/api/diff", params={**ids, "project": "alpha"}).status_code == 200
    assert live.get("/api/diff", params={**ids, "project": "gamma"}).status_code == 404
    unknown = live.get("/api/diff", params={**ids, "project_c": "alpha"})
    assert unknown.status_code == 400
    assert "project_c" in unknown.text


def test_api_diff_names_the_run_without_a_project_by_an_empty_value(live: LiveReceiver) -> None:
    """An id used by alpha and by a run without a project: ``project_b=`` (empty) is the latter, even beside
    ``project=alpha``; a run compared with itself is the same at every node, with the other run it is not."""
    alpha = typical_run(project="alpha")
    bare = [{k: v for k, v in event.items() if k != "project"} for event in alpha.events]
    bare[-1]["data"] = {**bare[-1]["data"], "status": "succeeded"}
    bare[-1]["data"].pop("error", None)
    assert live.post([*alpha.events, *bare]).json()["rejected"] == []
    ids = {"a": alpha.run_id, "b": alpha.run_id}
    same = live.get("/api/diff", params={**ids, "project": ""})
    assert same.status_code == 200, same.text
    assert (same.json()["a"]["status"], same.json()["b"]["status"]) == ("succeeded", "succeeded")
    mixed = live.get("/api/diff", params={**ids, "project": "alpha", "project_b": ""})
    assert mixed.status_code == 200, mixed.text
    assert (mixed.json()["a"]["status"], mixed.json()["b"]["status"]) == ("failed", "succeeded")
    assert mixed.json()["status_changed"] is True


@pytest.mark.parametrize("how", ["db", "url"])
def test_diff_takes_an_empty_project_for_the_run_without_one(live: LiveReceiver, how: str) -> None:
    """An id used by alpha and by a run without a project: ``--project-a ""`` is the latter even beside
    ``--project alpha`` (it fell back to --project), so the two runs are compared."""
    alpha = typical_run(project="alpha")
    bare = [{k: v for k, v in event.items() if k != "project"} for event in alpha.events]
    bare[-1]["data"] = {**bare[-1]["data"], "duration_ms": bare[-1]["data"]["duration_ms"] + 250}
    assert live.post([*alpha.events, *bare]).json()["rejected"] == []
    where = ["--db", str(live.db_path)] if how == "db" else ["--url", live.url]
    args = [alpha.run_id, alpha.run_id, "--project", "alpha", "--project-a", "", "--json", *where]
    across = CliRunner().invoke(diff_command, args)
    assert across.exit_code == 0, across.output
    assert json.loads(across.output)["duration_ms"]["delta"] == -250
