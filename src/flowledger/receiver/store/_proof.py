"""Proofs checked without the database: a run's entries against a signed checkpoint, and consistency.

A *run proof* (``flowledger prove``) is a JSON document::

    {"format": "flowledger-run-proof/1", "run_id": ..., "checkpoint": "<signed note>",
     "entries": [{"seq": 12, "entry": "<entry JSON>", "prev_hash": "<hex>",
                  "payload": "<event JSON>" or null, "inclusion_path": ["<hex>", ...]}, ...]}

:func:`check_run_proof` verifies it with only the verifier key: the
checkpoint's signature, each entry's RFC 9162 inclusion in the tree the
checkpoint signed (a format-3 entry's leaf data is ``prev_hash || entry``, a
format-2 entry's the entry alone; proofs made before format 3 have no
``prev_hash``), that each entry belongs to the run and sits at its
``seq``, and that each payload still present hashes to the entry's
``payload_sha256`` and is that event's body. It imports no database driver
and no server: an auditor runs it with the proof file and a public key.

:func:`check_extends` is the consistency check of ``flowledger verify
--checkpoint FILE --key FILE.pub``: that the ledger now extends a signed checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from flowledger._exceptions import ProofError
from flowledger.receiver.store._checkpoint import Checkpoint, VerifierKey, open_checkpoint
from flowledger.receiver.store._entry import entry_format, entry_leaf
from flowledger.receiver.store._merkle import verify_consistency, verify_inclusion

__all__ = ["PROOF_FORMAT", "ProofSummary", "check_extends", "check_run_proof", "run_proof_document"]

PROOF_FORMAT: Final = "flowledger-run-proof/1"
_HASH_HEX: Final = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class ProofSummary:
    """What a valid run proof showed."""

    run_id: str
    checkpoint: Checkpoint
    entries: int
    payloads: int
    """Entries whose payload is in the proof (the others were purged)."""


def run_proof_document(
    run_id: str, checkpoint_text: str, entries: Sequence[tuple[int, bytes, bytes, bytes | None, Sequence[bytes]]]
) -> dict[str, Any]:
    """The proof document of ``entries`` ``(seq, entry, prev_hash, payload, path)`` against ``checkpoint_text``."""
    return {
        "format": PROOF_FORMAT,
        "run_id": run_id,
        "checkpoint": checkpoint_text,
        "entries": [
            {
                "seq": seq,
                "entry": entry.decode("utf-8"),
                "prev_hash": prev_hash.hex(),
                "payload": None if payload is None else payload.decode("utf-8"),
                "inclusion_path": [node.hex() for node in path],
            }
            for seq, entry, prev_hash, payload, path in entries
        ],
    }


def _field(item: dict[str, Any], name: str, kind: type, where: str) -> Any:
    value = item.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ProofError(f"{where}: {name} is missing or not a {kind.__name__}")
    return value


def _utf8(text: str, name: str, where: str) -> bytes:
    """``text`` as UTF-8; ProofError when it holds what UTF-8 cannot (a lone surrogate, written ``\\ud800``)."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise ProofError(
            f"{where}: the {name} is not text a ledger could hold (it has a lone surrogate): the proof was changed"
        ) from None


def _check_entry(item: Any, index: int, run_id: str, checkpoint: Checkpoint) -> bool:
    """Check one entry of a proof; return whether its payload is there."""
    where = f"entries[{index}]"
    if not isinstance(item, dict):
        raise ProofError(f"{where} is not an object")
    seq = _field(item, "seq", int, where)
    entry_text = _field(item, "entry", str, where)
    path_hex = _field(item, "inclusion_path", list, where)
    try:
        path = [bytes.fromhex(node) for node in path_hex]
    except (TypeError, ValueError):
        raise ProofError(f"{where}: the inclusion path is not a list of hex hashes") from None
    prev_hex = item.get("prev_hash", "")  # absent from proofs made before format 3, whose leaves do not need it
    if not isinstance(prev_hex, str) or not (prev_hex == "" or _HASH_HEX.fullmatch(prev_hex)):
        raise ProofError(f"{where}: prev_hash is not a hex SHA-256 hash")
    entry = _utf8(entry_text, "entry", where)
    if not prev_hex and entry_format(entry) == 3:
        raise ProofError(f"{where}: prev_hash is missing (a format-3 entry's leaf is prev_hash || entry)")
    leaf = entry_leaf(bytes.fromhex(prev_hex), entry)
    if not verify_inclusion(leaf, seq - 1, checkpoint.size, path, checkpoint.root):
        raise ProofError(
            f"{where}: entry {seq} is not in the tree the checkpoint signed (its inclusion proof fails): "
            "the entry or its path was changed"
        )
    try:
        fields = json.loads(entry_text)
    except json.JSONDecodeError:
        raise ProofError(f"{where}: the entry is not JSON") from None
    if not isinstance(fields, dict) or fields.get("run_id") != run_id or fields.get("seq") != seq:
        raise ProofError(f"{where}: entry {seq} is not an entry of run {run_id} at that position")
    payload_text = item.get("payload")
    if payload_text is None:
        return False
    if not isinstance(payload_text, str):
        raise ProofError(f"{where}: the payload is not a string")
    payload = _utf8(payload_text, "payload", where)
    if hashlib.sha256(payload).hexdigest() != fields.get("payload_sha256"):
        raise ProofError(f"{where}: the payload of entry {seq} does not match the entry's payload_sha256 (changed)")
    try:
        body = json.loads(payload_text)
    except json.JSONDecodeError:
        raise ProofError(f"{where}: the payload is not JSON") from None
    if not isinstance(body, dict) or any(body.get(k) != fields.get(k) for k in ("event_id", "run_id", "kind")):
        raise ProofError(f"{where}: the payload is not the body of the event the entry names")
    return True


def check_run_proof(document: Any, key: VerifierKey) -> ProofSummary:
    """Verify a run proof with ``key``; ProofError naming the first thing that does not hold."""
    if not isinstance(document, dict) or document.get("format") != PROOF_FORMAT:
        raise ProofError(f"this is not a flowledger run proof (format {PROOF_FORMAT})")
    run_id = _field(document, "run_id", str, "the proof")
    checkpoint = open_checkpoint(_field(document, "checkpoint", str, "the proof"), key)
    entries = _field(document, "entries", list, "the proof")
    if not entries:
        raise ProofError(f"the proof holds no entry of run {run_id}")
    seqs = [item.get("seq") for item in entries if isinstance(item, dict) and type(item.get("seq")) is int]
    if len(set(seqs)) != len(seqs):  # any other seq is refused by its entry's own check
        raise ProofError("the proof lists an entry twice")
    payloads = sum(_check_entry(item, i, run_id, checkpoint) for i, item in enumerate(entries))
    return ProofSummary(run_id=run_id, checkpoint=checkpoint, entries=len(entries), payloads=payloads)


def check_extends(checkpoint: Checkpoint, size: int, root: bytes, path: Sequence[bytes]) -> None:
    """That a tree of ``size`` entries with ``root`` extends ``checkpoint``, by the consistency ``path``.

    ProofError says which way it does not: a cut tail or rollback, or a rewrite.
    """
    m = checkpoint.size
    if size < m:
        raise ProofError(
            f"the ledger has {size} entries but the checkpoint signed {m}: entries were cut from its end, "
            "or the database was rolled back to an earlier copy"
        )
    if size == m and root != checkpoint.root:
        raise ProofError(
            f"the ledger has the checkpoint's {m} entries but not the same ones: its history was rewritten "
            "(or rolled back and written again)"
        )
    if not verify_consistency(m, size, checkpoint.root, root, path):
        raise ProofError(
            f"the ledger's first {m} entries are not the ones the checkpoint signed (the consistency proof "
            f"from {m} to {size} entries fails): its history was rewritten (or rolled back and written again)"
        )
