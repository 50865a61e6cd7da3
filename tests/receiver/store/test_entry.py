"""Ledger entries: their bytes are the canonical encoding whatever the ids hold."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from flowledger.receiver.store._canonical import canonical
from flowledger.receiver.store._entry import ENTRY_FORMAT, entry_bytes, new_entry_id, parse_entry

_text = st.text()
_maybe_text = st.none() | st.text()


@given(_text, _text, _text, _text, _maybe_text, _maybe_text, st.none() | st.integers(), st.integers(min_value=1))
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
