"""``?project=`` on the routes that name one run by id for a resume or a proof: outputs, chain, resume, tree runs.

Runs are per project; with API keys off one id may name runs of several projects, and these routes answer 409
without the project (as ``GET /api/runs/{run_id}`` does). With a key, ``project=`` may only repeat its project.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import httpx
import pytest

from flowledger.receiver._config import ReceiverConfig
from tests.receiver._support import LiveReceiver, RunEvents, simple_run, start_receiver, typical_run

_PATHS: Final = ("/api/runs/{id}/outputs", "/api/runs/{id}/chain", "/api/tree/runs/{id}?size=19")
"""The routes, a proof against the first 19 entries: each test's ledger holds that many."""


def _shared_id(live: LiveReceiver) -> str:
    """A run id used by projects alpha (a typical run that failed: 15 events) and beta (one that succeeded: 4)."""
    run = typical_run(project="alpha")
    beta = RunEvents(project="beta")
    beta.run_id = run.run_id
    assert live.post([*run.events, *beta.start().node("fetch").finish().events]).json()["rejected"] == []
    return run.run_id


def _which(path: str, answer: dict[str, Any]) -> Any:
    """What tells the two projects' runs apart in an answer of ``path``."""
    if path.endswith("/outputs"):
        return answer["run"]["status"]
    if path.endswith("/chain"):
        return answer["runs"][0]["status"]
    return len(answer["entries"])


def _get(live: LiveReceiver, path: str, run_id: str, **params: str) -> httpx.Response:
    url = f"{live.url}{path.format(id=run_id)}"
    return httpx.get(url, params={**dict(httpx.URL(url).params), **params}, timeout=30)


@pytest.mark.parametrize("path", _PATHS)
def test_an_id_two_projects_use_needs_the_project(live: LiveReceiver, path: str) -> None:
    """Keys off: 409 naming the choice without project=, that project's run with it, 404 for a project without it,
    400 for an unknown parameter."""
    run_id = _shared_id(live)
    refused = _get(live, path, run_id)
    assert refused.status_code == 409
    assert "more than one project" in refused.json()["error"]
    answers = {}
    for project in ("alpha", "beta"):
        answer = _get(live, path, run_id, project=project)
        assert answer.status_code == 200, answer.text
        answers[project] = _which(path, answer.json())
    assert answers == ({"alpha": 15, "beta": 4} if "tree" in path else {"alpha": "failed", "beta": "succeeded"})
    assert _get(live, path, run_id, project="gamma").status_code == 404
    unknown = _get(live, path, run_id, project="alpha", color="red")
    assert unknown.status_code == 400
    assert "color" in unknown.json()["error"]


def test_resume_forwards_the_runs_project(live: LiveReceiver) -> None:
    """POST /api/runs/{id}/resume: 409 without a project for a shared id; with one, the checks of that project's
    run: beta's succeeded (nothing to resume), alpha's failed (but no app is configured here)."""
    run_id = _shared_id(live)
    refused = httpx.post(f"{live.url}/api/runs/{run_id}/resume", timeout=30)
    assert refused.status_code == 409
    assert "more than one project" in refused.json()["error"]
    done = httpx.post(f"{live.url}/api/runs/{run_id}/resume", params={"project": "beta"}, timeout=30)
    assert done.status_code == 409
    assert "is succeeded: only a run that did not succeed is resumed" in done.json()["error"]
    failed = httpx.post(f"{live.url}/api/runs/{run_id}/resume", params={"project": "alpha"}, timeout=30)
    assert failed.status_code == 409
    assert "no app is configured to resume workflow 'order-intake'" in failed.json()["error"]


@pytest.fixture
def keyed(tmp_path: Path) -> Iterator[LiveReceiver]:
    """A receiver with an API key of project alpha."""
    receiver = start_receiver(ReceiverConfig(db_path=tmp_path / "k.db", sweep_interval_s=0, api_keys={"k-a": "alpha"}))
    yield receiver
    receiver.stop()


@pytest.mark.parametrize("path", _PATHS)
def test_with_a_key_project_may_only_repeat_the_keys(keyed: LiveReceiver, path: str) -> None:
    """With a key, project= equal to the key's reads its run; another is a 400 saying nothing of runs."""
    run = typical_run()
    auth = {"Authorization": "Bearer k-a"}
    assert keyed.post([*run.events, *simple_run().events], headers=auth).json()["rejected"] == []
    url = f"{keyed.url}{path.format(id=run.run_id)}"
    params = dict(httpx.URL(url).params)
    assert httpx.get(url, params={**params, "project": "alpha"}, headers=auth, timeout=30).status_code == 200
    other = httpx.get(url, params={**params, "project": "beta"}, headers=auth, timeout=30)
    assert other.status_code == 400
    assert other.json()["error"] == "query parameter project: 'beta' is not the project of this API key"


def test_an_attempts_log_lines_take_the_project(live: LiveReceiver) -> None:
    """GET /api/runs/{id}/attempts/{span}/logs: 409 for an id two projects use, each project's attempt with it."""
    run_id = _shared_id(live)
    for project in ("alpha", "beta"):
        span = live.get(f"/api/runs/{run_id}", params={"project": project}).json()["nodes"][0]["span_id"]
        path = f"/api/runs/{run_id}/attempts/{span}/logs"
        assert live.get(path).status_code == 409
        answer = live.get(path, params={"project": project})
        assert answer.status_code == 200, answer.text
        assert live.get(path, params={"project": "gamma"}).status_code == 404


@pytest.mark.parametrize("path", [*_PATHS, "/api/runs/{id}"])
def test_an_empty_project_names_the_run_without_one(live: LiveReceiver, path: str) -> None:
    """Keys off, an id used by project alpha and by a run without a project: ``project=`` (empty) reads the latter,
    as the viewer's links to it say; ``project=alpha`` the former."""
    run = typical_run(project="alpha")
    bare = RunEvents()
    bare.run_id = run.run_id
    assert live.post([*run.events, *bare.start().node("fetch").finish().events]).json()["rejected"] == []
    assert _get(live, path, run.run_id).status_code == 409
    answers = {}
    for project in ("alpha", ""):
        answer = _get(live, path, run.run_id, project=project)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        answers[project] = body["status"] if path == "/api/runs/{id}" else _which(path, body)
    assert answers == ({"alpha": 15, "": 4} if "tree" in path else {"alpha": "failed", "": "succeeded"})


def test_a_purge_with_an_empty_project_erases_the_run_without_one(live: LiveReceiver) -> None:
    """DELETE /api/runs/{id}?project= (keys off, an id alpha uses too) purges the run without a project and leaves
    alpha's."""
    run = typical_run(project="alpha")
    bare = RunEvents()
    bare.run_id = run.run_id
    assert live.post([*run.events, *bare.start().node("fetch").finish().events]).json()["rejected"] == []
    purged = httpx.delete(f"{live.url}/api/runs/{run.run_id}", params={"project": ""}, timeout=30)
    assert purged.status_code == 200, purged.text
    assert purged.json()["runs"] == [run.run_id]
    assert _get(live, "/api/runs/{id}", run.run_id, project="").status_code == 404
    assert _get(live, "/api/runs/{id}", run.run_id, project="alpha").json()["status"] == "failed"


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ({}, "query parameter size is required"),
        ({"size": ""}, "query parameter size='' is not a whole number"),
        ({"size": "0"}, "query parameter size=0 must be between 1 and"),
    ],
)
def test_a_run_proof_without_a_size_is_a_400(live: LiveReceiver, query: dict[str, str], problem: str) -> None:
    """GET /api/tree/runs/{id}: the size is required (the OpenAPI document says so); without one it answered 404
    "no entry among the first 0", as if the run had none."""
    run = typical_run()
    assert live.post(run.events).json()["rejected"] == []
    answer = httpx.get(f"{live.url}/api/tree/runs/{run.run_id}", params=query, timeout=30)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"].startswith(problem)
