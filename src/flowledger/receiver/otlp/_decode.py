"""OTLP/HTTP bodies: content types, decoding requests, encoding answers.

Requests are decoded with the official OpenTelemetry proto classes: protobuf
with ``ParseFromString``, JSON with :mod:`google.protobuf.json_format` after
one OTLP-specific step (the OTLP/HTTP JSON encoding writes trace and span
ids as hex, where the plain protobuf JSON mapping expects base64). Unknown
fields are ignored, as the specification asks of receivers. Answers use the
request's own content type: the signal's ``Export*ServiceResponse`` on
success, a ``google.rpc.Status`` on a client error.
"""

from __future__ import annotations

import base64
import enum
import json
from typing import Any, Final

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from google.rpc import status_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from flowledger._exceptions import OtlpBodyError
from flowledger.receiver._body import no_json_constants

__all__ = [
    "OtlpFormat",
    "OtlpSignal",
    "decode_request",
    "encode_error",
    "encode_response",
    "format_of",
    "ids_to_base64",
]

_ID_KEYS: Final = frozenset({"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"})
_GRPC_INVALID_ARGUMENT: Final = 3
"""``google.rpc.Code.INVALID_ARGUMENT``: the code of every 4xx answer body."""
_GRPC_BY_STATUS: Final = {413: 8, 415: 3, 501: 12, 503: 14, 408: 4}
"""HTTP status -> google.rpc.Code (RESOURCE_EXHAUSTED, INVALID_ARGUMENT, UNIMPLEMENTED, UNAVAILABLE,
DEADLINE_EXCEEDED)."""


class OtlpFormat(enum.Enum):
    """The two OTLP/HTTP encodings, named by their media type."""

    PROTOBUF = "application/x-protobuf"
    JSON = "application/json"


_MEDIA_TYPES: Final = {
    "application/x-protobuf": OtlpFormat.PROTOBUF,
    "application/protobuf": OtlpFormat.PROTOBUF,
    "application/json": OtlpFormat.JSON,
}


class OtlpSignal(enum.Enum):
    """An OTLP signal and its URL path."""

    TRACES = "/v1/traces"
    LOGS = "/v1/logs"
    METRICS = "/v1/metrics"

    @property
    def request_type(self) -> type[Message]:
        """The ``Export*ServiceRequest`` class of the signal."""
        return _REQUEST_TYPES[self]

    @property
    def response_type(self) -> type[Message]:
        """The ``Export*ServiceResponse`` class of the signal."""
        return _RESPONSE_TYPES[self]


_REQUEST_TYPES: Final[dict[OtlpSignal, type[Message]]] = {
    OtlpSignal.TRACES: trace_service_pb2.ExportTraceServiceRequest,
    OtlpSignal.LOGS: logs_service_pb2.ExportLogsServiceRequest,
    OtlpSignal.METRICS: metrics_service_pb2.ExportMetricsServiceRequest,
}
_RESPONSE_TYPES: Final[dict[OtlpSignal, type[Message]]] = {
    OtlpSignal.TRACES: trace_service_pb2.ExportTraceServiceResponse,
    OtlpSignal.LOGS: logs_service_pb2.ExportLogsServiceResponse,
    OtlpSignal.METRICS: metrics_service_pb2.ExportMetricsServiceResponse,
}


def format_of(content_type: str | None) -> OtlpFormat | None:
    """The OTLP encoding a ``Content-Type`` header names, or None for any other type."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return _MEDIA_TYPES.get(media)


def _hex_to_base64(value: str, where: str) -> str:
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise OtlpBodyError(400, f"{where} is {value[:40]!r}, not a hex id") from None
    return base64.b64encode(raw).decode("ascii")


def ids_to_base64(node: Any, where: str) -> Any:
    """Rewrite the hex trace/span ids of OTLP JSON into the base64 the protobuf JSON mapping reads."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            place = f"{where}.{key}" if where else str(key)
            if key in _ID_KEYS and isinstance(value, str):
                out[key] = _hex_to_base64(value, place)
            else:
                out[key] = ids_to_base64(value, place)
        return out
    if isinstance(node, list):
        return [ids_to_base64(item, f"{where}[{i}]") for i, item in enumerate(node)]
    return node


def decode_request(signal: OtlpSignal, body: bytes, fmt: OtlpFormat) -> Message:
    """Decode an export request of ``signal``; OtlpBodyError (400) when the body is not one."""
    message = signal.request_type()
    if fmt is OtlpFormat.PROTOBUF:
        try:
            message.ParseFromString(body)
        except (DecodeError, RecursionError, ValueError) as exc:
            raise OtlpBodyError(400, f"the body is not an OTLP protobuf {message.DESCRIPTOR.name}: {exc}") from None
        return message
    try:
        document = json.loads(body.decode("utf-8"), parse_constant=no_json_constants) if body.strip() else {}
    except UnicodeDecodeError as exc:
        raise OtlpBodyError(400, f"the body is not valid UTF-8 (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise OtlpBodyError(
            400, f"the body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except (ValueError, RecursionError) as exc:
        raise OtlpBodyError(400, f"the body is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise OtlpBodyError(400, f"the body must be a JSON object (an OTLP {message.DESCRIPTOR.name})")
    try:
        json_format.ParseDict(ids_to_base64(document, ""), message, ignore_unknown_fields=True)
    except (json_format.ParseError, RecursionError, ValueError, TypeError) as exc:
        raise OtlpBodyError(400, f"the body is not an OTLP JSON {message.DESCRIPTOR.name}: {exc}") from None
    return message


def _encode(message: Message, fmt: OtlpFormat) -> bytes:
    if fmt is OtlpFormat.PROTOBUF:
        return bytes(message.SerializeToString())
    return json.dumps(json_format.MessageToDict(message), separators=(",", ":")).encode()


def encode_response(signal: OtlpSignal, fmt: OtlpFormat, *, rejected: int = 0, error_message: str = "") -> bytes:
    """The signal's success answer; with ``rejected`` > 0, a partial success naming the problem."""
    response = signal.response_type()
    if rejected or error_message:
        partial = response.partial_success
        field = {
            OtlpSignal.TRACES: "rejected_spans",
            OtlpSignal.LOGS: "rejected_log_records",
            OtlpSignal.METRICS: "rejected_data_points",
        }[signal]
        setattr(partial, field, rejected)
        partial.error_message = error_message
    return _encode(response, fmt)


def encode_error(status: int, message: str, fmt: OtlpFormat) -> bytes:
    """A ``google.rpc.Status`` body for an error answer (JSON also carries the receiver's ``error`` key)."""
    code = _GRPC_BY_STATUS.get(status, _GRPC_INVALID_ARGUMENT)
    rpc_status = status_pb2.Status(code=code, message=message)
    if fmt is OtlpFormat.PROTOBUF:
        return bytes(rpc_status.SerializeToString())
    return json.dumps({"code": code, "message": message, "error": message}, separators=(",", ":")).encode()
