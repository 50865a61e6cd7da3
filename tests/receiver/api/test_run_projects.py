"""A run id two projects use, read with API keys off: never one of them picked silently."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from flowledger.receiver.cli._commands import show_command
from tests.receiver._support import LiveReceiver, RunEvents, simple_run


@pytest.fixture
def shared(live: LiveReceiver) -> tuple[LiveReceiver, str]:
    """A receiver without keys holding two runs of one id: alpha's (succeeded) and beta's (failed)."""
    alpha = simple_run(project="alpha")
    beta = RunEvents(project="beta")
    beta.run_id = alpha.run_id
    beta.start().node("fetch", status="failed").finish("failed", error_node="fetch")
    for run in (alpha, beta):
        answer = live.post(run.events).json()
        assert (answer["accepted"], answer["rejected"]) == (len(run.events), [])
    return live, alpha.run_id


def test_an_id_of_two_projects_is_409_until_a_project_is_named(shared: tuple[LiveReceiver, str]) -> None:
    """GET /api/runs/{id} (and the viewer's run) answers 409 naming the choice; ?project= picks the run."""
    live, run_id = shared
    for path in (f"/api/runs/{run_id}", f"/api/viewer/runs/{run_id}", f"/api/runs/{run_id}/outputs"):
        answer = live.get(path)
        assert answer.status_code == 409, path
        assert "more than one project" in answer.json()["error"]
        assert "project=" in answer.json()["error"]
    alpha = live.get(f"/api/runs/{run_id}", params={"project": "alpha"}).json()
    beta = live.get(f"/api/runs/{run_id}", params={"project": "beta"}).json()
    assert (alpha["project"], alpha["status"]) == ("alpha", "succeeded")
    assert (beta["project"], beta["status"]) == ("beta", "failed")
    assert live.get(f"/api/runs/{run_id}", params={"project": "gamma"}).status_code == 404
    unknown = live.get(f"/api/runs/{run_id}", params={"projects": "alpha"})
    assert unknown.status_code == 400
    assert "projects" in unknown.json()["error"]
    listed = live.get("/api/runs").json()["runs"]
    assert sorted(run["project"] for run in listed) == ["alpha", "beta"]


@pytest.mark.parametrize("how", ["db", "url"])
def test_show_names_the_choice_and_takes_project(shared: tuple[LiveReceiver, str], how: str) -> None:
    """flowledger show fails with the reason for an id of two projects, and shows the one --project names."""
    live, run_id = shared
    where = ["--db", str(live.db_path)] if how == "db" else ["--url", live.url]
    refused = CliRunner().invoke(show_command, [run_id, "--json", *where])
    assert refused.exit_code != 0
    assert "more than one project" in refused.output
    shown = CliRunner().invoke(show_command, [run_id, "--json", "--project", "beta", *where])
    assert shown.exit_code == 0, shown.output
    assert '"project": "beta"' in shown.output
