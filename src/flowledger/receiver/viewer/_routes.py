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
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Final, TypeVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from flowledger._exceptions import ViewerQueryError
from flowledger._wire import RunStatus, TriggerType, format_ts
from flowledger.receiver._state import error_response, project_of, receiver_of
from flowledger.receiver.api._trace_url import add_trace_url
from flowledger.receiver.store._sqlite import SqliteStore
from flowledger.receiver.store._time import normalize_ts
from flowledger.receiver.store._viewer_query import (
    PAYLOAD_KINDS,
    PageDirection,
    RunFilter,
    RunMode,
    RunPageCursor,
    attempt_detail,
    attempts_page,
    facets,
    list_runs,
    node_payload,
    open_reader,
    run_header,
    run_payload,
    summary,
)

__all__ = [
    "ATTEMPT_PAGE_DEFAULT",
    "ATTEMPT_PAGE_MAX",
    "CONTENT_SECURITY_POLICY",
    "ROUTES",
    "RUN_PAGE_DEFAULT",
    "RUN_PAGE_MAX",
    "STATIC_FILES",
    "SummaryCache",
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
SUMMARY_MAX_AGE_S: Final = 30.0
"""Summary cards are recomputed at least this often while someone looks at them."""
SUMMARY_REUSE_FACTOR: Final = 10.0
"""Cards that took t seconds to compute are reused for up to 10 t seconds even if runs changed."""
SUMMARY_SLOW_S: Final = 0.2
"""Only cards that took at least this long are reused after the ledger grew; cheaper ones are always current."""
SUMMARY_CACHE_ENTRIES: Final = 32
_MAX_PARAM_CHARS: Final = 256
_VIEWER_PACKAGE: Final = "flowledger.receiver.viewer"
_VIEWER_DIR: Final = "static"
STATIC_FILES: Final = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
"""Files under ``/viewer/`` and their media types; nothing else is served from there."""
_INDEX: Final = "index.html"
_SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}

_T = TypeVar("_T")


class _BadParam(Exception):
    pass


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


def _text(request: Request, name: str) -> str | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    if len(raw) > _MAX_PARAM_CHARS:
        raise _BadParam(f"query parameter {name} is longer than {_MAX_PARAM_CHARS} characters")
    return raw


def _choice(request: Request, name: str, kind: Callable[[str], _T], allowed: list[str]) -> _T | None:
    raw = _text(request, name)
    if raw is None:
        return None
    try:
        return kind(raw)
    except ValueError:
        raise _BadParam(f"query parameter {name}={raw!r} is not one of {', '.join(allowed)}") from None


def _int(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = _text(request, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _BadParam(f"query parameter {name}={raw!r} is not a whole number") from None
    if not low <= value <= high:
        raise _BadParam(f"query parameter {name}={value} must be between {low} and {high}")
    return value


def _time(request: Request, name: str) -> str | None:
    raw = _text(request, name)
    if raw is None:
        return None
    try:
        return normalize_ts(raw)
    except ValueError:
        raise _BadParam(
            f"query parameter {name}={raw!r} is not an RFC 3339 time with an offset, like 2026-01-31T08:00:00Z"
        ) from None


def _filter(request: Request) -> RunFilter:
    search = _text(request, "q")
    return RunFilter(
        workflow_id=_text(request, "workflow_id"),
        status=_choice(request, "status", RunStatus, [s.value for s in RunStatus]),
        trigger=_choice(request, "trigger", TriggerType, [t.value for t in TriggerType]),
        mode=_choice(request, "mode", RunMode, [m.value for m in RunMode]),
        since=_time(request, "since"),
        until=_time(request, "until"),
        run_id_prefix=None if search is None else search.strip().lower() or None,
        project=project_of(request),
    )


# --- queries ------------------------------------------------------------------


def _db_path(request: Request) -> Path | None:
    store = receiver_of(request).store
    return store.path if isinstance(store, SqliteStore) else None


async def _query(request: Request, work: Callable[[sqlite3.Connection], _T]) -> _T | Response:
    """Run ``work`` on a fresh read-only connection in a worker thread; a Response when it cannot."""
    path = _db_path(request)
    if path is None:
        return error_response(501, "the viewer reads the SQLite store; this receiver runs on another store")

    def job() -> _T:
        with open_reader(path) as conn:
            return work(conn)

    try:
        return await asyncio.to_thread(job)
    except ViewerQueryError as exc:
        return error_response(400, str(exc))
    except sqlite3.Error as exc:
        return error_response(503, f"the database could not answer: {exc}")


def _json(value: Any) -> Response:
    return JSONResponse(value, headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})


async def api_runs(request: Request) -> Response:
    """A keyset page of runs, newest first: ``?cursor=...&direction=older|newer&limit=N`` plus filters."""
    try:
        run_filter = _filter(request)
        limit = _int(request, "limit", RUN_PAGE_DEFAULT, 1, RUN_PAGE_MAX)
        token = _text(request, "cursor")
        cursor = None if token is None else RunPageCursor.decode(token)
        direction = (
            _choice(request, "direction", PageDirection, [d.value for d in PageDirection]) or PageDirection.OLDER
        )
    except (_BadParam, ViewerQueryError) as exc:
        return error_response(400, str(exc))
    page = await _query(request, lambda c: list_runs(c, run_filter, limit=limit, cursor=cursor, direction=direction))
    if isinstance(page, Response):
        return page
    return _json({**page.as_json(), "limit": limit})


class SummaryCache:
    """Summary cards per filter, reused while nothing changed, and for a while after a slow computation.

    A card set is recomputed when the ledger grew (or after SUMMARY_MAX_AGE_S,
    since the sweeper marks runs stuck without writing to the ledger), but not
    sooner than SUMMARY_REUSE_FACTOR times as long as it took to compute when
    that was slow (SUMMARY_SLOW_S or more): a summary over a million runs is
    not recomputed on every poll, while a cheap one is always current. One
    computation per filter runs at a time; concurrent requests wait for it.
    """

    def __init__(self, *, max_entries: int = SUMMARY_CACHE_ENTRIES) -> None:
        self._entries: OrderedDict[RunFilter, tuple[int, float, float, dict[str, Any]]] = OrderedDict()
        self._locks: dict[RunFilter, threading.Lock] = {}
        self._guard = threading.Lock()
        self._max_entries = max_entries

    def _fresh(self, key: RunFilter, version: int) -> dict[str, Any] | None:
        with self._guard:
            entry = self._entries.get(key)
        if entry is None:
            return None
        seen_version, computed_at, cost_s, result = entry
        age_s = time.monotonic() - computed_at
        slow = cost_s >= SUMMARY_SLOW_S
        if (slow and age_s < min(SUMMARY_MAX_AGE_S, cost_s * SUMMARY_REUSE_FACTOR)) or (
            seen_version == version and age_s < SUMMARY_MAX_AGE_S
        ):
            return result
        return None

    def get(self, conn: sqlite3.Connection, key: RunFilter) -> dict[str, Any]:
        """The cards for ``key``, computed on ``conn`` unless a fresh enough set is kept."""
        version = int(conn.execute("SELECT coalesce(max(seq), 0) FROM ledger").fetchone()[0])
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            kept = self._fresh(key, version)
            if kept is not None:
                return kept
            started = time.monotonic()
            result = {**summary(conn, key), "as_of": format_ts(time.time_ns())}
            with self._guard:
                self._entries[key] = (version, time.monotonic(), time.monotonic() - started, result)
                self._entries.move_to_end(key)
                while len(self._entries) > self._max_entries:
                    dropped, _ = self._entries.popitem(last=False)
                    self._locks.pop(dropped, None)
            return result


def _summary_cache(request: Request) -> SummaryCache:
    cache: SummaryCache | None = getattr(request.app.state, "viewer_summaries", None)
    if cache is None:
        cache = SummaryCache()
        request.app.state.viewer_summaries = cache
    return cache


async def api_summary(request: Request) -> Response:
    """Summary cards over every run the filters match."""
    try:
        run_filter = _filter(request)
    except _BadParam as exc:
        return error_response(400, str(exc))
    cache = _summary_cache(request)
    result = await _query(request, lambda c: cache.get(c, run_filter))
    return result if isinstance(result, Response) else _json(result)


async def api_facets(request: Request) -> Response:
    """Workflows, triggers, statuses and modes to filter by."""
    project = project_of(request)
    result = await _query(request, lambda c: facets(c, project=project))
    return result if isinstance(result, Response) else _json(result)


def _not_found(run_id: str, span_id: str | None = None) -> Response:
    if span_id is None:
        return error_response(404, f"there is no run {run_id!r}")
    return error_response(404, f"run {run_id!r} has no node attempt {span_id!r}")


async def api_run(request: Request) -> Response:
    """A run without its nodes, with small payloads and an overview of its attempts."""
    run_id, project = request.path_params["run_id"], project_of(request)
    result = await _query(request, lambda c: run_header(c, run_id, project=project))
    if isinstance(result, Response):
        return result
    if result is None:
        return _not_found(run_id)
    return _json(add_trace_url(result, receiver_of(request).config.trace_url_template))


async def api_attempts(request: Request) -> Response:
    """Node attempts of a run in start order, ``?offset=&limit=``, without payloads."""
    run_id, project = request.path_params["run_id"], project_of(request)
    try:
        offset = _int(request, "offset", 0, 0, 2**62)
        limit = _int(request, "limit", ATTEMPT_PAGE_DEFAULT, 1, ATTEMPT_PAGE_MAX)
    except _BadParam as exc:
        return error_response(400, str(exc))
    result = await _query(request, lambda c: attempts_page(c, run_id, project=project, offset=offset, limit=limit))
    if isinstance(result, Response):
        return result
    return _not_found(run_id) if result is None else _json(result)


async def api_attempt(request: Request) -> Response:
    """One node attempt with its payloads (large ones deferred)."""
    run_id, span_id, project = request.path_params["run_id"], request.path_params["span_id"], project_of(request)
    result = await _query(request, lambda c: attempt_detail(c, run_id, span_id, project=project))
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
    run_id, span_id, kind = (request.path_params[k] for k in ("run_id", "span_id", "kind"))
    project = project_of(request)
    if kind not in PAYLOAD_KINDS:
        return error_response(404, f"a node attempt has no payload {kind!r}; ask for {', '.join(PAYLOAD_KINDS)}")
    result = await _query(request, lambda c: node_payload(c, run_id, span_id, kind, project=project))
    if isinstance(result, Response):
        return result
    if result is None:
        return error_response(404, f"run {run_id!r} has no {kind} stored for node attempt {span_id!r}")
    return _raw_json(result)


async def api_run_payload(request: Request) -> Response:
    """The run's input (trigger payload) or output, exactly as stored."""
    run_id, kind, project = request.path_params["run_id"], request.path_params["kind"], project_of(request)
    if kind not in PAYLOAD_KINDS[:2]:
        return error_response(404, f"a run has no payload {kind!r}; ask for input or output")
    result = await _query(request, lambda c: run_payload(c, run_id, kind, project=project))
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
