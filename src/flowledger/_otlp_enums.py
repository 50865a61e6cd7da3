"""The OTLP protocol's enums, shared by the SDK's span export and the receiver's span store.

Both sides speak OTLP and both may import this module: the numbers are the
protocol's (``opentelemetry/proto/trace/v1/trace.proto``), so they are
defined once here.
"""

from __future__ import annotations

import enum

__all__ = ["SpanKind", "StatusCode"]


class SpanKind(enum.IntEnum):
    """``Span.SpanKind`` of the OTLP protocol."""

    UNSPECIFIED = 0
    INTERNAL = 1
    SERVER = 2
    CLIENT = 3
    PRODUCER = 4
    CONSUMER = 5


class StatusCode(enum.IntEnum):
    """``Status.StatusCode`` of the OTLP protocol."""

    UNSET = 0
    OK = 1
    ERROR = 2
