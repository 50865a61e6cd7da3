"""Reading a request body within limits: size, gzip, and nothing else.

A body is read in chunks and refused with 413 as soon as it passes
``max_body_bytes``; a gzip body is inflated in bounded steps and refused as
soon as the output passes ``max_inflated_bytes``, so a gzip bomb costs at
most that much memory. Everything a client can get wrong here is a
:class:`BodyError` carrying the HTTP status and one sentence. Both
``/v1/events`` and the OTLP routes read their bodies through it.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator
from typing import Any, Final

from flowledger._exceptions import BodyError
from flowledger.receiver._config import IngestLimits

__all__ = ["MAX_GZIP_MEMBERS", "no_json_constants", "read_body"]

_GZIP_WBITS: Final = 16 + zlib.MAX_WBITS
_INFLATE_STEP_BYTES: Final = 1024 * 1024
_FEED_BYTES: Final = 64 * 1024
"""The most of the compressed body one inflater is given at a time."""
MAX_GZIP_MEMBERS: Final = 1000
"""The most gzip members a body may hold: concatenated files and pigz write a few; more is a client's mistake."""


def _inflate(compressed: bytes, limit: int) -> bytes:
    """The gzip body inflated, every member of it (RFC 1952: ``cat a.gz b.gz``, and pigz, write several), in
    bounded steps: 413 as soon as the members' output together passes ``limit``, so a bomb split across members
    is refused like one in a single member.

    The body is walked by offset, each inflater fed at most ``_FEED_BYTES`` at a time, so what follows a member's
    end is never copied whole for the next (with hundreds of thousands of tiny members that copy made one request
    hold the event loop for minutes); past ``MAX_GZIP_MEMBERS`` members it is a 400."""
    out = bytearray()
    view = memoryview(compressed)
    at = 0
    for _ in range(MAX_GZIP_MEMBERS):  # one member a turn; what follows a member's end must be another member
        at = _inflate_member(view, at, out, limit)
        if at >= len(view):
            return bytes(out)
    raise BodyError(400, f"the body has more than {MAX_GZIP_MEMBERS} gzip members; send it as one")


def _inflate_member(view: memoryview, at: int, out: bytearray, limit: int) -> int:
    """Inflate the gzip member starting at ``at`` of ``view`` onto ``out`` (within ``limit`` in all); return the
    offset just past its end."""
    inflater = zlib.decompressobj(_GZIP_WBITS)
    try:
        while not inflater.eof and at < len(view):
            piece = view[at : at + _FEED_BYTES]
            data: bytes | memoryview = piece
            while data and not inflater.eof:
                out += inflater.decompress(data, min(limit + 1 - len(out), _INFLATE_STEP_BYTES))
                if len(out) > limit:
                    raise BodyError(413, f"the body inflates to more than {limit} bytes; send smaller batches")
                data = inflater.unconsumed_tail
            at += len(piece) - len(inflater.unused_data) if inflater.eof else len(piece)
        out += inflater.flush()
    except zlib.error as exc:
        raise BodyError(400, f"the body is not valid gzip: {exc}") from None
    if len(out) > limit:
        raise BodyError(413, f"the body inflates to more than {limit} bytes; send smaller batches")
    if not inflater.eof:
        raise BodyError(400, "the body is not valid gzip: the stream is truncated")
    return at


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


def no_json_constants(name: str) -> Any:
    """``parse_constant`` for :func:`json.loads`: ``NaN``, ``Infinity`` and ``-Infinity`` are not JSON."""
    raise ValueError(f"{name} is not a JSON value")
