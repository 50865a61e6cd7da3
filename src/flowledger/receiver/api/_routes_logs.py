"""``GET /api/runs/{run_id}/attempts/{span_id}/logs``: one node attempt's log lines, paged."""

from __future__ import annotations

import re
from typing import Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from flowledger._exceptions import QueryParamError
from flowledger._wire import LogLevel
from flowledger.receiver._params import QueryParams
from flowledger.receiver._state import error_response, receiver_of, run_project_of
from flowledger.receiver.store._logs import LOG_LINE_ID_MAX, LOG_PAGE_MAX

__all__ = ["LOG_PARAMS", "ROUTES"]

LOG_PARAMS: Final = ("level", "after", "limit")
"""The query parameters of the route: the lowest level shown, the id after which to go on, the page size."""
_SPAN_ID: Final = re.compile(r"[0-9a-f]{16}")


async def attempt_logs(request: Request) -> Response:
    """One attempt's lines in order, at least ``level``, after line ``after``; ``more`` says whether others follow."""
    run_id = request.path_params["run_id"]
    span_id = request.path_params["span_id"]
    if _SPAN_ID.fullmatch(span_id) is None:
        return error_response(400, f"span id {span_id[:40]!r} is not 16 lowercase hex digits")
    params = QueryParams(request, blank_is_absent=False)
    try:
        project = run_project_of(request, others=LOG_PARAMS)
        level = params.choice("level", LogLevel)
        after = params.integer("after", default=0, low=0, high=LOG_LINE_ID_MAX)
        limit = params.integer("limit", default=LOG_PAGE_MAX, low=1, high=LOG_PAGE_MAX)
    except QueryParamError as exc:
        return error_response(400, str(exc))
    page = await receiver_of(request).store.attempt_logs(
        run_id,
        span_id,
        project=project,
        min_level=0 if level is None else level.number,
        after_id=after,
        limit=limit,
    )
    if page is None:
        return error_response(404, f"there is no run {run_id!r}")
    return JSONResponse(page.as_json())


ROUTES: Final = [
    Route("/api/runs/{run_id}/attempts/{span_id}/logs", attempt_logs, methods=["GET"]),
]
