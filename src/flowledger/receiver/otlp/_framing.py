"""The protobuf wire format's framing: an encoded message split into its fields, without decoding them.

Each field is a key (its number and wire type) and then a varint, 8 bytes,
4 bytes, or a length and that many bytes. That is all
:mod:`._salvage` needs to hand each part of a request to the real decoder
on its own; protobuf's Python API offers no reading of one field's bytes.
Groups (wire types 3 and 4, deprecated and unused by OTLP) are refused as
broken framing.
"""

from __future__ import annotations

from google.protobuf.message import DecodeError

__all__ = ["fields"]


def fields(data: bytes) -> list[tuple[int, bytes, bytes]]:
    """Each field of an encoded message: (number, its whole encoding, the payload of a length-delimited one);
    DecodeError where the framing is broken."""
    out: list[tuple[int, bytes, bytes]] = []
    at, end = 0, len(data)
    while at < end:
        start = at
        key, at = _varint(data, at)
        number, wire = key >> 3, key & 7
        payload = b""
        if number == 0:
            raise DecodeError(f"field number 0 at byte {start}")
        if wire == 0:
            _, at = _varint(data, at)
        elif wire == 1:
            at += 8
        elif wire == 5:
            at += 4
        elif wire == 2:
            size, at = _varint(data, at)
            payload = data[at : at + size]
            at += size
        else:
            raise DecodeError(f"wire type {wire} at byte {start}")
        if at > end:
            raise DecodeError(f"field {number} at byte {start} runs past the end")
        out.append((number, data[start:at], payload))
    return out


def _varint(data: bytes, at: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if at >= len(data) or shift > 63:
            raise DecodeError(f"a truncated or overlong varint at byte {at}")
        byte = data[at]
        at += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, at
        shift += 7
