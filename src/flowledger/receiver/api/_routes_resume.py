"""``GET /api/runs/{run_id}/outputs`` (what a resume reads) and ``GET /api/diff`` (two runs compared)."""

from __future__ import annotations

from typing import Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from flowledger._exceptions import QueryParamError
from flowledger.receiver._params import QueryParams
from flowledger.receiver._run_diff import diff_runs
from flowledger.receiver._state import error_response, project_of, receiver_of

__all__ = ["DIFF_PARAMS", "ROUTES"]

DIFF_PARAMS: Final = ("a", "b")
"""The query parameters of ``GET /api/diff``: the two run ids, both required."""


async def run_outputs(request: Request) -> Response:
    """The run's trigger data and each node's outcome, complete outputs checked against the ledger."""
    run_id = request.path_params["run_id"]
    evidence = await receiver_of(request).store.resume_evidence(run_id, project=project_of(request))
    if evidence is None:
        return error_response(404, f"there is no run {run_id!r}")
    return JSONResponse(evidence)


async def diff(request: Request) -> Response:
    """Run ``a`` compared with run ``b``, node by node."""
    try:
        params = QueryParams(request, blank_is_absent=False)
        params.expect(DIFF_PARAMS)
        ids = [params.text(name) for name in DIFF_PARAMS]
    except QueryParamError as exc:
        return error_response(400, str(exc))
    for name, value in zip(DIFF_PARAMS, ids, strict=True):
        if value is None:
            return error_response(400, f"query parameter {name} is required: the id of a run to compare")
    store = receiver_of(request).store
    project = project_of(request)
    runs = []
    for name, run_id in zip(DIFF_PARAMS, ids, strict=True):
        assert run_id is not None
        run = await store.get_run(run_id, project=project)
        if run is None:
            return error_response(404, f"there is no run {run_id!r} (query parameter {name})")
        runs.append(run)
    return JSONResponse(diff_runs(runs[0], runs[1]))


ROUTES: Final = [
    Route("/api/runs/{run_id}/outputs", run_outputs, methods=["GET"]),
    Route("/api/diff", diff, methods=["GET"]),
]
