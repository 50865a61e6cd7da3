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


def test_cursors_page_over_http_through_runs_of_one_id_and_long_project_names(live: LiveReceiver) -> None:
    """GET /api/runs and /api/viewer/runs a run a page: four namespaces' runs of one id started at one instant
    (one project named with the longest name a project may have) each come once; every cursor is taken back."""
    longest = "p" * 128
    run = RunEvents().start()
    for project in ("alpha", longest, "zeta", None):
        events = [{**event, "project": project} for event in run.events]
        assert live.post(events).json()["rejected"] == []
    expected = [(run.run_id, None), (run.run_id, "alpha"), (run.run_id, longest), (run.run_id, "zeta")]
    seen, params = [], {"limit": "1"}
    for _ in range(len(expected) + 1):
        body = live.get("/api/runs", params=params).json()
        seen += [(r["run_id"], r["project"]) for r in body["runs"]]
        if body["next"] is None:
            break
        params = {"limit": "1", "cursor": body["next"]}
    assert seen == expected
    viewed, params = [], {"limit": "1"}
    for _ in range(len(expected) + 1):
        page = live.get("/api/viewer/runs", params=params).json()
        viewed += [(r["run_id"], r["project"]) for r in page["runs"]]
        if page["older"] is None:
            break
        params = {"limit": "1", "cursor": page["older"], "direction": "older"}
    assert viewed == expected
