"""The history viewer: the page at ``/``, its static files, and the JSON it reads under ``/api/viewer/``.

The page is plain HTML, CSS and JavaScript shipped inside the package
(``flowledger/receiver/viewer/static/``) and served from memory: no build step, no
CDN, no external font, so it works offline. Every answer of the page and its
files carries a Content-Security-Policy that allows scripts only from this
origin (no inline script, no inline event handlers) and no connections
elsewhere; the page writes every value from a run as text.

JSON routes (all read-only, all scoped to the project of the request's API key):

==============================================================  ==================================================
``GET /api/viewer/runs``                                        a keyset page of runs, newest first, filtered
``GET /api/viewer/summary``                                     summary cards over the same filters
``GET /api/viewer/facets``                                      values the filter controls offer
``GET /api/viewer/runs/{run_id}``                               a run without its nodes, with an attempt overview
``GET /api/viewer/runs/{run_id}/attempts``                      a page of node attempts, no payloads
``GET /api/viewer/runs/{run_id}/attempts/{span_id}``            one attempt with its payloads
``GET /api/viewer/runs/{run_id}/attempts/{span_id}/{kind}``     one payload of an attempt (input, output, error_stack)
``GET /api/viewer/runs/{run_id}/payload/{kind}``                the run's input or output
==============================================================  ==================================================

Each ``/api/viewer/runs/{run_id}...`` route takes ``?project=``: the run of that project, when API keys are off
and its id is used in several (409 without it); with a key it may only repeat the key's project.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Final, TypeVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from flowledger._exceptions import AmbiguousRunError, QueryError, QueryParamError
from flowledger._wire import RunStatus, TriggerType
from flowledger.receiver._context_params import CONTEXT_FIELD_PARAMS, context_filter
from flowledger.receiver._error_names import public_error_types
from flowledger.receiver._params import MAX_OFFSET, QueryParams, refuse_params
from flowledger.receiver._state import error_response, project_of, receiver_of, run_project_of
from flowledger.receiver._trace_url import add_trace_url
from flowledger.receiver.store._search import fts_query, run_id_search
from flowledger.receiver.store._views import (
    CURSOR_MAX_CHARS,
    RUN_ID_SEARCH_MIN_CHARS,
    RUN_PAYLOAD_KINDS,
    PageDirection,
    PayloadKind,
    RunFilter,
    RunMode,
    RunPageCursor,
)
from flowledger.receiver.viewer._summary import SummaryCache

__all__ = [
    "ATTEMPT_PAGE_DEFAULT",
    "ATTEMPT_PAGE_MAX",
    "CONTENT_SECURITY_POLICY",
    "ROUTES",
    "RUN_PAGE_DEFAULT",
    "RUN_PAGE_MAX",
    "STATIC_FILES",
]

CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
"""Scripts and styles only from the receiver itself: no inline script, no inline handlers, no other origin."""
RUN_PAGE_DEFAULT: Final = 50
RUN_PAGE_MAX: Final = 500
ATTEMPT_PAGE_DEFAULT: Final = 200
ATTEMPT_PAGE_MAX: Final = 2000
_VIEWER_PACKAGE: Final = "flowledger.receiver.viewer"
_VIEWER_DIR: Final = "static"
_MEDIA_TYPES: Final = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}


def _static_files() -> dict[str, str]:
    folder = resources.files(_VIEWER_PACKAGE).joinpath(_VIEWER_DIR)
    files = {}
    for file in folder.iterdir():
        suffix = "." + file.name.rpartition(".")[2]
        if suffix in _MEDIA_TYPES:
            files[file.name] = _MEDIA_TYPES[suffix]
    return dict(sorted(files.items()))


STATIC_FILES: Final = _static_files()
"""Files under ``/viewer/`` (the scripts, styles and icon in ``static/``) and their media types; nothing else is
served from there. A page added as a module of its own is served without touching this list."""
_INDEX: Final = "index.html"
_SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class _Asset:
    body: bytes
    etag: str


@cache
def _asset(name: str) -> _Asset:
    body = resources.files(_VIEWER_PACKAGE).joinpath(_VIEWER_DIR, name).read_bytes()
    return _Asset(body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')


def _serve(request: Request, name: str, media_type: str) -> Response:
    asset = _asset(name)
    headers = {**_SECURITY_HEADERS, "ETag": asset.etag, "Cache-Control": "no-cache"}
    if request.headers.get("if-none-match") == asset.etag:
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=media_type, headers=headers)


async def index(request: Request) -> Response:
    """The viewer page."""
    return _serve(request, _INDEX, "text/html; charset=utf-8")


async def static(request: Request) -> Response:
    """One of the viewer's own files."""
    name = request.path_params["name"]
    media_type = STATIC_FILES.get(name)
    if media_type is None:
        return error_response(404, f"the viewer has no file {name!r}")
    return _serve(request, name, media_type)


# --- parameters ---------------------------------------------------------------

FILTER_PARAMS: Final = ("workflow_id", "status", "trigger", "mode", "since", "until", "q", *CONTEXT_FIELD_PARAMS)
"""The filters of the run list and the summary cards; a route refuses parameters it does not take."""
RUNS_PARAMS: Final = (*FILTER_PARAMS, "cursor", "direction", "limit")
ATTEMPTS_PARAMS: Final = ("offset", "limit")


def _filter(params: QueryParams, project: str | None) -> RunFilter:
    search = params.text("q")
    search = None if search is None else search.strip() or None
    prefix = None
    if search is not None:
        prefix = run_id_search(search)  # the store keeps the id search when a run has that id, else the text
        if prefix is not None and len(prefix) < RUN_ID_SEARCH_MIN_CHARS:
            prefix = None
        try:
            fts_query(search)
        except ValueError as exc:
            raise QueryParamError(
                f"query parameter q={search[:40]!r}: {exc}; type words from an error, a log line or a payload, "
                "or the start of a run id"
            ) from None
    return RunFilter(
        text=search,
        workflow_id=params.text("workflow_id"),
        status=params.choice("status", RunStatus),
        trigger=params.choice("trigger", TriggerType),
        mode=params.choice("mode", RunMode),
        since=params.time("since"),
        until=params.time("until", before=True),
        run_id_prefix=prefix,
        project=project,
        context=context_filter(params, times=False),
    )


# --- queries ------------------------------------------------------------------


async def _query(work: Awaitable[_T]) -> _T | Response:
    """Await a query of the store; a Response when the client asked for something it cannot answer (a failure of
    the store is the app's 503 with Retry-After)."""
    try:
        return await work
    except AmbiguousRunError as exc:  # a run id used in several projects, asked for with keys off
        return error_response(409, str(exc))
    except QueryError as exc:
        return error_response(400, str(exc))


def _json(value: Any) -> Response:
    return JSONResponse(
        public_error_types(value), headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
    )


async def api_runs(request: Request) -> Response:
    """A keyset page of runs, newest first: ``?cursor=...&direction=older|newer&limit=N`` plus filters."""
    params = QueryParams(request)
    try:
        params.expect(RUNS_PARAMS)
        run_filter = _filter(params, project_of(request))
        limit = params.integer("limit", default=RUN_PAGE_DEFAULT, low=1, high=RUN_PAGE_MAX)
        token = params.text("cursor", max_chars=CURSOR_MAX_CHARS)
        cursor = None if token is None else RunPageCursor.decode(token)
        direction = params.choice("direction", PageDirection) or PageDirection.OLDER
    except (QueryParamError, QueryError) as exc:
        return error_response(400, str(exc))
    store = receiver_of(request).store
    page = await _query(store.viewer_runs(run_filter, limit=limit, cursor=cursor, direction=direction))
    if isinstance(page, Response):
        return page
    return _json({**page.as_json(), "limit": limit})


def _summary_cache(request: Request) -> SummaryCache:
    cache: SummaryCache | None = getattr(request.app.state, "viewer_summaries", None)
    if cache is None:
        cache = SummaryCache()
        request.app.state.viewer_summaries = cache
    return cache


async def api_summary(request: Request) -> Response:
    """Summary cards over every run the filters match."""
    params = QueryParams(request)
    try:
        params.expect(FILTER_PARAMS)
        run_filter = _filter(params, project_of(request))
    except QueryParamError as exc:
        return error_response(400, str(exc))
    cache = _summary_cache(request)
    result = await _query(cache.get(receiver_of(request).store, run_filter))
    return result if isinstance(result, Response) else _json(result)


async def api_facets(request: Request) -> Response:
    """Workflows, triggers, statuses and modes to filter by."""
    if refused := refuse_params(request):
        return error_response(400, refused)
    project = project_of(request)
    result = await _query(receiver_of(request).store.facets(project=project))
    return result if isinstance(result, Response) else _json(result)


def _not_found(run_id: str, span_id: str | None = None) -> Response:
    if span_id is None:
        return error_response(404, f"there is no run {run_id!r}")
    return error_response(404, f"run {run_id!r} has no node attempt {span_id!r}")


def _run_project(request: Request, *others: str) -> str | Response | None:
    """The project of the run the request names (the API key's, or ``?project=``; None for neither), or the 400
    answer (an unknown parameter, or a project that is not the key's)."""
    try:
        return run_project_of(request, others=others)
    except QueryParamError as exc:
        return error_response(400, str(exc))


async def api_run(request: Request) -> Response:
    """A run without its nodes, with small payloads and an overview of its attempts."""
    run_id, project = request.path_params["run_id"], _run_project(request)
    if isinstance(project, Response):
        return project
    receiver = receiver_of(request)
    result = await _query(receiver.store.run_header(run_id, project=project))
    if isinstance(result, Response):
        return result
    if result is None:
        return _not_found(run_id)
    return _json(add_trace_url(result, receiver.config.trace_url_template))


async def api_attempts(request: Request) -> Response:
    """Node attempts of a run in start order, ``?offset=&limit=``, without payloads."""
    run_id, project = request.path_params["run_id"], _run_project(request, *ATTEMPTS_PARAMS)
    if isinstance(project, Response):
        return project
    params = QueryParams(request)
    try:
        offset = params.integer("offset", default=0, low=0, high=MAX_OFFSET)
        limit = params.integer("limit", default=ATTEMPT_PAGE_DEFAULT, low=1, high=ATTEMPT_PAGE_MAX)
    except QueryParamError as exc:
        return error_response(400, str(exc))
    store = receiver_of(request).store
    result = await _query(store.attempts_page(run_id, project=project, offset=offset, limit=limit))
    if isinstance(result, Response):
        return result
    return _not_found(run_id) if result is None else _json(result)


async def api_attempt(request: Request) -> Response:
    """One node attempt with its payloads (large ones deferred)."""
    run_id, span_id, project = request.path_params["run_id"], request.path_params["span_id"], _run_project(request)
    if isinstance(project, Response):
        return project
    result = await _query(receiver_of(request).store.attempt_detail(run_id, span_id, project=project))
    if isinstance(result, Response):
        return result
    return _not_found(run_id, span_id) if result is None else _json(result)


def _raw_json(text: str) -> Response:
    return Response(
        text,
        media_type="application/json",
        headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
    )


async def api_attempt_payload(request: Request) -> Response:
    """One payload of a node attempt, exactly as stored."""
    run_id, span_id, asked = (request.path_params[k] for k in ("run_id", "span_id", "kind"))
    project = _run_project(request)
    if isinstance(project, Response):
        return project
    if asked not in set(PayloadKind):
        return error_response(404, f"a node attempt has no payload {asked!r}; ask for {', '.join(PayloadKind)}")
    kind = PayloadKind(asked)
    result = await _query(receiver_of(request).store.node_payload(run_id, span_id, kind, project=project))
    if isinstance(result, Response):
        return result
    if result is None:
        return error_response(404, f"run {run_id!r} has no {kind} stored for node attempt {span_id!r}")
    return _raw_json(result)


async def api_run_payload(request: Request) -> Response:
    """The run's input (trigger payload) or output, exactly as stored."""
    run_id, asked, project = request.path_params["run_id"], request.path_params["kind"], _run_project(request)
    if isinstance(project, Response):
        return project
    if asked not in RUN_PAYLOAD_KINDS:
        return error_response(404, f"a run has no payload {asked!r}; ask for {' or '.join(RUN_PAYLOAD_KINDS)}")
    kind = PayloadKind(asked)
    result = await _query(receiver_of(request).store.run_payload(run_id, kind, project=project))
    if isinstance(result, Response):
        return result
    if result is None:
        return error_response(404, f"run {run_id!r} has no {kind} stored")
    return _raw_json(result)


ROUTES: Final = [
    Route("/", index, methods=["GET"]),
    Route("/viewer/{name}", static, methods=["GET"]),
    Route("/api/viewer/runs", api_runs, methods=["GET"]),
    Route("/api/viewer/summary", api_summary, methods=["GET"]),
    Route("/api/viewer/facets", api_facets, methods=["GET"]),
    Route("/api/viewer/runs/{run_id}", api_run, methods=["GET"]),
    Route("/api/viewer/runs/{run_id}/attempts", api_attempts, methods=["GET"]),
    Route("/api/viewer/runs/{run_id}/attempts/{span_id}", api_attempt, methods=["GET"]),
    Route("/api/viewer/runs/{run_id}/attempts/{span_id}/{kind}", api_attempt_payload, methods=["GET"]),
    Route("/api/viewer/runs/{run_id}/payload/{kind}", api_run_payload, methods=["GET"]),
]
