"""Stored OTLP spans: the row of the ``spans`` table and the API shape of a span.

The OTLP stage (:mod:`flowledger.receiver.otlp`) turns export requests into
:class:`SpanRow` values; the store keeps them once per ``(trace_id, span_id, project)``
and answers traces with :func:`span_json` and :class:`TraceLinks`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from flowledger._otlp_enums import SpanKind, StatusCode
from flowledger._wire import format_ts

__all__ = ["NS_PER_MS", "SPAN_COLUMNS", "SpanRow", "TraceLinks", "json_safe_number", "loads_stored", "span_json"]

NS_PER_MS: Final = 1_000_000
_NON_FINITE_JSON: Final = {"NaN": "NaN", "Infinity": "Infinity", "-Infinity": "-Infinity"}
"""The bare JSON constants Python may have written, read back as OTLP JSON's strings for them."""


def json_safe_number(value: float) -> float | str:
    """``value``, or for a NaN or infinity the string OTLP's JSON mapping writes ("NaN", "Infinity", "-Infinity")."""
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def loads_stored(text: str) -> Any:
    """Stored JSON text as plain, JSON-safe values: a bare NaN or Infinity (kept by older versions) becomes a string."""
    return json.loads(text, parse_constant=_NON_FINITE_JSON.__getitem__)


SPAN_COLUMNS: Final = (
    "trace_id",
    "span_id",
    "parent_span_id",
    "name",
    "kind",
    "start_ns",
    "end_ns",
    "status_code",
    "status_message",
    "service_name",
    "scope_name",
    "scope_version",
    "attributes",
    "resource",
    "events",
    "links",
    "project",
    "received_at",
)
"""Columns of the ``spans`` table, in the order of :meth:`SpanRow.values`."""


@dataclass(frozen=True, slots=True)
class SpanRow:
    """One span as stored."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: int
    start_ns: int
    end_ns: int
    status_code: int
    status_message: str | None
    service_name: str | None
    scope_name: str | None
    scope_version: str | None
    attributes: str
    resource: str
    events: str
    links: str
    project: str | None
    received_at: str

    def values(self) -> tuple[Any, ...]:
        """The row's values in SPAN_COLUMNS order."""
        return tuple(getattr(self, name) for name in SPAN_COLUMNS)


@dataclass(frozen=True, slots=True)
class TraceLinks:
    """Which stored runs and node attempts the spans of one trace belong to."""

    runs: dict[str, str]
    """span_id -> run_id for each run whose own span is in the trace."""
    nodes: dict[str, dict[str, Any]]
    """span_id -> {run_id, node_id, attempt, item} for each node attempt in the trace."""
    run_ids: list[str]
    """Every stored run whose trace this is, oldest first (also those whose own span never arrived)."""


def _kind_name(kind: int) -> str:
    try:
        return SpanKind(kind).name.lower()
    except ValueError:
        return "unspecified"


def _status_name(code: int) -> str:
    try:
        return StatusCode(code).name.lower()
    except ValueError:
        return "unset"


def span_json(row: Sequence[Any]) -> dict[str, Any]:
    """The API shape of one stored span from a row selected in SPAN_COLUMNS order."""
    values = dict(zip(SPAN_COLUMNS, row, strict=True))
    start_ns, end_ns = int(values["start_ns"]), int(values["end_ns"])
    events = loads_stored(values["events"])
    for event in events:
        event["time"] = format_ts(int(event["time_unix_nano"])) if event.get("time_unix_nano") else None
    return {
        "trace_id": values["trace_id"],
        "span_id": values["span_id"],
        "parent_span_id": values["parent_span_id"],
        "name": values["name"],
        "kind": _kind_name(values["kind"]),
        "start_time": format_ts(start_ns),
        "end_time": format_ts(end_ns),
        "start_time_unix_nano": start_ns,
        "end_time_unix_nano": end_ns,
        "duration_ms": (end_ns - start_ns) / NS_PER_MS,
        "status": {"code": _status_name(values["status_code"]), "message": values["status_message"]},
        "service_name": values["service_name"],
        "scope": {"name": values["scope_name"], "version": values["scope_version"]},
        "attributes": loads_stored(values["attributes"]),
        "resource": loads_stored(values["resource"]),
        "events": events,
        "links": loads_stored(values["links"]),
        "project": values["project"],
    }
