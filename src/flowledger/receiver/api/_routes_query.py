"""``GET /api/runs``, ``GET /api/runs/{run_id}`` and ``GET /api/export``.

A store failure before an export's first byte is the app's 503 with
``Retry-After``; one after it has been sent cuts the body short (no final
chunk, so a client sees it incomplete) and is logged in one line.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from flowledger._exceptions import QueryError, QueryParamError
from flowledger._wire import RunStatus
from flowledger.receiver._context_params import CONTEXT_PARAMS, context_filter
from flowledger.receiver._error_names import public_error_types
from flowledger.receiver._export import MEDIA_TYPES, ExportFormat, export_lines
from flowledger.receiver._params import MAX_OFFSET, QueryParams
from flowledger.receiver._state import error_response, project_of, receiver_of, run_project_of
from flowledger.receiver._trace_url import add_trace_url
from flowledger.receiver.api._cut_stream import CutOnStoreError
from flowledger.receiver.store._protocol import RunQuery
from flowledger.receiver.store._search import (
    ATTRIBUTE_PARAM_PREFIX,
    attribute_filters,
    attribute_filters_problem,
    attribute_problem,
    fts_query,
)
from flowledger.receiver.store._views import CURSOR_MAX_CHARS, RunPageCursor

__all__ = ["DEFAULT_PAGE_LIMIT", "EXPORT_PARAMS", "LIST_PARAMS", "MAX_PAGE_LIMIT", "ROUTES"]

_log = logging.getLogger("flowledger.receiver")

DEFAULT_PAGE_LIMIT: Final = 50
MAX_PAGE_LIMIT: Final = 1000


LIST_PARAMS: Final = ("workflow_id", "status", "limit", "offset", "cursor", "q", *CONTEXT_PARAMS)
"""The query parameters of ``GET /api/runs`` (``status`` may repeat, and so may ``attr.KEY``, up to
ATTRIBUTE_FILTERS_MAX different filters); any other is a 400."""
EXPORT_PARAMS: Final = ("format", "workflow_id", "status", *CONTEXT_PARAMS)
"""The query parameters of ``GET /api/export``."""


def _search(params: QueryParams) -> str | None:
    text = params.text("q")
    if text is None:
        return None
    try:
        fts_query(text)
    except ValueError as exc:
        raise QueryParamError(
            f"query parameter q={text[:40]!r}: {exc}; type words from an error, a log line or a payload"
        ) from None
    return text


def _attributes(request: Request, params: QueryParams) -> tuple[tuple[str, str], ...]:
    """The ``attr.KEY=VALUE`` filters, identical ones once; a 400 past ATTRIBUTE_FILTERS_MAX of them."""
    out: list[tuple[str, str]] = []
    for name in dict.fromkeys(request.query_params.keys()):
        if not name.startswith(ATTRIBUTE_PARAM_PREFIX):
            continue
        key = name[len(ATTRIBUTE_PARAM_PREFIX) :]
        for value in params.texts(name):
            problem = attribute_problem(key, value)
            if problem is not None:
                raise QueryParamError(f"query parameter {name[:40]} {problem}")
            out.append((key, value))
    folded = attribute_filters(out)
    problem = attribute_filters_problem(folded)
    if problem is not None:
        raise QueryParamError(f"query parameters {ATTRIBUTE_PARAM_PREFIX}KEY=VALUE: {problem}")
    return folded


def _run_query(request: Request, *, paged: bool) -> RunQuery:
    params = QueryParams(request, blank_is_absent=False)
    attribute_names = [name for name in request.query_params if name.startswith(ATTRIBUTE_PARAM_PREFIX)]
    if paged:
        params.expect((*LIST_PARAMS, *attribute_names), shown=(*LIST_PARAMS, f"{ATTRIBUTE_PARAM_PREFIX}KEY=VALUE"))
    else:
        params.expect(EXPORT_PARAMS)
    return RunQuery(
        search=_search(params) if paged else None,
        attributes=_attributes(request, params) if paged else (),
        workflow_id=params.text("workflow_id"),
        statuses=params.choices("status", RunStatus),
        project=project_of(request),
        limit=params.integer("limit", default=DEFAULT_PAGE_LIMIT, low=1, high=MAX_PAGE_LIMIT)
        if paged
        else MAX_PAGE_LIMIT,
        offset=params.integer("offset", default=0, low=0, high=MAX_OFFSET) if paged else 0,
        cursor=_cursor(params.text("cursor", max_chars=CURSOR_MAX_CHARS)) if paged else None,
        context=context_filter(params),
    )


def _cursor(token: str | None) -> RunPageCursor | None:
    if token is None:
        return None
    try:
        return RunPageCursor.decode(token)
    except QueryError as exc:
        raise QueryParamError(f"query parameter cursor: {exc}; pass back the next of an answer") from None


async def list_runs(request: Request) -> Response:
    """Runs, newest first, filtered by workflow and status(es), paged by ``cursor`` (keyset) or limit and offset.

    The answer's ``next`` is the cursor of the following page (null on the last one); ``total``
    counts the matching runs up to TOTAL_COUNT_MAX, and ``total_capped`` says when it stopped there.
    """
    try:
        query = _run_query(request, paged=True)
    except QueryParamError as exc:
        return error_response(400, str(exc))
    receiver = receiver_of(request)
    page = await receiver.store.list_runs(query)
    runs = [public_error_types(add_trace_url(run, receiver.config.trace_url_template)) for run in page.runs]
    return JSONResponse(
        {
            "runs": runs,
            "total": page.total,
            "total_capped": page.total_capped,
            "next": None if page.next is None else page.next.encode(),
            "limit": query.limit,
            "offset": query.offset,
        }
    )


async def get_run(request: Request) -> Response:
    """One run with its node attempts in start order."""
    run_id = request.path_params["run_id"]
    try:
        project = run_project_of(request)
    except QueryParamError as exc:
        return error_response(400, str(exc))
    receiver = receiver_of(request)
    run = await receiver.store.get_run(run_id, project=project)
    if run is None:
        return error_response(404, f"there is no run {run_id!r}")
    return JSONResponse(public_error_types(add_trace_url(run, receiver.config.trace_url_template)))


async def export_runs(request: Request) -> Response:
    """Every matching run, streamed as CSV or JSONL (JSONL includes each run's nodes)."""
    try:
        query = _run_query(request, paged=False)
        fmt = QueryParams(request, blank_is_absent=False).choice("format", ExportFormat) or ExportFormat.JSONL
    except QueryParamError as exc:
        return error_response(400, str(exc))
    runs = receiver_of(request).store.iter_runs(query, with_nodes=fmt is ExportFormat.JSONL)
    first = await anext(runs, None)  # a store that cannot answer fails here, before a byte: 503
    return CutOnStoreError(
        export_lines(_starting_with(first, runs), fmt), what="an export", media_type=MEDIA_TYPES[fmt]
    )


async def _starting_with(
    first: dict[str, Any] | None, rest: AsyncIterator[dict[str, Any]]
) -> AsyncIterator[dict[str, Any]]:
    if first is None:
        return
    yield first
    async for run in rest:
        yield run


ROUTES: Final = [
    Route("/api/runs", list_runs, methods=["GET"]),
    Route("/api/runs/{run_id}", get_run, methods=["GET"]),
    Route("/api/export", export_runs, methods=["GET"]),
]
