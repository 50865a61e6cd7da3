"""The canonical encoding of an event and the hash chain over it.

An event's canonical form is its JSON text with the object keys sorted, no
whitespace (separators ``,`` and ``:``), non-ASCII characters kept as they
are (``ensure_ascii=False``), encoded as UTF-8. Numbers are written as
Python's ``json`` module writes them after parsing (``1.0`` stays ``1.0``,
``1e400`` is not accepted). The ledger stores this text, so re-encoding a
stored event reproduces it byte for byte.

Each ledger row carries ``hash = sha256(prev_hash || canonical(event))``;
the first row's ``prev_hash`` is :data:`GENESIS_HASH` (32 zero bytes).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Final

__all__ = ["GENESIS_HASH", "HASH_BYTES", "canonical", "chain_hash"]

HASH_BYTES: Final = 32
GENESIS_HASH: Final = bytes(HASH_BYTES)
"""The ``prev_hash`` of the first ledger row."""

_encoder: Final = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def canonical(value: Any) -> str:
    """Return the canonical JSON text of ``value`` (see the module docstring)."""
    return _encoder.encode(value)


def chain_hash(prev_hash: bytes, canonical_bytes: bytes) -> bytes:
    """Return ``sha256(prev_hash || canonical_bytes)``."""
    return hashlib.sha256(prev_hash + canonical_bytes).digest()
