"""Spans received over OTLP: validation into stored rows, and the shape of a trace.

A span is stored once per ``(trace_id, span_id, project)``; a second copy is a
duplicate and changes nothing (OTLP delivery is at-least-once, like events).
A span whose ids are not valid (trace id not 16 bytes or all zero, span id
not 8 bytes or all zero, a parent id of the wrong length, a link's trace or
span id invalid like the span's own), whose start, end or event time is
2**63 ns or later (past April 2262: the store keeps times as signed 64-bit
integers), or whose ``kind`` or ``status.code`` is not a value of the OTLP
enum is rejected and counted in the OTLP partial-success answer; its
siblings are still stored.
Attribute values become plain JSON: strings, booleans, numbers, lists and
objects; bytes become base64 strings; a NaN or infinite double becomes the
string OTLP's JSON mapping writes for it (``"NaN"``, ``"Infinity"``,
``"-Infinity"``), so every stored value can be answered as JSON.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any, Final

from flowledger._otlp_enums import SpanKind, StatusCode
from flowledger.receiver.store._spans import SpanRow, TraceLinks, json_safe_number

__all__ = [
    "MAX_REJECTION_DETAILS",
    "MAX_TIME_NS",
    "SPAN_ID_BYTES",
    "TRACE_ID_BYTES",
    "SpanBatch",
    "any_value",
    "attributes_json",
    "dumps",
    "id_problem",
    "is_trace_id",
    "json_safe_number",
    "rejection_message",
    "spans_from_request",
    "trace_json",
]

TRACE_ID_BYTES: Final = 16
SPAN_ID_BYTES: Final = 8
MAX_TIME_NS: Final = 2**63 - 1
"""The latest span time the store keeps (a signed 64-bit integer of ns since the epoch)."""
_SPAN_KINDS: Final = frozenset(int(kind) for kind in SpanKind)
_STATUS_CODES: Final = frozenset(int(code) for code in StatusCode)
MAX_REJECTION_DETAILS: Final = 5
"""How many rejected spans the partial-success message describes one by one."""


def rejection_message(rejected: int, problems: list[str], noun: str) -> str:
    """A partial-success message: how many ``noun`` were rejected and the first few problems ("" for none; a
    problem that rejected no item, such as a metric without points, is still named: OTLP's warning)."""
    if not problems:
        return ""
    shown = "; ".join(problems[:MAX_REJECTION_DETAILS])
    more = len(problems) - MAX_REJECTION_DETAILS
    return f"{rejected} {noun} rejected: {shown}" + (f"; and {more} more" if more > 0 else "")


@dataclass(frozen=True, slots=True)
class SpanBatch:
    """What one export request held: the valid spans and why the others were refused."""

    rows: list[SpanRow]
    rejected: int
    problems: list[str]

    @property
    def error_message(self) -> str:
        """The partial-success message: a count and the first few problems."""
        return rejection_message(self.rejected, self.problems, "span(s)")


def is_trace_id(text: str) -> bool:
    """Whether ``text`` is a lowercase-hex, non-zero 16-byte trace id."""
    return len(text) == 2 * TRACE_ID_BYTES and all(c in "0123456789abcdef" for c in text) and text.strip("0") != ""


def any_value(value: Any) -> Any:
    """An OTLP ``AnyValue`` as plain JSON."""
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "string_value":
        return value.string_value
    if which == "bool_value":
        return value.bool_value
    if which == "int_value":
        return value.int_value
    if which == "double_value":
        return json_safe_number(value.double_value)
    if which == "array_value":
        return [any_value(item) for item in value.array_value.values]
    if which == "kvlist_value":
        return attributes_json(value.kvlist_value.values)
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    return None  # pragma: no cover - a value kind newer than this code


def attributes_json(pairs: Iterable[Any]) -> dict[str, Any]:
    """OTLP ``KeyValue`` pairs as a JSON object (a repeated key keeps its last value)."""
    return {pair.key: any_value(pair.value) for pair in pairs}


def dumps(value: Any) -> str:
    """Compact JSON text (non-ASCII kept), as the store keeps attributes and bodies."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def id_problem(raw: bytes, size: int, what: str) -> str | None:
    """Why ``raw`` is not a valid id of ``size`` bytes (wrong length, all zero), or None."""
    if len(raw) != size:
        return f"{what} is {len(raw)} bytes, not {size}"
    if not any(raw):
        return f"{what} is all zero"
    return None


def _span_problem(span: Any) -> str | None:
    """Why ``span`` is refused, or None."""
    problem = id_problem(span.trace_id, TRACE_ID_BYTES, "traceId") or id_problem(span.span_id, SPAN_ID_BYTES, "spanId")
    if problem is None and span.parent_span_id and len(span.parent_span_id) != SPAN_ID_BYTES:
        problem = f"parentSpanId is {len(span.parent_span_id)} bytes, not {SPAN_ID_BYTES}"
    if problem is None and span.start_time_unix_nano > MAX_TIME_NS:
        problem = "startTimeUnixNano is 2**63 or more (past the year 2262)"
    if problem is None and span.end_time_unix_nano > MAX_TIME_NS:
        problem = "endTimeUnixNano is 2**63 or more (past the year 2262)"
    if problem is None and span.end_time_unix_nano and span.end_time_unix_nano < span.start_time_unix_nano:
        problem = "endTimeUnixNano is before startTimeUnixNano"
    if problem is None and span.kind not in _SPAN_KINDS:
        problem = f"kind is {span.kind}, not a SpanKind (0 to {max(_SPAN_KINDS)})"
    if problem is None and span.status.code not in _STATUS_CODES:
        problem = f"status.code is {span.status.code}, not a StatusCode (0 to {max(_STATUS_CODES)})"
    for e, event in enumerate(span.events):
        if problem is None and event.time_unix_nano > MAX_TIME_NS:
            problem = f"events[{e}].timeUnixNano is 2**63 or more (past the year 2262)"
    for k, link in enumerate(span.links):
        if problem is None:
            problem = id_problem(link.trace_id, TRACE_ID_BYTES, f"links[{k}].traceId") or id_problem(
                link.span_id, SPAN_ID_BYTES, f"links[{k}].spanId"
            )
    return problem


def spans_from_request(request: Any, *, project: str | None, received_at: str, skip: Collection[str] = ()) -> SpanBatch:
    """Validate and convert the spans of an ``ExportTraceServiceRequest``; those at the paths ``skip`` are
    stand-ins of spans that could not be decoded (:mod:`._salvage`), counted there."""
    rows: list[SpanRow] = []
    problems: list[str] = []
    for r, resource_spans in enumerate(request.resource_spans):
        resource = attributes_json(resource_spans.resource.attributes)
        service = resource.get("service.name")
        resource_text = dumps(resource)
        for s, scope_spans in enumerate(resource_spans.scope_spans):
            scope = scope_spans.scope
            for i, span in enumerate(scope_spans.spans):
                where = f"resourceSpans[{r}].scopeSpans[{s}].spans[{i}]"
                if skip and where in skip:
                    continue
                problem = _span_problem(span)
                if problem is not None:
                    problems.append(f"{where}: {problem}")
                    continue
                events = [
                    {
                        "name": event.name,
                        "time_unix_nano": event.time_unix_nano,
                        "attributes": attributes_json(event.attributes),
                    }
                    for event in span.events
                ]
                links = [
                    {
                        "trace_id": link.trace_id.hex(),
                        "span_id": link.span_id.hex(),
                        "attributes": attributes_json(link.attributes),
                    }
                    for link in span.links
                ]
                parent = span.parent_span_id.hex() if span.parent_span_id and any(span.parent_span_id) else None
                rows.append(
                    SpanRow(
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=parent,
                        name=span.name,
                        kind=int(span.kind),
                        start_ns=int(span.start_time_unix_nano),
                        end_ns=int(span.end_time_unix_nano or span.start_time_unix_nano),
                        status_code=int(span.status.code),
                        status_message=span.status.message or None,
                        service_name=service if isinstance(service, str) else None,
                        scope_name=scope.name or None,
                        scope_version=scope.version or None,
                        attributes=dumps(attributes_json(span.attributes)),
                        resource=resource_text,
                        events=dumps(events),
                        links=dumps(links),
                        project=project,
                        received_at=received_at,
                    )
                )
    return SpanBatch(rows=rows, rejected=len(problems), problems=problems)


def trace_json(trace_id: str, spans: list[dict[str, Any]], links: TraceLinks) -> dict[str, Any]:
    """A trace for ``GET /api/traces/{trace_id}``: spans in start order with parent and child links.

    Each span gets ``children`` (ids of the spans whose parent it is),
    ``parent_found`` (whether its parent is among the stored spans), and
    ``run_id`` / ``node_id`` / ``attempt`` / ``item`` when a stored run or
    node attempt has its span id.
    """
    ids = {span["span_id"] for span in spans}
    children: dict[str, list[str]] = {}
    for span in spans:
        parent = span["parent_span_id"]
        if parent is not None:
            children.setdefault(parent, []).append(span["span_id"])
    run_ids = list(links.run_ids)
    for span in spans:
        span_id = span["span_id"]
        span["children"] = children.get(span_id, [])
        span["parent_found"] = span["parent_span_id"] in ids if span["parent_span_id"] else None
        node = links.nodes.get(span_id)
        run_id = node["run_id"] if node else links.runs.get(span_id)
        span["run_id"] = run_id
        span["node_id"] = node["node_id"] if node else None
        span["attempt"] = node["attempt"] if node else None
        span["item"] = node["item"] if node else None
        if run_id is not None and run_id not in run_ids:
            run_ids.append(run_id)
    roots = [span["span_id"] for span in spans if not span["parent_found"]]
    return {"trace_id": trace_id, "span_count": len(spans), "root_span_ids": roots, "run_ids": run_ids, "spans": spans}
