"""Ledger entries: metadata and a payload hash, chained; payloads stored apart.

A ledger row holds an *entry*: the canonical JSON (see :mod:`._canonical`) of

``{"v": 3, "seq", "event_id", "run_id", "kind", "ts", "project", "producer_id",
"producer_seq", "payload_sha256"}``

and ``hash = SHA-256(0x00 || prev_hash || entry)``, which is also the entry's
leaf in the Merkle tree (:mod:`._merkle`): RFC 9162's leaf hash of the leaf
data ``prev_hash || entry``, so one hash serves the chain and the tree. The
event itself (its canonical body, with inputs, outputs, errors and trigger
data) is the entry's *payload*, kept in the ``payloads`` table under the
same ``seq``; the entry commits to it through ``payload_sha256``. A payload
can be deleted (a purge) and the chain still verifies, because the chain
covers the entry, not the payload. Every column of the ``ledger`` row is a
copy of an entry field and is checked against it by ``verify``.

Entries written before format 3 are of format 2 (``"v": 2``): the same
fields, chained by ``hash = SHA-256(prev_hash || entry)`` with the leaf
``SHA-256(0x00 || entry)`` apart. They stay as they were, so a ledger begun
in format 2 holds both and its old checkpoints still verify: every reader
takes the rule of each entry's own ``v`` (:func:`entry_hash`,
:func:`entry_leaf`), which is the last key of the sorted JSON.

A purge is an entry too (kind :data:`PURGE_KIND`), whose payload lists the
runs it erased and who asked; purge payloads are never deleted.

The SQLite store keeps an entry as its fields, not its bytes: the row's
columns hold every field, and the entry is rebuilt from them
(:func:`entry_of`), byte for byte what was hashed, since :func:`entry_bytes`
is a pure function of the fields. Rows written before it did so keep their
entry's bytes in the ``entry`` column, which is read instead when it is set.
Either way ``verify`` hashes what it reads, so a changed column breaks the
chain as a changed entry does.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterable, Sequence
from typing import Any, Final

import orjson

from flowledger.receiver.store._canonical import GENESIS_HASH, canonical_utf8, chain_hash

__all__ = [
    "ENTRY_COLUMNS",
    "ENTRY_FORMAT",
    "ENTRY_FORMATS",
    "LEAF_PREFIX",
    "LEDGER_PROJECT",
    "PURGE_KIND",
    "entry_bytes",
    "entry_format",
    "entry_hash",
    "entry_hashes",
    "entry_leaf",
    "entry_of",
    "kept_as_fields",
    "migrated_genesis",
    "new_entry_id",
    "parse_entry",
    "payload_hash",
    "payload_hashes",
    "purge_entry",
]

ENTRY_FORMAT: Final = 3
"""The ``v`` of every new entry (format 1 hashed the whole event body; format 2 hashed an entry twice)."""
ENTRY_FORMATS: Final = (2, 3)
"""The ``v`` an entry in a ledger may have: format 2's entries keep their own hash rule (see the module)."""
PURGE_KIND: Final = "ledger.purge"
"""The kind of a purge entry (wire event kinds never contain a dot)."""

LEDGER_PROJECT: Final = "{}project"
"""SQL of an entry's namespace: the ledger's ``project`` column, the entry's hashed ``project`` ('' for none; a
project name is never empty).

Event ids are unique per project (``ledger_event_once``) and a run's rows are found by run id and
project (``ledger_by_run``). The store writes the column beside the entry and ``verify`` checks it
against the hashed entry, like every other column. ``{}`` takes a table alias and a dot, or nothing.
"""


ENTRY_COLUMNS: Final = (
    "{0}entry, {0}seq, {0}event_id, {0}run_id, {0}kind, {0}ts, {0}project, {0}producer_id, {0}producer_seq, "
    "{0}payload_hash"
)
"""SQL of the SQLite ledger columns an entry is read from, for :func:`entry_of` (``{0}``: an alias and a dot,
or nothing): the stored bytes (or, for a row that keeps its entry as columns, what :func:`kept_as_fields` gives
for its format), then every field."""


_FORMAT3_END: Final = b'"v":3}'
"""How a format-3 entry ends: ``v`` is the last of its sorted keys."""
LEAF_PREFIX: Final = hashlib.sha256(b"\x00")
"""SHA-256 having read the leaf prefix ``0x00``: copy it to hash a format-3 entry (a copy costs less than a new
state)."""


def entry_format(entry: bytes) -> int:
    """The format of a stored entry, 3 or 2, read from its last key (as :func:`entry_hash` reads it)."""
    return 3 if entry.endswith(_FORMAT3_END) else 2


def entry_hash(prev_hash: bytes, entry: bytes) -> bytes:
    """The chain hash of ``entry`` after ``prev_hash``, by the entry's format (see the module)."""
    if entry.endswith(_FORMAT3_END):
        state = LEAF_PREFIX.copy()
        state.update(prev_hash)
        state.update(entry)
        return state.digest()
    return chain_hash(prev_hash, entry)


def entry_hashes(prev_hash: bytes, entry: bytes) -> tuple[bytes, bytes]:
    """``(chain hash, Merkle leaf)`` of ``entry`` after ``prev_hash``, each hashed once: one hash in format 3."""
    if entry.endswith(_FORMAT3_END):
        digest = entry_hash(prev_hash, entry)
        return digest, digest
    return chain_hash(prev_hash, entry), entry_leaf(prev_hash, entry)


def entry_leaf(prev_hash: bytes, entry: bytes) -> bytes:
    """The Merkle leaf hash of ``entry`` after ``prev_hash``: its chain hash in format 3, ``SHA-256(0x00 || entry)``
    in format 2."""
    if entry.endswith(_FORMAT3_END):
        return entry_hash(prev_hash, entry)
    return hashlib.sha256(b"\x00" + entry).digest()


def payload_hash(payload: bytes) -> bytes:
    """``sha256(payload)``: what an entry commits to."""
    return hashlib.sha256(payload).digest()


def payload_hashes(payloads: Iterable[bytes]) -> list[bytes]:
    """:func:`payload_hash` of each payload, in one call (a commit group hashes a thousand)."""
    sha256 = hashlib.sha256
    return [sha256(payload).digest() for payload in payloads]


def entry_bytes(
    *,
    seq: int,
    event_id: str,
    run_id: str,
    kind: str,
    ts: str,
    project: str | None,
    producer_id: str | None,
    producer_seq: int | None,
    payload_sha256: bytes,
    v: int = ENTRY_FORMAT,
) -> bytes:
    """The canonical UTF-8 JSON of one entry (what the chain and the Merkle tree hash), of format ``v``.

    The keys are written in sorted order and every value is a string, an
    integer or null, where orjson's output is the canonical form (see
    :mod:`._canonical`); the rare value orjson refuses goes through the
    canonical encoder.
    """
    entry: dict[str, Any] = {  # keys in sorted order: this is the canonical order
        "event_id": event_id,
        "kind": kind,
        "payload_sha256": payload_sha256.hex(),
        "producer_id": producer_id,
        "producer_seq": producer_seq,
        "project": project,
        "run_id": run_id,
        "seq": seq,
        "ts": ts,
        "v": v,
    }
    try:
        return orjson.dumps(entry)
    except orjson.JSONEncodeError:  # a lone surrogate in an id, an integer beyond 64 bits
        return canonical_utf8(entry)


def kept_as_fields(v: int) -> int | None:
    """What the SQLite ``entry`` column holds for an entry of format ``v`` kept as its fields: NULL for format 2
    (rows written before format 3), the format's number since."""
    return None if v == 2 else v


def entry_of(row: Sequence[Any]) -> bytes:
    """The entry of a ledger row read through :data:`ENTRY_COLUMNS`: its stored bytes, or rebuilt from its fields.

    The ``entry`` column holds the bytes, or what :func:`kept_as_fields` gives for the entry's format. A row whose
    columns hold what no entry can (a blob in a text column, a text hash, an unknown format: edited by hand) gives
    the empty entry, which hashes to no row's hash, so ``verify`` reports that row as edited rather than failing.
    """
    stored, seq, event_id, run_id, kind, ts, project, producer_id, producer_seq, digest = row
    if stored is None:
        v = 2
    elif type(stored) is int:
        v = stored
        if v not in ENTRY_FORMATS or kept_as_fields(v) != v:
            return b""
    else:
        return bytes(stored)
    try:
        return entry_bytes(
            seq=seq,
            event_id=event_id,
            run_id=run_id,
            kind=kind,
            ts=ts,
            project=project or None,  # the column holds '' for none; no entry names the project '' (purge_entry)
            producer_id=producer_id,
            producer_seq=producer_seq,
            payload_sha256=bytes(digest),
            v=v,
        )
    except (TypeError, ValueError):
        return b""


def parse_entry(entry: bytes) -> dict[str, Any]:
    """The fields of a stored entry; ValueError when it is not an entry of this format."""
    try:
        value = orjson.loads(entry)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"the entry is not JSON: {exc}") from exc
    if not isinstance(value, dict) or value.get("v") not in ENTRY_FORMATS:
        raise ValueError(f"the entry is not of format {' or '.join(map(str, ENTRY_FORMATS))}")
    return value


def migrated_genesis(v1_head_seq: int, v1_head_hash: bytes) -> bytes:
    """The ``prev_hash`` of the first entry of a ledger migrated from format 1.

    It binds the new chain to the old one's verified head: ``sha256("flowledger
    v1 head SEQ:HASH")``. A ledger created in format 2 starts from the genesis hash.
    """
    if v1_head_seq == 0:
        return GENESIS_HASH
    return hashlib.sha256(f"flowledger v1 head {v1_head_seq}:{v1_head_hash.hex()}".encode()).digest()


def new_entry_id() -> str:
    """A fresh id for an entry the store makes itself (a purge): time-ordered like UUIDv7."""
    # The top 48 bits are milliseconds since the epoch, then random bits, as UUIDv7 lays them out.
    ms = time.time_ns() // 1_000_000
    rand = uuid.uuid4().int & ((1 << 80) - 1)
    value = (ms << 80) | (0x7 << 76) | (rand & ~(0xF << 76) & ~(0x3 << 62)) | (0x2 << 62)
    return str(uuid.UUID(int=value))


def purge_entry(*, seq: int, prev: bytes, payload: Any, project: str | None, now: str) -> tuple[tuple[Any, ...], str]:
    """The ledger entry recording a purge, appended after ``prev`` at ``seq``, the same on every engine.

    Returns its ledger row ``(seq, event_id, run_id, kind, ts, received_at, entry, payload_hash, prev_hash,
    hash)`` (its ``hash`` is the Merkle tree's next leaf) and its payload's text.
    """
    body = canonical_utf8(payload)
    digest = payload_hash(body)
    event_id = new_entry_id()
    entry = entry_bytes(
        seq=seq,
        event_id=event_id,
        run_id="",
        kind=PURGE_KIND,
        ts=now,
        project=project or None,  # a purge of the runs without a project ('') names none, as an event would
        producer_id=None,
        producer_seq=None,
        payload_sha256=digest,
    )
    row = (seq, event_id, "", PURGE_KIND, now, now, entry, digest, prev, entry_hash(prev, entry))
    return row, body.decode("utf-8")
