"""Purging runs over HTTP: ``DELETE /api/runs/{run_id}`` and ``POST /api/purge``.

Both run on the writer task and are scoped by the API key's project: a key
can only purge its own project's runs. The purge entry records which key's
project asked.
"""

from __future__ import annotations

import json
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from flowledger._exceptions import QueryParamError
from flowledger.receiver._params import id_text_problem, refuse_params, rfc3339_before
from flowledger.receiver._state import error_response, project_of, receiver_of, run_project_of
from flowledger.receiver.store._protocol import PurgeReport, PurgeSelection

__all__ = ["ROUTES", "requester"]

_MAX_PURGE_BODY_BYTES: Final = 64 * 1024


def requester(project: str | None) -> str:
    """How a purge entry names an HTTP caller."""
    return "api" if project is None else f"api key of project {project}"


async def _purge(request: Request, selection: PurgeSelection) -> PurgeReport:
    receiver = receiver_of(request)
    report: PurgeReport = await receiver.writer.call(lambda: receiver.store.purge(selection))
    return report


async def delete_run(request: Request) -> Response:
    """Purge one run: its payloads, projection rows and spans; 404 when unknown (or another project's)."""
    run_id = request.path_params["run_id"]
    try:
        project = run_project_of(request)
    except QueryParamError as exc:
        return error_response(400, str(exc))
    report = await _purge(
        request, PurgeSelection(run_ids=(run_id,), project=project, by=requester(project_of(request)))
    )
    if not report.runs:
        return error_response(404, f"there is no run {run_id!r}")
    return JSONResponse(report.as_json())


def _selection(body: Any, project: str | None) -> PurgeSelection:
    if not isinstance(body, dict):
        raise ValueError('the body must be a JSON object {"workflow_id": ..., "before": ...}')
    unknown = set(body) - {"workflow_id", "before"}
    if unknown:
        raise ValueError(f"unknown fields {sorted(unknown)}: give workflow_id and, optionally, before")
    workflow_id, before = body.get("workflow_id"), body.get("before")
    if not isinstance(workflow_id, str) or not workflow_id:
        raise ValueError("workflow_id must be a non-empty string")
    if problem := id_text_problem(workflow_id):  # JSON escapes can spell what no stored workflow id holds
        raise ValueError(f"workflow_id {problem}")
    if before is not None and not isinstance(before, str):
        raise ValueError("before must be an RFC 3339 time")
    return PurgeSelection(
        workflow_id=workflow_id,
        before=None if before is None else rfc3339_before(before),
        project=project,
        by=requester(project),
    )


async def purge_workflow(request: Request) -> Response:
    """Purge a workflow's runs (started before ``before``, when given)."""
    if refused := refuse_params(request):
        return error_response(400, refused)
    raw = await request.body()
    if len(raw) > _MAX_PURGE_BODY_BYTES:
        return error_response(413, "the purge request is too large")
    try:
        selection = _selection(json.loads(raw or b"null"), project_of(request))
    except (ValueError, UnicodeDecodeError) as exc:
        return error_response(400, f"cannot purge: {exc}")
    except RecursionError:  # "[[[[..." nested past the decoder's stack, within the size cap
        return error_response(400, "cannot purge: the body is not a JSON object (it nests too deep)")
    return JSONResponse((await _purge(request, selection)).as_json())


ROUTES: Final = [
    Route("/api/runs/{run_id}", delete_run, methods=["DELETE"]),
    Route("/api/purge", purge_workflow, methods=["POST"]),
]
