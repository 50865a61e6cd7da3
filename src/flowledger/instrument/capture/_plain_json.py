"""Plain JSON values in C: encoders that refuse anything else, and the nesting of encoded text.

"Plain" is what ``convert`` would return unchanged (str, int in range,
float, bool, None, dict with str keys, list): the C encoders write those
bytes directly and refuse the rest, which then takes the full conversion.
"""

from __future__ import annotations

import json
from typing import Any, Final

import orjson

__all__ = ["PLAIN_ONLY", "NotPlainJSON", "fast_encode", "refuse", "too_deep"]


class NotPlainJSON(Exception):
    """Raised by the fast encoder on a value it cannot encode as is."""


def refuse(value: Any) -> Any:
    raise NotPlainJSON


fast_encode: Final = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=refuse, check_circular=True
).encode

PLAIN_ONLY: Final = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_SUBCLASS
"""Dataclasses, datetimes and subclasses of str/int/dict/list go to ``default`` (refused), as with ``json``."""

_AS_BRACKETS: Final = bytes.maketrans(b"{}", b"[]")

_NOT_SHAPE: Final = bytes(b for b in range(256) if b not in b'[]{}"')


def too_deep(encoded: bytes, levels: int) -> bool:
    """Whether the JSON text ``encoded`` nests arrays and objects more than ``levels`` deep.

    C-level passes only: the size and the count of opening brackets rule out
    almost every payload (it cannot nest deeper than it has). Otherwise its
    shape is kept, brackets and the quotes around strings (escaped ones
    dropped), strings with no bracket in them go (two quotes in a row, empty
    or merged strings), then what is still between quotes, and each pass
    removes the innermost pairs of brackets: one level a pass.
    """
    if len(encoded) <= 2 * levels or encoded.count(b"[") + encoded.count(b"{") <= levels:
        return False
    if b"\\" in encoded:
        encoded = encoded.replace(b"\\\\", b"").replace(b'\\"', b"")
    shape = encoded.translate(_AS_BRACKETS, _NOT_SHAPE).replace(b'""', b"")
    if b'"' in shape:
        shape = b"".join(shape.split(b'"')[::2])
    for _ in range(levels):
        if not shape:
            return False
        shape = shape.replace(b"[]", b"")
    return bool(shape)
