"""Reading an ingest request body: size limits, gzip, JSON, the batch envelope.

A body is read in chunks and refused with 413 as soon as it passes
``max_body_bytes``; a gzip body is inflated in bounded steps and refused as
soon as the output passes ``max_inflated_bytes``, so a gzip bomb costs at
most that much memory. Everything a client can get wrong here is a
:class:`BodyError` carrying the HTTP status and one sentence.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Final

from flowledger._exceptions import BodyError
from flowledger.receiver._config import IngestLimits

__all__ = ["Batch", "decode_batch", "read_body"]

_GZIP_WBITS: Final = 16 + zlib.MAX_WBITS
_INFLATE_STEP_BYTES: Final = 1024 * 1024


def _inflate(compressed: bytes, limit: int) -> bytes:
    inflater = zlib.decompressobj(_GZIP_WBITS)
    out = bytearray()
    data = compressed
    try:
        while True:
            room = limit + 1 - len(out)
            out += inflater.decompress(data, min(room, _INFLATE_STEP_BYTES))
            if len(out) > limit:
                raise BodyError(413, f"the body inflates to more than {limit} bytes; send smaller batches")
            data = inflater.unconsumed_tail
            if not data:
                break
        out += inflater.flush()
    except zlib.error as exc:
        raise BodyError(400, f"the body is not valid gzip: {exc}") from None
    if len(out) > limit:
        raise BodyError(413, f"the body inflates to more than {limit} bytes; send smaller batches")
    if not inflater.eof:
        raise BodyError(400, "the body is not valid gzip: the stream is truncated")
    if inflater.unused_data:
        raise BodyError(400, "the body is not valid gzip: there are bytes after the end of the stream")
    return bytes(out)


async def read_body(
    chunks: AsyncIterator[bytes], content_length: str | None, content_encoding: str | None, limits: IngestLimits
) -> bytes:
    """Read the body within the limits and undo its gzip ``Content-Encoding``."""
    encoding = (content_encoding or "identity").strip().lower()
    if encoding not in {"identity", "gzip", "x-gzip"}:
        raise BodyError(415, f"Content-Encoding {encoding!r} is not supported; send gzip or no encoding")
    if content_length is not None:
        try:
            declared = int(content_length)
        except ValueError:
            raise BodyError(400, f"Content-Length {content_length!r} is not a number") from None
        if declared > limits.max_body_bytes:
            raise BodyError(413, f"the body is {declared} bytes, over the limit of {limits.max_body_bytes}")
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limits.max_body_bytes:
            raise BodyError(413, f"the body is over the limit of {limits.max_body_bytes} bytes")
        parts.append(chunk)
    raw = b"".join(parts)
    if encoding == "identity":
        if len(raw) > limits.max_inflated_bytes:
            raise BodyError(413, f"the body is over the limit of {limits.max_inflated_bytes} bytes")
        return raw
    return _inflate(raw, limits.max_inflated_bytes)


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


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def decode_batch(body: bytes, limits: IngestLimits) -> Batch:
    """Parse ``{"events": [...]}``; BodyError when the body is not such an object."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BodyError(400, f"the body is not valid UTF-8 (byte {exc.start})") from None
    floats = _FloatReader()
    try:
        document = json.loads(text, parse_constant=_no_constants, parse_float=floats)
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
