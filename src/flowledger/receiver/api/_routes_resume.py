"""``GET /api/runs/{run_id}/outputs`` (what a resume reads), ``.../chain`` (its resumes) and ``GET /api/diff``."""

from __future__ import annotations

from typing import Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from flowledger._exceptions import QueryParamError
from flowledger._run_context import project_problem
from flowledger._wire import RESUME_APP_PATH, RunStatus
from flowledger.receiver._params import QueryParams
from flowledger.receiver._resume_endpoints import RESUME_ENDPOINTS_ENV
from flowledger.receiver._run_diff import diff_runs
from flowledger.receiver._state import (
    RUN_PROJECT_PARAM,
    error_response,
    project_for_run,
    receiver_of,
    run_project_of,
)

__all__ = ["DIFF_PARAMS", "DIFF_PROJECT_PARAMS", "ROUTES"]

DIFF_PARAMS: Final = ("a", "b")
"""The query parameters of ``GET /api/diff``: the two run ids, both required."""
DIFF_PROJECT_PARAMS: Final = ("project_a", "project_b")
"""The project of run ``a`` and of run ``b`` (``project`` names one for both), for a run id several projects use."""


async def run_outputs(request: Request) -> Response:
    """The run's trigger data and each node's outcome, complete outputs checked against the ledger."""
    run_id = request.path_params["run_id"]
    try:
        project = run_project_of(request)
    except QueryParamError as exc:
        return error_response(400, str(exc))
    evidence = await receiver_of(request).store.resume_evidence(run_id, project=project)
    if evidence is None:
        return error_response(404, f"there is no run {run_id!r}")
    return JSONResponse(evidence)


async def run_chain(request: Request) -> Response:
    """The chain of attempts the run is part of: the original run, then each resume after the run it resumes."""
    run_id = request.path_params["run_id"]
    try:
        project = run_project_of(request)
    except QueryParamError as exc:
        return error_response(400, str(exc))
    chain = await receiver_of(request).store.resume_chain(run_id, project=project)
    if chain is None:
        return error_response(404, f"there is no run {run_id!r}")
    return JSONResponse({"runs": chain})


RESUME_TIMEOUT_S: Final = 300.0
"""How long a forwarded resume may take (the app answers when the resumed run has finished)."""


async def resume_run(request: Request) -> Response:
    """Ask the run's workflow app (configured in FLOWLEDGER_RESUME_ENDPOINTS) to resume the run."""
    import httpx

    run_id = request.path_params["run_id"]
    try:
        project = run_project_of(request)
    except QueryParamError as exc:
        return error_response(400, str(exc))
    receiver = receiver_of(request)
    run = await receiver.store.run_header(run_id, project=project)
    if run is None:
        return error_response(404, f"there is no run {run_id!r}")
    if run["status"] in (RunStatus.SUCCEEDED, RunStatus.RUNNING):
        return error_response(409, f"run {run_id} is {run['status']}: only a run that did not succeed is resumed")
    workflow_id = run["workflow_id"]
    base = receiver.config.resume_endpoints.get(workflow_id or "")
    if base is None:
        return error_response(
            409,
            f"no app is configured to resume workflow {workflow_id!r}: "
            f"set {RESUME_ENDPOINTS_ENV}={workflow_id}=URL_OF_ITS_APP on the receiver",
        )
    try:
        async with httpx.AsyncClient(timeout=RESUME_TIMEOUT_S) as client:
            # The app reads the run back with its project: the one the run has, whoever asked ("" for none).
            answer = await client.post(base + RESUME_APP_PATH, json={"run_id": run_id, "project": run["project"] or ""})
    except httpx.HTTPError as exc:
        return error_response(502, f"the app of workflow {workflow_id!r} could not be reached: {type(exc).__name__}")
    try:
        body = answer.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return error_response(502, f"the app of workflow {workflow_id!r} answered {answer.status_code} without JSON")
    if answer.status_code == 200:
        return JSONResponse({"run_id": body.get("run_id"), "status": body.get("status")})
    message = body.get("error")
    text = message if isinstance(message, str) else f"the app answered {answer.status_code}"
    return error_response(409 if answer.status_code == 409 else 502, text)


def _project_param(params: QueryParams, name: str) -> str | None:
    """A project parameter of a run named by id: empty (the run without a project) or a project name, else a 400
    as ``/api/runs/{run_id}?project=`` answers it (never "no such run")."""
    asked = params.text(name)
    problem = project_problem(name, asked) if asked else None
    if problem is not None:
        raise QueryParamError(f"query parameter {problem}")
    return asked


async def diff(request: Request) -> Response:
    """Run ``a`` compared with run ``b``, node by node (each of ``project_a``/``project_b``, or ``project``)."""
    try:
        params = QueryParams(request, blank_is_absent=False)
        params.expect((*DIFF_PARAMS, RUN_PROJECT_PARAM, *DIFF_PROJECT_PARAMS))
        ids = [params.text(name) for name in DIFF_PARAMS]
        both = project_for_run(request, _project_param(params, RUN_PROJECT_PARAM))
        asked = [project_for_run(request, _project_param(params, name), name) for name in DIFF_PROJECT_PARAMS]
        projects = [both if project is None else project for project in asked]  # '' is the run without one
    except QueryParamError as exc:
        return error_response(400, str(exc))
    for name, value in zip(DIFF_PARAMS, ids, strict=True):
        if value is None:
            return error_response(400, f"query parameter {name} is required: the id of a run to compare")
    store = receiver_of(request).store
    runs = []
    for name, run_id, project in zip(DIFF_PARAMS, ids, projects, strict=True):
        assert run_id is not None
        run = await store.get_run(run_id, project=project)
        if run is None:
            return error_response(404, f"there is no run {run_id!r} (query parameter {name})")
        runs.append(run)
    return JSONResponse(diff_runs(runs[0], runs[1]))


ROUTES: Final = [
    Route("/api/runs/{run_id}/outputs", run_outputs, methods=["GET"]),
    Route("/api/runs/{run_id}/chain", run_chain, methods=["GET"]),
    Route("/api/runs/{run_id}/resume", resume_run, methods=["POST"]),
    Route("/api/diff", diff, methods=["GET"]),
]
