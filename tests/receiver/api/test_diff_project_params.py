"""GET /api/diff checks its project parameters as /api/runs/{run_id}?project= does: a 400, never "no run"."""

from __future__ import annotations

import pytest

from tests.receiver._support import LiveReceiver, typical_run


@pytest.mark.parametrize("name", ["project", "project_a", "project_b"])
def test_a_project_that_is_no_project_name_is_400(live: LiveReceiver, name: str) -> None:
    """project, project_a or project_b 'x y' is a 400 naming the parameter; an empty one is the run without one."""
    run = typical_run()
    assert live.post(run.events).json()["accepted"] == len(run.events)
    ids = {"a": run.run_id, "b": run.run_id}
    refused = live.get("/api/diff", params={**ids, name: "x y"})
    assert refused.status_code == 400, refused.text
    assert f"query parameter {name} 'x y' is not a project name" in refused.json()["error"]
    assert live.get(f"/api/runs/{run.run_id}", params={"project": "x y"}).status_code == 400
    assert live.get("/api/diff", params={**ids, name: ""}).status_code == 200
