"""Decoding an ingest body: JSON and the batch envelope ``{"events": [...]}``.

The body was already read within its limits (``receiver/_body.py``); what a
client can get wrong here is a :class:`BodyError` carrying the HTTP status
and one sentence.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

from flowledger._exceptions import BodyError
from flowledger.receiver._body import no_json_constants
from flowledger.receiver._config import IngestLimits

__all__ = ["Batch", "decode_batch"]

_PLAIN_FLOAT_MIN: Final = 1e-4
_PLAIN_FLOAT_END: Final = 1e16


@dataclass(frozen=True, slots=True)
class Batch:
    """The events of a decoded body."""

    events: list[Any]
    plain_floats: bool
    """Every float in the body is zero or between 1e-4 and 1e16 in size: none overflowed to infinity
    (``1e400``), and none needs an exponent, so the canonical form may take its fast path."""


class _FloatReader:
    """``parse_float`` of one body: reads each float and notes one outside the plain range."""

    __slots__ = ("plain",)

    def __init__(self) -> None:
        self.plain = True

    def __call__(self, text: str) -> float:
        value = float(text)
        if not _PLAIN_FLOAT_MIN <= abs(value) < _PLAIN_FLOAT_END and value != 0.0:
            self.plain = False
        return value


def decode_batch(body: bytes, limits: IngestLimits) -> Batch:
    """Parse ``{"events": [...]}``; BodyError when the body is not such an object."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BodyError(400, f"the body is not valid UTF-8 (byte {exc.start})") from None
    floats = _FloatReader()
    try:
        document = json.loads(text, parse_constant=no_json_constants, parse_float=floats)
    except json.JSONDecodeError as exc:
        raise BodyError(400, f"the body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise BodyError(400, "the body nests objects and arrays too deeply") from None
    except ValueError as exc:  # NaN/Infinity, or an integer with too many digits
        raise BodyError(400, f"the body is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise BodyError(400, 'the body must be a JSON object {"events": [...]}')
    events = document.get("events")
    if not isinstance(events, list):
        raise BodyError(400, 'the body must have "events": a list of events')
    if len(events) > limits.max_batch_events:
        raise BodyError(413, f"the batch has {len(events)} events, over the limit of {limits.max_batch_events}")
    return Batch(events, plain_floats=floats.plain)
