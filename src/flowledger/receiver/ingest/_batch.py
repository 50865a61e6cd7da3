"""Decoding an ingest body: JSON and the batch envelope ``{"events": [...]}``.

The body was already read within its limits (``receiver/_body.py``); what a
client can get wrong here is a :class:`BodyError` carrying the HTTP status
and one sentence.

msgspec decodes the body (in C, about twice as fast as the json module
here); whatever it refuses is decoded again by the json module, so every
body is accepted or refused as before, with the same messages. msgspec
refuses more than json only where json takes what a store cannot keep (a
lone surrogate escape, an integer of thousands of digits): those bodies
take the json path, and the event holding such a value is one event's
rejection as before. Where both take a body they build the same values (a
property test holds them equal).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any, Final

import msgspec

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
    """The float hook of one body's decoder: reads each float and notes one outside the plain range."""

    __slots__ = ("plain",)

    def __init__(self) -> None:
        self.plain = True

    def __call__(self, text: str) -> float:
        value = float(text)
        if not _PLAIN_FLOAT_MIN <= abs(value) < _PLAIN_FLOAT_END and value != 0.0:
            self.plain = False
        return value


def _integer(text: str) -> int:
    """An integer of the body; ValueError saying so, not how to raise Python's limit, when it has too many digits."""
    digits, most = len(text.lstrip("-")), sys.get_int_max_str_digits()
    if most and digits > most:
        raise ValueError(f"it holds an integer of {digits} digits, and the receiver reads integers of {most} at most")
    return int(text)


def _decode_json(body: bytes, floats: _FloatReader) -> Any:
    """The json module's reading of a body msgspec refused: its value, or a BodyError naming the fault."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BodyError(400, f"the body is not valid UTF-8 (byte {exc.start})") from None
    try:
        return json.loads(text, parse_constant=no_json_constants, parse_float=floats, parse_int=_integer)
    except json.JSONDecodeError as exc:
        raise BodyError(400, f"the body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise BodyError(400, "the body nests objects and arrays too deeply") from None
    except ValueError as exc:  # NaN/Infinity, or an integer with too many digits
        raise BodyError(400, f"the body is not valid JSON: {exc}") from None


def decode_batch(body: bytes, limits: IngestLimits) -> Batch:
    """Parse ``{"events": [...]}``; BodyError when the body is not such an object."""
    floats = _FloatReader()
    try:
        document = msgspec.json.Decoder(float_hook=floats).decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        floats = _FloatReader()
        document = _decode_json(body, floats)
    if not isinstance(document, dict):
        raise BodyError(400, 'the body must be a JSON object {"events": [...]}')
    events = document.get("events")
    if not isinstance(events, list):
        raise BodyError(400, 'the body must have "events": a list of events')
    if len(events) > limits.max_batch_events:
        raise BodyError(413, f"the batch has {len(events)} events, over the limit of {limits.max_batch_events}")
    return Batch(events, plain_floats=floats.plain)
