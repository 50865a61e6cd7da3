"""OTLP/HTTP protobuf encoding of the SDK's span export requests, without the protobuf package.

The OpenTelemetry specification makes ``http/protobuf`` the default OTLP
protocol, and some backends accept nothing else (Arize Phoenix answers 415
to JSON). The SDK only depends on ``httpx`` and ``opentelemetry-api``, so
this module writes the protobuf wire format itself for the one message it
sends: the ``ExportTraceServiceRequest`` that :func:`~flowledger.instrument.delivery._otlp_spans.export_request`
builds in its OTLP JSON form. Field numbers follow
``opentelemetry/proto/{collector/trace,trace,common,resource}/v1/*.proto``;
the tests decode the output with the official classes and compare it with
the JSON form parsed by ``google.protobuf.json_format``. Of the answer it
reads one number: ``partial_success.rejected_spans``.

The protocol comes from ``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`` or
``OTEL_EXPORTER_OTLP_PROTOCOL`` (``http/protobuf`` or ``http/json``).
"""

from __future__ import annotations

import enum
import json
import os
import struct
from collections.abc import Callable, Mapping
from typing import Any, Final

import orjson

from flowledger.instrument.capture import clean_str

__all__ = [
    "OtlpProtocol",
    "clean_strings",
    "encode_export",
    "encode_protobuf",
    "protocol_from_env",
    "rejected_spans",
    "utf8_request",
]

_VARINT: Final = 0
_FIXED64: Final = 1
_LENGTH: Final = 2
_UINT64_MASK: Final = (1 << 64) - 1

# Scalar kinds of the schema below.
_STRING: Final = "string"
_HEX_BYTES: Final = "hex-bytes"
_ENUM: Final = "enum"
_BOOL: Final = "bool"
_INT64: Final = "int64"
_UINT32: Final = "uint32"
_FIXED64_NS: Final = "fixed64"
_DOUBLE: Final = "double"

_SCHEMA: Final[dict[str, dict[str, tuple[int, str]]]] = {
    "ExportTraceServiceRequest": {"resourceSpans": (1, "ResourceSpans")},
    "ResourceSpans": {"resource": (1, "Resource"), "scopeSpans": (2, "ScopeSpans"), "schemaUrl": (3, _STRING)},
    "Resource": {"attributes": (1, "KeyValue")},
    "ScopeSpans": {"scope": (1, "InstrumentationScope"), "spans": (2, "Span"), "schemaUrl": (3, _STRING)},
    "InstrumentationScope": {"name": (1, _STRING), "version": (2, _STRING), "attributes": (3, "KeyValue")},
    "Span": {
        "traceId": (1, _HEX_BYTES),
        "spanId": (2, _HEX_BYTES),
        "traceState": (3, _STRING),
        "parentSpanId": (4, _HEX_BYTES),
        "name": (5, _STRING),
        "kind": (6, _ENUM),
        "startTimeUnixNano": (7, _FIXED64_NS),
        "endTimeUnixNano": (8, _FIXED64_NS),
        "attributes": (9, "KeyValue"),
        "droppedAttributesCount": (10, _UINT32),
        "events": (11, "Event"),
        "status": (15, "Status"),
    },
    "Event": {"timeUnixNano": (1, _FIXED64_NS), "name": (2, _STRING), "attributes": (3, "KeyValue")},
    "Status": {"message": (2, _STRING), "code": (3, _ENUM)},
    "KeyValue": {"key": (1, _STRING), "value": (2, "AnyValue")},
    "AnyValue": {
        "stringValue": (1, _STRING),
        "boolValue": (2, _BOOL),
        "intValue": (3, _INT64),
        "doubleValue": (4, _DOUBLE),
        "arrayValue": (5, "ArrayValue"),
        "kvlistValue": (6, "KeyValueList"),
    },
    "ArrayValue": {"values": (1, "AnyValue")},
    "KeyValueList": {"values": (1, "KeyValue")},
}
"""Message -> OTLP JSON field name -> (field number, scalar kind or message name)."""


class OtlpProtocol(enum.Enum):
    """The OTLP/HTTP encodings, named as ``OTEL_EXPORTER_OTLP_PROTOCOL`` names them."""

    HTTP_PROTOBUF = "http/protobuf"
    HTTP_JSON = "http/json"

    @property
    def content_type(self) -> str:
        """The request's Content-Type."""
        return "application/x-protobuf" if self is OtlpProtocol.HTTP_PROTOBUF else "application/json"


def protocol_from_env(environ: Mapping[str, str] | None = None) -> OtlpProtocol:
    """The traces protocol from the OTel variables; ``http/protobuf`` (the specification's default) otherwise.

    ``grpc`` and unknown values also give ``http/protobuf``: the encoding of the HTTP path (``grpc`` itself
    is served by :mod:`._grpc_spans` when its exporter is installed, and falls back to this otherwise).
    """
    env = os.environ if environ is None else environ
    for name in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        value = env.get(name, "").strip().lower()
        if value:
            return OtlpProtocol.HTTP_JSON if value == OtlpProtocol.HTTP_JSON.value else OtlpProtocol.HTTP_PROTOBUF
    return OtlpProtocol.HTTP_PROTOBUF


_SMALL: Final = tuple(bytes((i,)) for i in range(128))
"""The one-byte varints: most lengths, enums and booleans of a span."""


def _varint(value: int) -> bytes:
    if 0 <= value < 128:
        return _SMALL[value]
    value &= _UINT64_MASK
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _key(number: int, wire_type: int) -> bytes:
    return _varint((number << 3) | wire_type)


def _string(key: bytes, value: Any) -> bytes:
    text = value if type(value) is str else str(value)
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: protobuf strings are UTF-8, so it goes as U+FFFD
        data = clean_str(text).encode("utf-8")
    size = len(data)
    return key + (_SMALL[size] if size < 128 else _varint(size)) + data


def _hex_bytes(key: bytes, value: Any) -> bytes:
    data = bytes.fromhex(value)
    return key + _varint(len(data)) + data


def _bool(key: bytes, value: Any) -> bytes:
    return key + (b"\x01" if value else b"\x00")


def _int(key: bytes, value: Any) -> bytes:
    return key + _varint(int(value))


def _fixed64(key: bytes, value: Any) -> bytes:
    return key + _pack_fixed64(int(value) & _UINT64_MASK)


def _double(key: bytes, value: Any) -> bytes:
    return key + _pack_double(float(value))


_pack_fixed64: Final = struct.Struct("<Q").pack
_pack_double: Final = struct.Struct("<d").pack
_Writer = Callable[[bytes, Any], bytes]
_SCALARS: Final[dict[str, tuple[int, _Writer]]] = {
    _STRING: (_LENGTH, _string),
    _HEX_BYTES: (_LENGTH, _hex_bytes),
    _BOOL: (_VARINT, _bool),
    _ENUM: (_VARINT, _int),
    _INT64: (_VARINT, _int),
    _UINT32: (_VARINT, _int),
    _FIXED64_NS: (_FIXED64, _fixed64),
    _DOUBLE: (_FIXED64, _double),
}
"""Scalar kind -> (wire type, writer of the field's key and value)."""


def _compile() -> dict[str, dict[str, tuple[bytes, str | None, _Writer | None]]]:
    """Per message, per JSON field: the field's key bytes, the nested message's name or None, the scalar writer."""
    compiled: dict[str, dict[str, tuple[bytes, str | None, _Writer | None]]] = {}
    for name, fields in _SCHEMA.items():
        compiled[name] = {}
        for json_name, (number, kind) in fields.items():
            if kind in _SCHEMA:
                compiled[name][json_name] = (_key(number, _LENGTH), kind, None)
            else:
                wire_type, writer = _SCALARS[kind]
                compiled[name][json_name] = (_key(number, wire_type), None, writer)
    return compiled


_COMPILED: Final = _compile()


_ANY_VALUE_KEYS: Final = {
    json_name: key for json_name, (key, nested, _) in _COMPILED["AnyValue"].items() if nested is None
}
_ANY_VALUE_WRITERS: Final = {
    json_name: writer for json_name, (_, _, writer) in _COMPILED["AnyValue"].items() if writer is not None
}
_KV_KEY: Final = _COMPILED["KeyValue"]["key"][0]
_KV_VALUE: Final = _COMPILED["KeyValue"]["value"][0]


_KV_CACHE: dict[tuple[Any, str, Any], bytes] = {}
_KV_CACHE_MAX: Final = 4096
"""Encoded attributes by (key, value kind, value): most repeat from span to span (workflow, node, status)."""


def _key_value(item: Mapping[str, Any]) -> bytes:
    """A ``KeyValue`` whose value is one scalar (nearly every attribute) without the general walk."""
    value = item.get("value")
    if len(item) == 2 and type(value) is dict and len(value) == 1:
        ((field, scalar),) = value.items()
        key = item.get("key")
        cache_key: tuple[Any, str, Any] | None = (key, field, scalar)
        try:
            cached = _KV_CACHE.get((key, field, scalar))
        except TypeError:  # an unhashable value: not cached
            cached = cache_key = None
        if cached is not None:
            return cached
        any_key = _ANY_VALUE_KEYS.get(field)
        if any_key is not None and scalar is not None and key is not None:
            any_value = _ANY_VALUE_WRITERS[field](any_key, scalar)
            size = len(any_value)
            encoded = _string(_KV_KEY, key) + _KV_VALUE + (_SMALL[size] if size < 128 else _varint(size)) + any_value
            if cache_key is not None and type(scalar) is not float:  # -0.0 == 0.0, but they encode apart
                if len(_KV_CACHE) >= _KV_CACHE_MAX:
                    _KV_CACHE.clear()
                _KV_CACHE[cache_key] = encoded
            return encoded
    return _message("KeyValue", item)


def _message(name: str, document: Mapping[str, Any]) -> bytes:
    fields = _COMPILED[name]
    out = bytearray()
    for field, value in document.items():
        spec = fields.get(field)
        if spec is None or value is None:
            continue
        key, nested, writer = spec
        for item in value if isinstance(value, list) else (value,):
            if nested is not None:
                body = _key_value(item) if nested == "KeyValue" else _message(nested, item)
                size = len(body)
                out += key
                out += _SMALL[size] if size < 128 else _varint(size)
                out += body
            elif writer is not None:
                out += writer(key, item)
    return bytes(out)


def encode_protobuf(request: Mapping[str, Any]) -> bytes:
    """The protobuf wire form of an ``ExportTraceServiceRequest`` given in its OTLP JSON form."""
    return _message("ExportTraceServiceRequest", request)


def encode_export(request: Mapping[str, Any], protocol: OtlpProtocol) -> tuple[bytes, str]:
    """The body and Content-Type of an export request in ``protocol``.

    A string holding a lone surrogate (no UTF-8 form) goes as U+FFFD in either protocol, so one odd
    attribute never costs its batch: every span is exported.
    """
    if protocol is OtlpProtocol.HTTP_PROTOBUF:
        return encode_protobuf(request), protocol.content_type
    try:
        return orjson.dumps(request), protocol.content_type
    except TypeError:  # orjson refuses lone surrogates
        return orjson.dumps(clean_strings(request)), protocol.content_type


def utf8_request(request: Mapping[str, Any]) -> Mapping[str, Any]:
    """``request``, or its copy with each lone surrogate as U+FFFD when it holds one (protobuf would refuse it).

    For the gRPC export, whose OTel exporter encodes the strings itself: orjson (in C, a fraction of what the
    conversion costs) finds whether any string has no UTF-8 form.
    """
    try:
        orjson.dumps(request)
    except TypeError:
        cleaned: Mapping[str, Any] = clean_strings(request)
        return cleaned
    return request


def clean_strings(value: Any) -> Any:
    """A copy of ``value`` (an OTLP JSON document) with each lone surrogate of its strings and keys as U+FFFD.

    A copy: the span builder shares attribute dicts between spans, so nothing is changed in place.
    """
    kind = type(value)
    if kind is str:
        return value if value.isascii() else clean_str(value)
    if kind is dict:
        return {clean_strings(key): clean_strings(item) for key, item in value.items()}
    if kind is list:
        return [clean_strings(item) for item in value]
    return value


def _read_varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, at


def _field(data: bytes, wanted: int) -> int | bytes | None:
    """The last value of field ``wanted`` (varint or length-delimited) in a protobuf message, if present."""
    found: int | bytes | None = None
    at = 0
    while at < len(data):
        key, at = _read_varint(data, at)
        number, wire_type = key >> 3, key & 7
        if wire_type == _VARINT:
            value, at = _read_varint(data, at)
            if number == wanted:
                found = value
        elif wire_type == _LENGTH:
            size, at = _read_varint(data, at)
            if at + size > len(data):
                raise ValueError("truncated field")
            if number == wanted:
                found = data[at : at + size]
            at += size
        elif wire_type in (_FIXED64, 5):
            at += 8 if wire_type == _FIXED64 else 4
        else:
            raise ValueError(f"unsupported wire type {wire_type}")
    return found


def rejected_spans(body: bytes, content_type: str) -> int:
    """``partial_success.rejected_spans`` of an ``ExportTraceServiceResponse`` (0 when absent or unreadable)."""
    try:
        if content_type.split(";", 1)[0].strip().lower() in ("application/x-protobuf", "application/protobuf"):
            partial = _field(body, 1)
            value = _field(partial, 1) if isinstance(partial, bytes) else 0
            count = value if isinstance(value, int) else 0
            return count if count < 1 << 63 else 0
        document = json.loads(body) if body.strip() else {}
        return max(int(document.get("partialSuccess", {}).get("rejectedSpans", 0)), 0)
    except (ValueError, TypeError, AttributeError):
        return 0
