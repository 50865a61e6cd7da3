"""The canonical encoding of an event and the hash chain over it.

An event's canonical form is its JSON text with the object keys sorted, no
whitespace (separators ``,`` and ``:``), non-ASCII characters kept as they
are (``ensure_ascii=False``), encoded as UTF-8. Numbers are written as
Python's ``json`` module writes them after parsing (``1.0`` stays ``1.0``,
``1e400`` is not accepted). In ledger format 2 this text is an event's
payload, stored apart from the ledger (the ``payloads`` table), so
re-encoding a stored event reproduces it byte for byte; the ledger rows hold
entries, whose canonical text commits to the payload through its SHA-256.

The hash chain is over entries (see :mod:`._entry`): each row carries
``hash = sha256(prev_hash || entry)``; the first row's ``prev_hash`` is
:data:`GENESIS_HASH` (32 zero bytes).

:func:`canonical_utf8` is the ingest hot path: it lets orjson (about twice
as fast, and already UTF-8) write the text when orjson's output is the same
byte for byte. The two agree on strings, integers up to 64 bits,
``true``/``false``/``null`` and key order (code points); they differ only on
floats that Python writes with an exponent (``1e-05``, ``1e+16``: orjson
writes ``0.00001``, ``1e16``) and on infinity (orjson writes ``null``). So
orjson is used only when the caller knows every float is zero or between
1e-4 and 1e16 in size (the body decoder notes it while parsing); anything
orjson refuses (a lone surrogate, an integer beyond 64 bits) goes through
``json`` too.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Final

import orjson

__all__ = ["GENESIS_HASH", "HASH_BYTES", "canonical", "canonical_utf8", "chain_hash"]

HASH_BYTES: Final = 32
GENESIS_HASH: Final = bytes(HASH_BYTES)
"""The ``prev_hash`` of the first ledger row."""

_encoder: Final = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def canonical(value: Any) -> str:
    """Return the canonical JSON text of ``value`` (see the module docstring)."""
    return _encoder.encode(value)


def canonical_utf8(value: Any, *, plain_floats: bool = False) -> bytes:
    """Return ``canonical(value).encode("utf-8")``, through orjson when that gives the same bytes.

    ``plain_floats`` says the caller knows every float in ``value`` is zero
    or between 1e-4 and 1e16 in size (see the module docstring); without it
    the ``json`` path is taken. Raises what that path raises: ValueError for
    an infinite float, UnicodeEncodeError for a lone surrogate.
    """
    if plain_floats:
        try:
            return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:  # a lone surrogate, an integer beyond 64 bits, very deep nesting
            pass
    return _encoder.encode(value).encode("utf-8")


def chain_hash(prev_hash: bytes, canonical_bytes: bytes) -> bytes:
    """Return ``sha256(prev_hash || canonical_bytes)``."""
    return hashlib.sha256(prev_hash + canonical_bytes).digest()
