"""Reading what OTLP stored besides spans: ``GET /api/otlp/metrics`` and ``GET /api/otlp/logs``.

``/api/otlp/metrics`` lists the stored series (without ``name``) or one
metric's series with their points in time order (``since``/``until`` bound
the points, ``limit`` caps them per series, newest kept). ``/api/otlp/logs``
answers the log records of one run's trace (``run_id``), of one trace
(``trace_id``; both: the run's records if that is its trace), or the newest
records without either, each with the run and node attempt its span id
belongs to.
With API keys on, both see the caller's project only.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from flowledger._exceptions import QueryParamError
from flowledger.receiver._params import QueryParams
from flowledger.receiver._state import error_response, project_of, receiver_of
from flowledger.receiver.otlp._spans import is_trace_id

__all__ = ["LOGS_PARAMS", "METRICS_PARAMS", "otlp_logs", "otlp_metrics"]

METRICS_PARAMS: Final = ("name", "since", "until", "limit")
LOGS_PARAMS: Final = ("run_id", "trace_id", "limit")
DEFAULT_POINTS: Final = 1000
MAX_POINTS: Final = 10_000
"""Most points of one series in an answer (the newest)."""
MAX_SERIES: Final = 1000
"""Most series in an answer."""
DEFAULT_LOG_RECORDS: Final = 1000
MAX_LOG_RECORDS: Final = 10_000
_NS_PER_US: Final = 1000
_MAX_NS: Final = 2**63 - 1
_MIN_NS: Final = -(2**63)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def _ns(params: QueryParams, name: str) -> int | None:
    """A time parameter as ns since the epoch: the time ``QueryParams.time`` checked and normalised to UTC (its
    raw text may spell what ``datetime.fromisoformat`` does not read, such as a lowercase ``z``)."""
    normal = params.time(name)
    if normal is None:
        return None
    value = datetime.fromisoformat(normal)
    ns = (value - _EPOCH) // timedelta(microseconds=1) * _NS_PER_US
    return max(_MIN_NS, min(ns, _MAX_NS))  # times are kept as signed 64-bit ns: past them, the range's end


async def otlp_metrics(request: Request) -> Response:
    """Stored OTLP metric series: all of them (no points), or one metric's with their points."""
    params = QueryParams(request, blank_is_absent=False)
    try:
        params.expect(METRICS_PARAMS)
        name = params.text("name")
        since, until = _ns(params, "since"), _ns(params, "until")
        limit = params.integer("limit", default=DEFAULT_POINTS, low=1, high=MAX_POINTS)
    except QueryParamError as exc:
        return error_response(400, str(exc))
    series = await receiver_of(request).store.metric_series(
        name=name,
        project=project_of(request),
        since_ns=since,
        until_ns=until,
        max_series=MAX_SERIES,
        max_points=limit,
    )
    return JSONResponse({"series": series})


async def otlp_logs(request: Request) -> Response:
    """OTLP log records of one run's trace or of one trace, linked to runs and node attempts."""
    params = QueryParams(request, blank_is_absent=False)
    try:
        params.expect(LOGS_PARAMS)
        run_id, trace_id = params.text("run_id"), params.text("trace_id")
        limit = params.integer("limit", default=DEFAULT_LOG_RECORDS, low=1, high=MAX_LOG_RECORDS)
    except QueryParamError as exc:
        return error_response(400, str(exc))
    if trace_id is not None:
        trace_id = trace_id.lower()
        if not is_trace_id(trace_id):
            return error_response(400, f"trace_id={trace_id[:64]!r} is not 32 hexadecimal digits, not all zero")
    records = await receiver_of(request).store.otlp_logs(
        trace_id=trace_id, run_id=run_id, project=project_of(request), limit=limit
    )
    if records is None:
        return error_response(404, f"there is no run {run_id!r}")
    return JSONResponse({"records": records})
