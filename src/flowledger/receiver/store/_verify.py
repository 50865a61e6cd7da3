"""Walking the ledger's hash chain.

:class:`ChainWalker` takes ledger rows ``(seq, event_id, run_id, kind, ts,
body bytes, prev_hash, hash)`` in ``seq`` order, chunk by chunk, and stops at
the first row that breaks the chain: a body that does not hash to its stored
hash (edited), a ``prev_hash`` that is not the previous row's hash (a row
removed, inserted or moved), a gap in ``seq`` (a row removed), or an
``event_id``, ``run_id``, ``kind`` or ``ts`` column that is not what the
hashed body says (a column edited: the receiver finds stored events and runs
by these columns, so an edited ``event_id`` would let the event be stored
twice). ``received_at`` is the only column the hash does not cover.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

import orjson

from flowledger.receiver.store._canonical import GENESIS_HASH, chain_hash
from flowledger.receiver.store._protocol import VerifyReport
from flowledger.receiver.store._time import normalize_ts

LedgerRow = tuple[int, str, str, str, str, bytes, bytes, bytes]
"""``(seq, event_id, run_id, kind, ts, body, prev_hash, hash)`` as the walker reads them."""

__all__ = ["VERIFY_COLUMNS", "ChainWalker", "LedgerRow", "parse_checkpoint"]

VERIFY_COLUMNS: Final = "seq, event_id, run_id, kind, ts, CAST(body AS BLOB), prev_hash, hash"
"""The ``SELECT`` list of the rows :meth:`ChainWalker.feed` takes."""


class ChainWalker:
    """Checks ledger rows in order; ``broken`` is set at the first bad one."""

    def __init__(self) -> None:
        self.prev_hash = GENESIS_HASH
        self.prev_seq = 0
        self.count = 0
        self.broken: tuple[int, str, str] | None = None
        self.hashes_at: dict[int, str] = {}
        self.event_ids_at: dict[int, str] = {}
        self._watch: set[int] = set()

    def watch(self, seq: int) -> None:
        """Remember the hash found at ``seq`` (for checkpoints)."""
        self._watch.add(seq)

    def feed(self, rows: Iterable[LedgerRow]) -> bool:
        """Check more rows; return False once the chain is broken."""
        if self.broken is not None:
            return False
        for seq, event_id, run_id, kind, ts, body, prev_hash, stored_hash in rows:
            if seq != self.prev_seq + 1:
                missing = self.prev_seq + 1
                self.broken = (seq, event_id, f"rows {missing}..{seq - 1} are missing (deleted from the ledger)")
                return False
            if bytes(prev_hash) != self.prev_hash:
                self.broken = (
                    seq,
                    event_id,
                    "its prev_hash is not the hash of the row before it (a row was removed, inserted or moved)",
                )
                return False
            computed = chain_hash(self.prev_hash, bytes(body))
            if computed != bytes(stored_hash):
                self.broken = (seq, event_id, "its content does not match its hash (the row was edited)")
                return False
            column = _edited_column(bytes(body), event_id, run_id, kind, ts)
            if column is not None:
                self.broken = (seq, event_id, f"its {column} column is not what its hashed content says (edited)")
                return False
            self.prev_hash = computed
            self.prev_seq = seq
            self.count += 1
            if seq in self._watch:
                self.hashes_at[seq] = computed.hex()
                self.event_ids_at[seq] = event_id
        return True

    def report(self) -> VerifyReport:
        """The verdict so far."""
        if self.broken is None:
            return VerifyReport(ok=True, events=self.count, head_seq=self.prev_seq, head_hash=self.prev_hash.hex())
        seq, event_id, problem = self.broken
        return VerifyReport(
            ok=False,
            events=self.count,
            head_seq=self.prev_seq,
            head_hash=self.prev_hash.hex(),
            first_bad_seq=seq,
            first_bad_event_id=event_id,
            problem=problem,
        )


def _edited_column(body: bytes, event_id: str, run_id: str, kind: str, ts: str) -> str | None:
    """The first column that does not match the hashed body, or None."""
    try:
        event: Any = orjson.loads(body)
        said = (event["event_id"], event["run_id"], event["kind"], normalize_ts(event["ts"]))
    except (ValueError, KeyError, TypeError):
        return "body"
    columns = (event_id, run_id, kind, ts)
    for name, column, value in zip(("event_id", "run_id", "kind", "ts"), columns, said, strict=True):
        if column != value:
            return name
    return None


def parse_checkpoint(text: str) -> tuple[int, str]:
    """Parse ``SEQ:HASH`` (as ``flowledger verify`` prints it); ValueError when malformed."""
    seq_text, sep, hash_text = text.strip().partition(":")
    if not sep or not seq_text.isdigit() or len(hash_text) != 64:
        raise ValueError(f"checkpoint {text!r} is not SEQ:HASH (a row number and 64 hex digits)")
    int(hash_text, 16)
    return int(seq_text), hash_text.lower()
