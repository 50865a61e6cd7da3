"""OTLP/HTTP JSON spans built from ``run_finished`` and ``node_finished`` events.

The JSON form follows the OTLP/HTTP specification (which differs from the
plain protobuf JSON mapping): trace and span ids are lowercase hex,
64-bit integers (times, ``intValue``) are decimal strings, enums are
numbers. One finished run or node attempt becomes one span of kind
INTERNAL; a failure sets status ERROR with the message and adds an
``exception`` span event per the OpenTelemetry semantic conventions.
Attributes live under ``flowledger.*`` (docs/otel.md lists them), followed
by those a node attempt recorded itself (``attributes=``, ``set_attribute``:
an http node's ``http.request.method``, ``url.full`` and
``http.response.status_code``), as its event carries them: redacted and
within the capture limit already, and never in place of a ``flowledger.*``
one. A span holds at most :data:`SPAN_ATTRIBUTE_COUNT_LIMIT` attributes,
counting the rest in ``droppedAttributesCount``, as the OTel SDK does. The
resource carries ``service.name``, ``telemetry.sdk.*`` and the attributes of
``OTEL_RESOURCE_ATTRIBUTES`` (``Settings.resource_attributes``). Node events do
not repeat the workflow's id, name and version: :class:`RunMemo` remembers
them from each ``run_started`` (a bounded map, filled by the same sender
thread that builds the spans), so node spans carry them too.
"""

from __future__ import annotations

import calendar
import os
import re
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any, Final

import orjson

from flowledger._otlp_enums import SpanKind, StatusCode
from flowledger._version import __version__
from flowledger._wire import MARKER_KEY, EventKind, NodeStatus, RunStatus
from flowledger.instrument.capture import RawJSON

__all__ = [
    "OTEL_EXPORTED",
    "SPAN_ATTRIBUTE_COUNT_LIMIT",
    "RunMemo",
    "export_request",
    "span_from_event",
    "timestamp_unix_ns",
]

SCOPE_NAME: Final = "flowledger"
NS_PER_MS: Final = 1_000_000
_TS = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:[Zz]|([+-])(\d{2}):(\d{2}))$")
_NORMAL_TS_LEN: Final = len("2026-01-01T00:00:00.000000Z")
_ts_second: tuple[str, int] = ("", 0)
"""The last whole second parsed: ``YYYY-MM-DDTHH:MM:SS`` and its nanoseconds since the epoch."""
_HEX32 = re.compile(r"^[0-9a-f]{32}$")
_HEX16 = re.compile(r"^[0-9a-f]{16}$")
_RUN_STARTED: Final = EventKind.RUN_STARTED.value
_RUN_FINISHED: Final = EventKind.RUN_FINISHED.value
_NODE_FINISHED: Final = EventKind.NODE_FINISHED.value
_ERROR_STATUSES: Final = frozenset({RunStatus.FAILED.value, RunStatus.ABORTED.value, NodeStatus.FAILED.value})
"""Statuses of a finished run or node attempt whose span gets status ERROR."""
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
RUN_MEMO_MAX_RUNS: Final = 4096
"""Runs whose workflow attributes the span builder remembers (the oldest are forgotten first)."""
SPAN_ATTRIBUTE_COUNT_LIMIT: Final = 128
"""Attributes one span carries at most: the OTel SDK's default (``OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT``), which an
application's TracerProvider applies to the same spans. The ``flowledger.*`` ones come first."""
_SCALAR_TYPES: Final = (str, bool, int, float)
"""Attribute values OTLP carries as they are; any other recorded value goes as its JSON text."""
OTEL_EXPORTED: Final = "otel_exported"
"""Key in a finished event's data: true when its span was a real span the application's provider exports."""
_RUN_FIELDS: Final = (
    "workflow_id",
    "workflow_name",
    "workflow_version",
    "trigger_type",
    "dry_run",
    "definition_sha256",
)


_RUN_ATTRS: Final = (
    ("flowledger.workflow.id", "workflow_id"),
    ("flowledger.workflow.name", "workflow_name"),
    ("flowledger.workflow.version", "workflow_version"),
    ("flowledger.trigger", "trigger_type"),
    ("flowledger.status", "status"),
    ("flowledger.definition.sha256", "definition_sha256"),
    ("flowledger.dry_run", "dry_run"),
    ("flowledger.effect", "effect"),
)
"""Span attribute and ``data`` key of a run's span (after ``flowledger.run.id``; location and cost follow)."""
_NODE_ATTRS: Final = (
    ("flowledger.workflow.id", "workflow_id"),
    ("flowledger.workflow.name", "workflow_name"),
    ("flowledger.workflow.version", "workflow_version"),
    ("flowledger.node.id", "node_id"),
    ("flowledger.node.attempt", "attempt"),
    ("flowledger.node.item", "item"),
    ("flowledger.status", "status"),
    ("flowledger.definition.sha256", "definition_sha256"),
    ("flowledger.effect", "effect"),
    ("flowledger.node.skip_reason", "skip_reason"),
    ("flowledger.node.simulated", "simulated"),
    ("flowledger.node.duplicate", "duplicate"),
)
"""The same for a node attempt's span."""


_INTERNAL: Final = int(SpanKind.INTERNAL)
_UNSET: Final = int(StatusCode.UNSET)


def timestamp_unix_ns(text: str) -> int:
    """Nanoseconds since the epoch of an RFC 3339 timestamp (up to 9 fraction digits).

    Raises ValueError when ``text`` is not such a timestamp.
    """
    global _ts_second
    if len(text) == _NORMAL_TS_LEN and text[-1] == "Z" and text[19] == "." and text[20:26].isdigit():
        cached_prefix, cached_seconds = _ts_second  # the SDK's own form: parse the second once
        if text[:19] == cached_prefix:
            return cached_seconds + int(text[20:26]) * 1000
        seconds_ns = timestamp_unix_ns(text[:19] + "Z")
        _ts_second = (text[:19], seconds_ns)
        return seconds_ns + int(text[20:26]) * 1000
    match = _TS.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not an RFC 3339 timestamp")
    year, month, day, hour, minute, second, fraction, sign, off_h, off_m = match.groups()
    seconds = calendar.timegm((int(year), int(month), int(day), int(hour), int(minute), int(second), 0, 0, 0))
    if sign is not None:
        offset = int(off_h) * 3600 + int(off_m) * 60
        seconds -= offset if sign == "+" else -offset
    nanos = int((fraction or "0").ljust(9, "0"))
    return seconds * 1_000_000_000 + nanos


def _value(value: Any) -> dict[str, Any] | None:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:  # OTLP ints are int64: keep the exact digits as text
            return {"stringValue": str(value)}
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, str):
        return {"stringValue": value}
    return None


def _attributes(pairs: Iterable[tuple[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for key, raw in pairs:
        if raw is not None:
            pair = _key_value(key, raw)
            if pair is not None:
                out.append(pair)
    return out


_PAIRS: dict[tuple[str, type, Any], dict[str, Any]] = {}
_PAIRS_MAX: Final = 4096
_REUSED_TYPES: Final = (str, int, bool)


def _key_value(key: str, raw: Any) -> dict[str, Any] | None:
    """The OTLP ``KeyValue`` of one attribute (None for a value OTLP has no type for).

    Most attributes repeat from span to span (workflow, node, status, run): a
    pair seen before is the same dict as before, built once. Nothing changes
    these dicts after they are made; they are only encoded.
    """
    kind = type(raw)
    reused = kind in _REUSED_TYPES
    if reused:
        pair = _PAIRS.get((key, kind, raw))
        if pair is not None:
            return pair
    value = {"stringValue": raw} if kind is str else _value(raw)
    if value is None:
        return None
    pair = {"key": key, "value": value}
    if reused:
        if len(_PAIRS) >= _PAIRS_MAX:
            _PAIRS.clear()
        _PAIRS[(key, kind, raw)] = pair
    return pair


class RunMemo:
    """Workflow id, name, version, trigger and dry-run flag of recent runs, by run id (bounded)."""

    def __init__(self, max_runs: int = RUN_MEMO_MAX_RUNS) -> None:
        self._max_runs = max(1, max_runs)
        self._runs: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()
        _memos.add(self)

    def reset_after_fork(self) -> None:
        """Give a forked child a fresh lock: the parent's sender thread may have held it at the fork."""
        self._lock = threading.Lock()

    def remember(self, run_id: str, data: dict[str, Any]) -> None:
        """Keep the workflow fields of a ``run_started`` event's data."""
        fields = {name: data[name] for name in _RUN_FIELDS if data.get(name) is not None}
        with self._lock:
            self._runs[run_id] = fields
            self._runs.move_to_end(run_id)
            while len(self._runs) > self._max_runs:
                self._runs.popitem(last=False)

    def get(self, run_id: Any) -> dict[str, Any]:
        """The remembered fields of a run (empty when unknown)."""
        with self._lock:
            return dict(self._runs.get(run_id, {})) if isinstance(run_id, str) else {}


_memos: weakref.WeakSet[RunMemo] = weakref.WeakSet()


def _reset_memos_after_fork() -> None:
    for memo in list(_memos):
        memo.reset_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_memos_after_fork)

_RUNS: Final = RunMemo()


def span_from_event(event: dict[str, Any], runs: RunMemo | None = _RUNS) -> dict[str, Any] | None:
    """The OTLP JSON span of a ``run_finished`` or ``node_finished`` event.

    None for any other kind, or when the event lacks what a span needs
    (a 32-hex trace id, a 16-hex span id, a start time and a duration).
    A finished event marked ``"otel_exported": true`` gives none either: its span
    was a real span of the application's TracerProvider, which exports it
    itself, and a second copy with the same span id would show it twice.
    A ``run_started`` event gives no span but is remembered in ``runs``, whose
    workflow fields then fill in the run's and its nodes' spans.
    """
    kind = event.get("kind")
    data = event.get("data")
    if not isinstance(data, dict):
        return None
    if kind == _RUN_STARTED and runs is not None and isinstance(event.get("run_id"), str):
        runs.remember(event["run_id"], data)
        return None
    if kind != _NODE_FINISHED and kind != _RUN_FINISHED:
        return None
    if data.get(OTEL_EXPORTED) is True:
        return None  # a real span of the application's provider: its own pipeline exports it
    known = runs.get(event.get("run_id")) if runs is not None else {}
    data = {**known, **data}
    trace_id, span_id = data.get("trace_id"), data.get("span_id")
    if not (
        isinstance(trace_id, str) and _HEX32.match(trace_id) and isinstance(span_id, str) and _HEX16.match(span_id)
    ):
        return None
    started_at, duration_ms = data.get("started_at"), data.get("duration_ms")
    if not isinstance(started_at, str) or isinstance(duration_ms, bool) or not isinstance(duration_ms, int | float):
        return None
    try:
        start_ns = timestamp_unix_ns(started_at)
    except ValueError:
        return None
    end_ns = start_ns + max(0, round(duration_ms * NS_PER_MS))

    is_run = kind == _RUN_FINISHED
    workflow_id = data.get("workflow_id")
    if is_run:
        name = f"run {workflow_id}" if isinstance(workflow_id, str) and workflow_id else "run"
    else:
        node_id = data.get("node_id")
        name = node_id if isinstance(node_id, str) and node_id else "node"

    attributes = _attributes([("flowledger.run.id", event.get("run_id"))])
    for attribute, key in _RUN_ATTRS if is_run else _NODE_ATTRS:  # a loop, not _attributes(genexpr): a third less
        raw = data.get(key)
        if raw is not None:
            pair = _key_value(attribute, raw)
            if pair is not None:
                attributes.append(pair)
    location = data.get("location")
    if isinstance(location, dict):
        attributes += _attributes(
            [("flowledger.definition.file", location.get("file")), ("flowledger.definition.line", location.get("line"))]
        )
    cost = data.get("cost")
    if isinstance(cost, dict):
        attributes += _attributes(
            [
                ("flowledger.cost.usd", _as_float(cost.get("usd"))),
                ("flowledger.cost.tokens", cost.get("tokens")),
                ("flowledger.cost.tool_calls", cost.get("tool_calls")),
                ("flowledger.cost.external_requests", cost.get("external_requests")),
            ]
        )
    recorded = data.get("attributes")
    dropped = 0 if recorded is None else _add_recorded(attributes, recorded)
    span: dict[str, Any] = {
        "traceId": trace_id,
        "spanId": span_id,
        "name": name,
        "kind": _INTERNAL,
        "startTimeUnixNano": str(start_ns),
        "endTimeUnixNano": str(end_ns),
        "attributes": attributes,
    }
    if dropped:
        span["droppedAttributesCount"] = dropped
    parent = data.get("parent_span_id")
    if isinstance(parent, str) and _HEX16.match(parent):
        span["parentSpanId"] = parent
    error = data.get("error")
    if data.get("status") in _ERROR_STATUSES or isinstance(error, dict):
        message, events = _error_parts(error, end_ns)
        span["status"] = {"code": int(StatusCode.ERROR), "message": message}
        if events:
            span["events"] = events
    else:
        span["status"] = {"code": _UNSET}
    return span


def _add_recorded(attributes: list[dict[str, Any]], recorded: Any) -> int:
    """Append the attributes an attempt recorded to the span's ``attributes``, up to the span's limit; return how
    many did not fit.

    ``recorded`` is the event's ``attributes`` as capture left it (a :class:`RawJSON` on the SDK's own events):
    secret-looking keys already redacted, the whole within ``capture_limit_bytes``. One cut whole (a ``truncated``
    marker) names no attribute, so none is taken from it. A key the span has already (a ``flowledger.*`` one) is
    left out: a node cannot pass its own value for flowledger's.
    """
    if type(recorded) is RawJSON:
        recorded = recorded.value()
    if not isinstance(recorded, dict) or MARKER_KEY in recorded:
        return 0
    taken = {pair["key"] for pair in attributes}
    dropped = 0
    for key, raw in recorded.items():
        if not isinstance(key, str) or not key or key in taken or raw is None:
            continue
        value = _value(raw if isinstance(raw, _SCALAR_TYPES) else orjson.dumps(raw).decode())
        if value is None:
            continue
        if len(attributes) >= SPAN_ATTRIBUTE_COUNT_LIMIT:
            dropped += 1
            continue
        attributes.append({"key": key, "value": value})
    return dropped


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _error_parts(error: Any, at_ns: int) -> tuple[str, list[dict[str, Any]]]:
    if not isinstance(error, dict):
        return "", []
    etype, message, stack = error.get("type"), error.get("message"), error.get("stack")
    text = f"{etype}: {message}" if etype and message else str(message or etype or "")
    attributes = _attributes(
        [
            ("exception.type", etype if isinstance(etype, str) else None),
            ("exception.message", message if isinstance(message, str) else None),
            ("exception.stacktrace", stack if isinstance(stack, str) else None),
        ]
    )
    return text, [{"timeUnixNano": str(at_ns), "name": "exception", "attributes": attributes}]


def export_request(
    spans: list[dict[str, Any]], *, service_name: str, resource_attributes: Sequence[tuple[str, str]] = ()
) -> dict[str, Any]:
    """Wrap spans in one OTLP ``ExportTraceServiceRequest`` (JSON form).

    The resource has ``resource_attributes`` (``OTEL_RESOURCE_ATTRIBUTES``) besides ``service.name`` and
    ``telemetry.sdk.*``, which are the SDK's own whatever those say.
    """
    own = {
        "service.name": service_name,
        "telemetry.sdk.name": SCOPE_NAME,
        "telemetry.sdk.language": "python",
        "telemetry.sdk.version": __version__,
    }
    extra = [(key, value) for key, value in resource_attributes if key not in own]
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": _attributes([*own.items(), *extra])},
                "scopeSpans": [{"scope": {"name": SCOPE_NAME, "version": __version__}, "spans": spans}],
            }
        ]
    }
