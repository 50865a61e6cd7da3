"""Ledger entries: their bytes are the canonical encoding whatever the ids hold, each format hashed by its rule."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymerkle import InmemoryTree

from flowledger.receiver.store._canonical import canonical
from flowledger.receiver.store._entry import (
    ENTRY_FORMAT,
    entry_bytes,
    entry_format,
    entry_hash,
    entry_hashes,
    entry_leaf,
    entry_of,
    kept_as_fields,
    new_entry_id,
    parse_entry,
)

_text = st.text()
_maybe_text = st.none() | st.text()


_seq = st.integers(min_value=1, max_value=2**63 - 1)
"""A ledger position: a SQLite INTEGER (a seq past 2**63 cannot be stored, and orjson reads one back as a float)."""


@given(_text, _text, _text, _text, _maybe_text, _maybe_text, st.none() | st.integers(), _seq)
def test_entry_bytes_are_canonical(
    event_id: str,
    run_id: str,
    kind: str,
    ts: str,
    project: str | None,
    producer_id: str | None,
    producer_seq: int | None,
    seq: int,
) -> None:
    """The fast path writes exactly the canonical JSON (sorted keys, no spaces, UTF-8), even for odd text."""
    try:
        canonical(event_id + run_id + kind + ts + (project or "") + (producer_id or "")).encode()
    except UnicodeEncodeError:
        return  # a lone surrogate cannot be stored as UTF-8 at all; ingest refuses it earlier
    entry = entry_bytes(
        seq=seq,
        event_id=event_id,
        run_id=run_id,
        kind=kind,
        ts=ts,
        project=project,
        producer_id=producer_id,
        producer_seq=producer_seq,
        payload_sha256=bytes(32),
    )
    assert canonical(json.loads(entry)).encode() == entry
    fields = parse_entry(entry)
    assert (fields["v"], fields["seq"], fields["event_id"], fields["payload_sha256"]) == (
        ENTRY_FORMAT,
        seq,
        event_id,
        "00" * 32,
    )


def test_store_made_ids_are_time_ordered_uuid7() -> None:
    """Ids of purge entries sort by creation time and carry version 7."""
    first, second = new_entry_id(), new_entry_id()
    assert first[14] == "7"
    assert first[:13] <= second[:13]


_FIELDS: dict[str, Any] = {
    "seq": 7,
    "event_id": "e-7",
    "run_id": "r-1",
    "kind": "node_finished",
    "ts": "2026-12-05T10:00:00.000000Z",
    "project": "alpha",
    "producer_id": "p-1",
    "producer_seq": 3,
    "payload_sha256": bytes(range(32)),
}


@pytest.mark.parametrize("v", [2, 3])
def test_each_format_is_hashed_by_its_own_rule(v: int) -> None:
    """Format 3 chains and leaves with one hash, SHA-256(0x00 || prev || entry), pymerkle's leaf of that data;
    format 2 chained SHA-256(prev || entry) with the leaf SHA-256(0x00 || entry) apart."""
    prev = hashlib.sha256(b"the entry before").digest()
    entry = entry_bytes(**_FIELDS, v=v)
    assert entry_format(entry) == v
    assert parse_entry(entry)["v"] == v
    assert entry_hashes(prev, entry) == (entry_hash(prev, entry), entry_leaf(prev, entry))
    if v == 3:
        assert entry_hash(prev, entry) == entry_leaf(prev, entry) == hashlib.sha256(b"\x00" + prev + entry).digest()
        tree = InmemoryTree()
        tree.append_entry(prev + entry)
        assert tree.get_root(1) == entry_leaf(prev, entry)
    else:
        assert entry_hash(prev, entry) == hashlib.sha256(prev + entry).digest()
        assert entry_leaf(prev, entry) == hashlib.sha256(b"\x00" + entry).digest()


@pytest.mark.parametrize(("stored", "v"), [(None, 2), (3, 3)])
def test_an_entry_kept_as_its_fields_is_rebuilt_in_the_format_its_column_names(stored: int | None, v: int) -> None:
    """NULL in the entry column is a format-2 entry kept as its fields, 3 a format-3 one."""
    assert kept_as_fields(v) == stored
    fields = dict(_FIELDS)
    row = (
        stored,
        *(fields.pop(name) for name in ("seq", "event_id", "run_id", "kind", "ts", "project")),
        *fields.values(),
    )
    assert entry_of(row) == entry_bytes(**_FIELDS, v=v)


@pytest.mark.parametrize("stored", [1, 4, 7])
def test_an_entry_column_naming_no_format_gives_the_empty_entry(stored: int) -> None:
    """A number in the entry column that names no format kept as fields (edited by hand) hashes to no row's hash."""
    row = (stored, *(_FIELDS[name] for name in ("seq", "event_id", "run_id", "kind", "ts", "project")), "p-1", 3, b"x")
    assert entry_of(row) == b""


def test_an_unknown_format_is_not_an_entry() -> None:
    """parse_entry refuses a version it does not know."""
    with pytest.raises(ValueError, match="not of format 2 or 3"):
        parse_entry(entry_bytes(**_FIELDS, v=4))
