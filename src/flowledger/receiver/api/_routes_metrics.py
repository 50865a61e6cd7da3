"""``GET /api/metrics/custom``: custom metrics added up by workflow, node, name, labels and hour.

The rows come from the ``custom_metrics`` projection (see
:mod:`flowledger.receiver.store._custom_metrics`): no run ids, so the
answer's size follows the hours and the label sets asked for, not the runs.
"""

from __future__ import annotations

from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from flowledger._exceptions import QueryParamError
from flowledger.receiver._params import METRIC_NAME_PATTERN, QueryParams, label_filters, metric_name_problem
from flowledger.receiver._state import error_response, project_of, receiver_of
from flowledger.receiver.store._custom_metrics import MAX_ROWS, CustomMetricQuery

__all__ = ["CUSTOM_METRICS_PARAMS", "CUSTOM_METRICS_PATH", "DEFAULT_LIMIT", "ROUTES"]

CUSTOM_METRICS_PARAMS: Final = ("name", "workflow_id", "node_id", "since", "until", "label", "limit")
"""The query parameters of ``GET /api/metrics/custom`` (``label`` may repeat); any other is a 400."""
DEFAULT_LIMIT: Final = 1_000
_NAME_SCHEMA: Final = {"type": "string", "pattern": METRIC_NAME_PATTERN}


def _labels(params: QueryParams) -> dict[str, str] | None:
    """The ``label=NAME=VALUE`` filters, repeats once; None when one name is given two values (no row has both)."""
    try:
        return label_filters(params.texts("label"))
    except ValueError as exc:
        raise QueryParamError(f"query parameter label: {exc}") from None


def _query(request: Request) -> tuple[CustomMetricQuery, bool]:
    """The query asked for, and whether it can match any row (not when a label name is given two values)."""
    params = QueryParams(request, blank_is_absent=False)
    params.expect(CUSTOM_METRICS_PARAMS)
    name = params.text("name")
    if name is not None and (problem := metric_name_problem(name)):
        raise QueryParamError(f"query parameter name={problem}")
    labels = _labels(params)
    query = CustomMetricQuery(
        name=name,
        workflow_id=params.text("workflow_id"),
        node_id=params.text("node_id"),
        project=project_of(request),
        since=params.time("since"),
        until=params.time("until", before=True),
        labels=labels or {},
        limit=params.integer("limit", default=DEFAULT_LIMIT, low=1, high=MAX_ROWS),
    )
    return query, labels is not None


async def custom_metrics(request: Request) -> Response:
    """Custom metric totals, newest hour first: ``{"metrics": [{workflow_id, node_id, name, labels, hour, ...}]}``."""
    try:
        query, can_match = _query(request)
    except QueryParamError as exc:
        return error_response(400, str(exc))
    rows = await receiver_of(request).store.custom_metrics(query) if can_match else []
    return JSONResponse({"metrics": rows, "limit": query.limit})


_ROW_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["project", "workflow_id", "node_id", "name", "labels", "hour", "count", "sum", "min", "max", "avg"],
    "properties": {
        "project": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "workflow_id": {"type": "string"},
        "node_id": {"type": "string"},
        "name": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "hour": {"type": "string", "description": "The UTC hour, YYYY-MM-DDTHH:00:00Z."},
        "count": {"type": "integer"},
        "sum": {"type": "number"},
        "min": {"type": "number"},
        "max": {"type": "number"},
        "avg": {"type": "number"},
    },
}
_TIME_SCHEMA: Final = {
    "type": "string",
    "format": "date-time",
    "pattern": "^(1[0-9]{3}|[2-8][0-9]{3}|9[0-8][0-9]{2})-[^\\u0000]*$",
    "description": "RFC 3339 with an offset; years 1000 to 9899 (so that making it UTC stays in range).",
}

CUSTOM_METRICS_PATH: Final[dict[str, Any]] = {
    "get": {
        "summary": "Custom metrics added up by workflow, node, name, labels and hour",
        "parameters": [
            {"name": "name", "in": "query", "schema": _NAME_SCHEMA},
            {"name": "workflow_id", "in": "query", "schema": {"type": "string", "maxLength": 256}},
            {"name": "node_id", "in": "query", "schema": {"type": "string", "maxLength": 256}},
            {"name": "since", "in": "query", "description": "From the hour it falls in.", "schema": _TIME_SCHEMA},
            {"name": "until", "in": "query", "description": "Hours starting before this time.", "schema": _TIME_SCHEMA},
            {
                "name": "label",
                "in": "query",
                "description": "May repeat (at most 20 different names): NAME=VALUE, rows whose labels include it.",
                "style": "form",
                "explode": True,
                "schema": {
                    "type": "array",
                    "items": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]{0,63}=[^\\u0000]*$"},
                },
            },
            {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ROWS}},
        ],
        "responses": {
            "200": {
                "description": "The matching rows, newest hour first.",
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["metrics", "limit"],
                            "properties": {
                                "metrics": {"type": "array", "items": _ROW_SCHEMA},
                                "limit": {"type": "integer"},
                            },
                        }
                    }
                },
            },
            "400": {
                "description": "A query parameter is unknown, repeated or has a value that cannot be used.",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            },
            "401": {
                "description": "API keys are configured and the request has no valid one.",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            },
        },
    }
}
"""The route's OpenAPI path item."""

ROUTES: Final = [Route("/api/metrics/custom", custom_metrics, methods=["GET"])]
