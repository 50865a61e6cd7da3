"""Is the record complete and consistent: ``GET /api/coverage``, ``GET`` and ``POST /api/reconcile``.

With API keys on, each answers for the key's project only. ``POST
/api/reconcile`` repairs on the writer task (a chunk of runs per
transaction), like ``POST /api/rebuild``.
"""

from __future__ import annotations

from typing import Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from flowledger._exceptions import QueryParamError
from flowledger._wire import now_ts
from flowledger.receiver._config import DEFAULT_STUCK_HEARTBEATS
from flowledger.receiver._params import QueryParams
from flowledger.receiver._state import error_response, project_of, receiver_of
from flowledger.receiver.store._integrity import CoverageQuery, ReconcileReport, ReconcileScope

__all__ = ["COVERAGE_PARAMS", "ROUTES"]

COVERAGE_PARAMS: Final = ("since", "workflow_id")
"""The query parameters of ``GET /api/coverage``; any other is a 400."""


async def coverage(request: Request) -> Response:
    """Runs and producer sessions missing core events: ``PASS`` or ``FAIL_CORE_MISSING``, counts and samples."""
    receiver = receiver_of(request)
    try:
        params = QueryParams(request, blank_is_absent=False)
        params.expect(COVERAGE_PARAMS)
        query = CoverageQuery(
            now=now_ts(),
            stuck_after_s=receiver.config.stuck_after_s,
            heartbeats=DEFAULT_STUCK_HEARTBEATS,
            since=params.time("since"),
            workflow_id=params.text("workflow_id"),
            project=project_of(request),
        )
    except QueryParamError as exc:
        return error_response(400, str(exc))
    report = await receiver.store.coverage(query)
    return JSONResponse(report.as_json())


async def reconcile(request: Request) -> Response:
    """Compare every projection row with a fresh fold of the ledger; report the drift (read-only)."""
    try:
        QueryParams(request, blank_is_absent=False).expect(())
    except QueryParamError as exc:
        return error_response(400, str(exc))
    receiver = receiver_of(request)
    report = await receiver.store.reconcile(ReconcileScope.everything(project=project_of(request)))
    return JSONResponse(report.as_json())


async def repair(request: Request) -> Response:
    """Compare, and rewrite the drifted runs' projection rows from the fold (on the writer)."""
    try:
        QueryParams(request, blank_is_absent=False).expect(())
    except QueryParamError as exc:
        return error_response(400, str(exc))
    receiver = receiver_of(request)
    scope = ReconcileScope.everything(project=project_of(request))
    report: ReconcileReport = await receiver.writer.call(lambda: receiver.store.reconcile(scope, repair=True))
    return JSONResponse(report.as_json())


ROUTES: Final = [
    Route("/api/coverage", coverage, methods=["GET"]),
    Route("/api/reconcile", reconcile, methods=["GET"]),
    Route("/api/reconcile", repair, methods=["POST"]),
]
