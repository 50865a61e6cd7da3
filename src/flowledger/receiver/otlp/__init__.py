"""The OTLP stage: decoding ``/v1/traces`` requests, storing their spans, and forwarding them upstream."""

from __future__ import annotations

from flowledger.receiver.otlp._decode import OtlpFormat, decode_request
from flowledger.receiver.otlp._forward import Forwarder
from flowledger.receiver.otlp._spans import SpanBatch, spans_from_request

__all__ = ["Forwarder", "OtlpFormat", "SpanBatch", "decode_request", "spans_from_request"]
