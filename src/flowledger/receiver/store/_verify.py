"""Walking the ledger's hash chain.

:class:`ChainWalker` takes ledger rows ``(seq, event_id, body bytes, prev_hash, hash)``
in ``seq`` order, chunk by chunk, and stops at the first row that breaks the
chain: a body that does not hash to its stored hash (edited), a ``prev_hash``
that is not the previous row's hash (a row removed, inserted or moved), or a
gap in ``seq`` (a row removed).
"""

from __future__ import annotations

from collections.abc import Iterable

from flowledger.receiver.store._canonical import GENESIS_HASH, chain_hash
from flowledger.receiver.store._protocol import VerifyReport

__all__ = ["ChainWalker", "parse_checkpoint"]


class ChainWalker:
    """Checks ledger rows in order; ``broken`` is set at the first bad one."""

    def __init__(self) -> None:
        self.prev_hash = GENESIS_HASH
        self.prev_seq = 0
        self.count = 0
        self.broken: tuple[int, str, str] | None = None
        self.hashes_at: dict[int, str] = {}
        self._watch: set[int] = set()

    def watch(self, seq: int) -> None:
        """Remember the hash found at ``seq`` (for checkpoints)."""
        self._watch.add(seq)

    def feed(self, rows: Iterable[tuple[int, str, bytes, bytes, bytes]]) -> bool:
        """Check more rows; return False once the chain is broken."""
        if self.broken is not None:
            return False
        for seq, event_id, body, prev_hash, stored_hash in rows:
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
            self.prev_hash = computed
            self.prev_seq = seq
            self.count += 1
            if seq in self._watch:
                self.hashes_at[seq] = computed.hex()
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


def parse_checkpoint(text: str) -> tuple[int, str]:
    """Parse ``SEQ:HASH`` (as ``flowledger verify`` prints it); ValueError when malformed."""
    seq_text, sep, hash_text = text.strip().partition(":")
    if not sep or not seq_text.isdigit() or len(hash_text) != 64:
        raise ValueError(f"checkpoint {text!r} is not SEQ:HASH (a row number and 64 hex digits)")
    int(hash_text, 16)
    return int(seq_text), hash_text.lower()
