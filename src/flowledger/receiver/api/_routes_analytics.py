"""``GET /api/errors`` (what keeps failing, as error groups biggest first) and ``GET /api/stats``."""

from __future__ import annotations

from typing import Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from flowledger._exceptions import QueryParamError
from flowledger.receiver._error_names import public_error_type
from flowledger.receiver._params import QueryParams
from flowledger.receiver._state import error_response, project_of, receiver_of
from flowledger.receiver.store._error_groups import ErrorGroupQuery
from flowledger.receiver.store._stats import Bucket, StatsBy, StatsQuery

__all__ = [
    "DEFAULT_ERROR_GROUPS",
    "DEFAULT_STATS_GROUPS",
    "ERRORS_PARAMS",
    "MAX_ERROR_GROUPS",
    "MAX_STATS_GROUPS",
    "ROUTES",
    "STATS_PARAMS",
    "error_group_query",
    "stats_query",
]

DEFAULT_ERROR_GROUPS: Final = 50
MAX_ERROR_GROUPS: Final = 1000
ERRORS_PARAMS: Final = ("workflow_id", "since", "until", "limit")
"""The query parameters of ``GET /api/errors``; any other is a 400."""
DEFAULT_STATS_GROUPS: Final = 100
MAX_STATS_GROUPS: Final = 1000
STATS_PARAMS: Final = ("by", "since", "until", "bucket", "limit")
"""The query parameters of ``GET /api/stats``; any other is a 400."""


def error_group_query(params: QueryParams, project: str | None) -> ErrorGroupQuery:
    """The error-group filters of a request; QueryParamError naming the parameter that is wrong."""
    params.expect(ERRORS_PARAMS)
    # An empty range (until at or before since): no groups.
    since, until = params.time("since"), params.time("until", before=True)
    return ErrorGroupQuery(
        workflow_id=params.text("workflow_id"),
        since=since,
        until=until,
        project=project,
        limit=params.integer("limit", default=DEFAULT_ERROR_GROUPS, low=1, high=MAX_ERROR_GROUPS),
    )


async def list_errors(request: Request) -> Response:
    """Error groups, biggest first: ``{"groups": [...]}``, filtered by workflow and time range."""
    try:
        query = error_group_query(QueryParams(request, blank_is_absent=False), project_of(request))
    except QueryParamError as exc:
        return error_response(400, str(exc))
    groups = await receiver_of(request).store.error_groups(query)
    for group in groups:
        group["type"] = public_error_type(group["type"])
    return JSONResponse({"groups": groups})


def stats_query(params: QueryParams, project: str | None) -> StatsQuery:
    """The statistics a request asks for; QueryParamError naming the parameter that is wrong."""
    params.expect(STATS_PARAMS)
    return StatsQuery(
        by=params.choice("by", StatsBy) or StatsBy.WORKFLOW,
        since=params.time("since"),
        until=params.time("until", before=True),  # an empty range (until at or before since): no groups
        bucket=params.choice("bucket", Bucket),
        project=project,
        limit=params.integer("limit", default=DEFAULT_STATS_GROUPS, low=1, high=MAX_STATS_GROUPS),
    )


async def get_stats(request: Request) -> Response:
    """Statistics per workflow, agent, project or node: ``{"groups": [...]}``, most runs first."""
    try:
        query = stats_query(QueryParams(request, blank_is_absent=False), project_of(request))
    except QueryParamError as exc:
        return error_response(400, str(exc))
    return JSONResponse({"groups": await receiver_of(request).store.run_stats(query)})


ROUTES: Final = [
    Route("/api/errors", list_errors, methods=["GET"]),
    Route("/api/stats", get_stats, methods=["GET"]),
]
