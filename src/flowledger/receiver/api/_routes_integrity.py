"""Is the record complete and consistent: ``GET /api/coverage``, ``GET`` and ``POST /api/reconcile``.

With API keys on, each answers for the key's project only. A reconcile
request checks one slice of the run ids (``after``, ``limit``) and answers
``next``, where the following slice starts (null at the end), so each
request stays short on any ledger. ``POST /api/reconcile`` repairs its
slice on the writer task (a chunk of runs per transaction).
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

__all__ = ["COVERAGE_PARAMS", "DEFAULT_RECONCILE_LIMIT", "MAX_RECONCILE_LIMIT", "RECONCILE_PARAMS", "ROUTES"]

COVERAGE_PARAMS: Final = ("since", "workflow_id")
"""The query parameters of ``GET /api/coverage``; any other is a 400."""
RECONCILE_PARAMS: Final = ("after", "limit")
"""The query parameters of ``/api/reconcile``: one slice of the sweep over run ids."""
DEFAULT_RECONCILE_LIMIT: Final = 2_000
MAX_RECONCILE_LIMIT: Final = 20_000
"""Runs one request checks at most: a request stays short at any ledger size; ``next`` goes on."""


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


def _slice(request: Request) -> ReconcileScope:
    """The slice a request asks for: the run ids after ``after`` (from the first), at most ``limit`` of them."""
    params = QueryParams(request, blank_is_absent=False)
    params.expect(RECONCILE_PARAMS)
    return ReconcileScope(
        sweep_from=params.text("after") or "",
        sweep_runs=params.integer("limit", default=DEFAULT_RECONCILE_LIMIT, low=1, high=MAX_RECONCILE_LIMIT),
        project=project_of(request),
    )


async def reconcile(request: Request) -> Response:
    """Compare a slice of the projection rows with a fresh fold of the ledger; report the drift (read-only)."""
    try:
        scope = _slice(request)
    except QueryParamError as exc:
        return error_response(400, str(exc))
    report = await receiver_of(request).store.reconcile(scope)
    return JSONResponse(report.as_json())


async def repair(request: Request) -> Response:
    """Compare a slice, and rewrite its drifted runs' projection rows from the fold (on the writer)."""
    try:
        scope = _slice(request)
    except QueryParamError as exc:
        return error_response(400, str(exc))
    receiver = receiver_of(request)
    report: ReconcileReport = await receiver.writer.call(lambda: receiver.store.reconcile(scope, repair=True))
    return JSONResponse(report.as_json())


ROUTES: Final = [
    Route("/api/coverage", coverage, methods=["GET"]),
    Route("/api/reconcile", reconcile, methods=["GET"]),
    Route("/api/reconcile", repair, methods=["POST"]),
]
