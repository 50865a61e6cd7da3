"""Log records received over OTLP: validation into stored rows.

A record is refused (and counted in the partial-success answer) when its
trace id is set but not 16 bytes or all zero, its span id set but not 8
bytes or all zero, a span id comes without a trace id, its time is
2**63 ns or later, or its ``severityNumber`` is not a value of the OTLP
enum (0 to 24); its siblings are still stored. A record without a time
takes its observed time, and one with neither the time it was received.
Bodies and attributes become plain JSON as span attributes do, in the order
sent. A record's key (what makes a retry a duplicate) digests its resource,
scope and record with every key-value list sorted by key (nested ones too,
:func:`canonical_bytes`): the same record with its attributes in another
order is the same record.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Final

from opentelemetry.proto.logs.v1 import logs_pb2

from flowledger.receiver.otlp._spans import (
    MAX_TIME_NS,
    SPAN_ID_BYTES,
    TRACE_ID_BYTES,
    any_value,
    attributes_json,
    dumps,
    id_problem,
    rejection_message,
)
from flowledger.receiver.store._otlp_logs import OtlpLogRow

__all__ = ["LogBatch", "canonical_bytes", "logs_from_request"]

_SEVERITY_NUMBERS: Final = frozenset(int(number) for number in logs_pb2.SeverityNumber.values())


@dataclass(frozen=True, slots=True)
class LogBatch:
    """What one logs export request held: the valid records and why the others were refused."""

    rows: list[OtlpLogRow]
    rejected: int
    problems: list[str]

    @property
    def error_message(self) -> str:
        """The partial-success message: a count and the first few problems."""
        return rejection_message(self.rejected, self.problems, "log record(s)")


def _has_unsorted(pairs: Any) -> bool:
    """Whether repeated ``KeyValue`` ``pairs``, or a key-value list inside their values, is not sorted by key."""
    keys = [pair.key for pair in pairs]
    return keys != sorted(keys) or any(_value_has_unsorted(pair.value) for pair in pairs)


def _value_has_unsorted(value: Any) -> bool:
    """Whether a key-value list inside an ``AnyValue`` is not sorted by key."""
    which = value.WhichOneof("value")
    if which == "kvlist_value":
        return _has_unsorted(value.kvlist_value.values)
    if which == "array_value":
        return any(_value_has_unsorted(item) for item in value.array_value.values)
    return False


def _sort_pairs(pairs: Any) -> None:
    """Sort ``pairs`` by key in place, stably (a repeated key keeps its last value last), and the lists inside."""
    for pair in pairs:
        _sort_value(pair.value)
    ordered = []
    for pair in sorted(pairs, key=lambda kv: kv.key):
        kept = type(pair)()
        kept.CopyFrom(pair)
        ordered.append(kept)
    del pairs[:]
    pairs.extend(ordered)


def _sort_value(value: Any) -> None:
    """Sort the key-value lists inside an ``AnyValue`` in place (an array keeps its order)."""
    which = value.WhichOneof("value")
    if which == "kvlist_value":
        _sort_pairs(value.kvlist_value.values)
    elif which == "array_value":
        for item in value.array_value.values:
            _sort_value(item)


def canonical_bytes(message: Any) -> bytes:
    """``message`` (a resource, scope or log record) serialised deterministically with its attributes, and every
    key-value list inside them or its body, sorted by key; ``message`` itself stays as sent (it is forwarded)."""
    with_body = "body" in message.DESCRIPTOR.fields_by_name
    if not _has_unsorted(message.attributes) and not (with_body and _value_has_unsorted(message.body)):
        return bytes(message.SerializeToString(deterministic=True))
    canonical = type(message)()
    canonical.CopyFrom(message)
    _sort_pairs(canonical.attributes)
    if with_body:
        _sort_value(canonical.body)
    return bytes(canonical.SerializeToString(deterministic=True))


def _record_problem(record: Any) -> str | None:
    """Why ``record`` is refused, or None."""
    if record.trace_id:
        problem = id_problem(record.trace_id, TRACE_ID_BYTES, "traceId")
        if problem:
            return problem
    if record.span_id:
        problem = id_problem(record.span_id, SPAN_ID_BYTES, "spanId")
        if problem:
            return problem
        if not record.trace_id:
            return "spanId is set without a traceId"
    if record.time_unix_nano > MAX_TIME_NS or record.observed_time_unix_nano > MAX_TIME_NS:
        return "timeUnixNano is 2**63 or more (past the year 2262)"
    if record.severity_number not in _SEVERITY_NUMBERS:
        return f"severityNumber is {record.severity_number}, not a SeverityNumber (0 to {max(_SEVERITY_NUMBERS)})"
    return None


def logs_from_request(request: Any, *, project: str | None, received_at: str, skip: Collection[str] = ()) -> LogBatch:
    """Validate and convert the records of an ``ExportLogsServiceRequest``; those at the paths ``skip`` are
    stand-ins of records that could not be decoded (:mod:`._salvage`), counted there."""
    rows: list[OtlpLogRow] = []
    problems: list[str] = []
    now_ns = time.time_ns()
    for r, resource_logs in enumerate(request.resource_logs):
        resource = attributes_json(resource_logs.resource.attributes)
        service = resource.get("service.name")
        resource_text = dumps(resource)
        resource_bytes = canonical_bytes(resource_logs.resource)
        for s, scope_logs in enumerate(resource_logs.scope_logs):
            scope = scope_logs.scope
            scope_bytes = canonical_bytes(scope)
            for i, record in enumerate(scope_logs.log_records):
                where = f"resourceLogs[{r}].scopeLogs[{s}].logRecords[{i}]"
                if skip and where in skip:
                    continue
                problem = _record_problem(record)
                if problem is not None:
                    problems.append(f"{where}: {problem}")
                    continue
                digest = hashlib.sha256(repr(project).encode())
                for part in (resource_bytes, scope_bytes):
                    digest.update(len(part).to_bytes(8, "big") + part)
                digest.update(canonical_bytes(record))
                rows.append(
                    OtlpLogRow(
                        record_key=digest.hexdigest(),
                        project=project,
                        trace_id=record.trace_id.hex() or None,
                        span_id=record.span_id.hex() or None,
                        time_ns=int(record.time_unix_nano or record.observed_time_unix_nano or now_ns),
                        observed_ns=int(record.observed_time_unix_nano) or None,
                        severity_number=int(record.severity_number),
                        severity_text=record.severity_text or None,
                        body=dumps(any_value(record.body)),
                        attributes=dumps(attributes_json(record.attributes)),
                        event_name=getattr(record, "event_name", "") or None,
                        service_name=service if isinstance(service, str) else None,
                        resource=resource_text,
                        scope_name=scope.name or None,
                        scope_version=scope.version or None,
                        received_at=received_at,
                    )
                )
    return LogBatch(rows=rows, rejected=len(problems), problems=problems)
