"""Payloads captured in full: taken out of an event at ingest and kept apart, keyed by their hash.

An SDK that captures in full (``capture: full``) sends the complete JSON
text of a node's output as ``output_full`` (and of a run's trigger data as
``trigger_data_full``) beside its sha256. The receiver checks the text
(valid JSON, at most :data:`~flowledger._wire.FULL_CAPTURE_MAX_BYTES`,
hashing to the sha256 the event states), takes it out of the event and
stores it in the ``blobs`` table under that hash; the ledger keeps the
event with the hash only, so its entry commits to the complete payload
while the narrow rows and the ledger stay small. Identical outputs are
stored once.
"""

from __future__ import annotations

import hashlib
from typing import Any, Final

import orjson

from flowledger._wire import FULL_CAPTURE_MAX_BYTES

__all__ = ["BLOB_PREFIXES", "take_blobs"]

BLOB_PREFIXES: Final[dict[str, tuple[str, ...]]] = {
    "run_started": ("trigger_data",),
    "node_finished": ("output",),
}
"""Per event kind: the payloads that may come in full (``{prefix}_full`` beside ``{prefix}_sha256``)."""


def take_blobs(kind: str, data: dict[str, Any]) -> tuple[tuple[tuple[str, str], ...], str | None]:
    """Take the full payloads out of ``data``: ``((sha256, text), ...)``, or an error naming the field."""
    blobs: list[tuple[str, str]] = []
    for prefix in BLOB_PREFIXES.get(kind, ()):
        text = data.pop(f"{prefix}_full", None)
        if text is None:
            continue
        where = f"event.data.{prefix}_full"
        digest = data.get(f"{prefix}_sha256")
        if digest is None:
            return (), f"{where} needs event.data.{prefix}_sha256, the sha256 of its text"
        try:
            raw = text.encode("utf-8")
        except UnicodeEncodeError:
            return (), f"{where} contains a lone surrogate: text must be valid Unicode"
        if len(raw) > FULL_CAPTURE_MAX_BYTES:
            return (), f"{where} is {len(raw)} bytes, over the full-capture limit of {FULL_CAPTURE_MAX_BYTES}"
        if hashlib.sha256(raw).hexdigest() != digest:
            return (), f"{where} does not hash to event.data.{prefix}_sha256"
        try:
            orjson.loads(raw)
        except orjson.JSONDecodeError:
            return (), f"{where} is not JSON text"
        blobs.append((digest, text))
    return tuple(blobs), None
