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

:class:`RunProofWriter` writes that document and :func:`check_run_proof_file`
checks it a chunk of entries at a time, so neither holds a large run's proof
in memory.

:func:`check_extends` is the consistency check of ``flowledger verify
--checkpoint FILE --key FILE.pub``: that the ledger now extends a signed checkpoint.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TextIO

from flowledger._exceptions import ProofError
from flowledger.receiver.store._checkpoint import Checkpoint, VerifierKey, open_checkpoint
from flowledger.receiver.store._entry import entry_format, entry_leaf
from flowledger.receiver.store._merkle import verify_consistency, verify_inclusion

__all__ = [
    "PROOF_FORMAT",
    "ProofSummary",
    "RunProofWriter",
    "check_extends",
    "check_run_proof",
    "check_run_proof_file",
    "check_run_proof_text",
    "iter_entries",
    "run_proof_document",
]

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


class RunProofWriter:
    """Write a run proof to ``out`` a chunk of entries at a time: the same text, byte for byte, as
    ``json.dumps(run_proof_document(...), ensure_ascii=False, indent=1) + "\\n"``, without the whole document
    in memory. :meth:`close` ends it (at least one entry must have been added)."""

    def __init__(self, out: TextIO, run_id: str, checkpoint_text: str) -> None:
        self._out = out
        self.entries = 0
        """Entries written so far."""
        self.payloads = 0
        """Of which with their payload (the others were purged)."""
        self._head = (
            f'{{\n "format": {_dumps(PROOF_FORMAT)},\n "run_id": {_dumps(run_id)},\n'
            f' "checkpoint": {_dumps(checkpoint_text)},\n "entries": [\n'
        )

    def add(self, entries: Sequence[tuple[int, bytes, bytes, bytes | None, Sequence[bytes]]]) -> None:
        """Write ``entries`` ``(seq, entry, prev_hash, payload, path)``, after those added before."""
        document = run_proof_document("", "", entries)
        parts = []
        for item in document["entries"]:
            text = json.dumps(item, ensure_ascii=False, indent=1)  # its line breaks are its own: strings escape theirs
            parts.append("  " + text.replace("\n", "\n  "))
        if not parts:
            return
        self._out.write((self._head if self.entries == 0 else ",\n") + ",\n".join(parts))
        self.entries += len(parts)
        self.payloads += sum(payload is not None for _, _, _, payload, _ in entries)

    def close(self) -> None:
        """End the document."""
        if self.entries == 0:
            raise ValueError("a run proof holds at least one entry")
        self._out.write("\n ]\n}\n")


def _dumps(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


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


def _header(document: Any, key: VerifierKey) -> tuple[str, Checkpoint]:
    """The run id and the checkpoint (its signature checked) of a proof document."""
    if not isinstance(document, dict) or document.get("format") != PROOF_FORMAT:
        raise ProofError(f"this is not a flowledger run proof (format {PROOF_FORMAT})")
    run_id = _field(document, "run_id", str, "the proof")
    return run_id, open_checkpoint(_field(document, "checkpoint", str, "the proof"), key)


def check_run_proof(document: Any, key: VerifierKey) -> ProofSummary:
    """Verify a run proof with ``key``; ProofError naming the first thing that does not hold."""
    run_id, checkpoint = _header(document, key)
    entries = _field(document, "entries", list, "the proof")
    if not entries:
        raise ProofError(f"the proof holds no entry of run {run_id}")
    seqs = [item.get("seq") for item in entries if isinstance(item, dict) and type(item.get("seq")) is int]
    if len(set(seqs)) != len(seqs):  # any other seq is refused by its entry's own check
        raise ProofError("the proof lists an entry twice")
    payloads = sum(_check_entry(item, i, run_id, checkpoint) for i, item in enumerate(entries))
    return ProofSummary(run_id=run_id, checkpoint=checkpoint, entries=len(entries), payloads=payloads)


_NOT_WHITESPACE: Final = re.compile(r"[^ \t\n\r]")
_READ_CHARS: Final = 1 << 20


class _Unstreamable(Exception):
    """The document is not laid out for reading as it comes: read it whole instead."""


class _JsonStream:
    """A JSON text read a piece at a time: the values of a top-level object one by one, and the items of an
    array one by one, each parsed by the standard decoder, so that only one of them is held at a time."""

    def __init__(self, read: Callable[[], str]) -> None:
        self._read = read
        self._buffer = ""
        self._pos = 0
        self._eof = False
        self._decoder = json.JSONDecoder()

    def _more(self) -> bool:
        if self._eof:
            return False
        piece = self._read()
        if not piece:
            self._eof = True
            return False
        self._buffer = self._buffer[self._pos :] + piece
        self._pos = 0
        return True

    def peek(self) -> str:
        """The next character that is not whitespace ('' at the end)."""
        while True:
            found = _NOT_WHITESPACE.search(self._buffer, self._pos)
            if found is not None:
                self._pos = found.start()
                return self._buffer[self._pos]
            self._pos = len(self._buffer)
            if not self._more():
                return ""

    def take(self, char: str) -> None:
        if self.peek() != char:
            raise ValueError(f"expected {char!r} at character {self._pos} of a piece")
        self._pos += 1

    def value(self) -> Any:
        """The next JSON value, whole."""
        self.peek()
        while True:
            try:
                value, end = self._decoder.raw_decode(self._buffer, self._pos)
            except json.JSONDecodeError:
                if self._more():
                    continue
                raise
            # A number or literal at the end of what was read may go on in the next piece.
            if end < len(self._buffer) or not self._more():
                self._pos = end
                return value

    def members(self) -> Iterator[str]:
        """The keys of the object that comes next, each left for its value to be read before the next key."""
        self.take("{")
        if self.peek() == "}":
            self._pos += 1
            return
        while True:
            key = self.value()
            if not isinstance(key, str):
                raise ValueError("an object's key is not a string")
            self.take(":")
            yield key
            if self.peek() == ",":
                self._pos += 1
                continue
            self.take("}")
            return

    def items(self) -> Iterator[Any]:
        """The items of the array that comes next."""
        self.take("[")
        if self.peek() == "]":
            self._pos += 1
            return
        while True:
            yield self.value()
            if self.peek() == ",":
                self._pos += 1
                continue
            self.take("]")
            return

    def end(self) -> None:
        if self.peek():
            raise ValueError("extra data after the JSON value")


def iter_entries(read: Callable[[], str]) -> Iterator[Any]:
    """The items of the ``entries`` array of the object ``{"entries": [...]}`` read piece by piece from ``read``
    ('' at the end): ``GET /api/tree/runs/{run_id}``'s answer as it arrives. ValueError when it is not that."""
    stream = _JsonStream(read)
    for key in stream.members():
        if key != "entries" or stream.peek() != "[":
            stream.value()
            continue
        yield from stream.items()
    stream.end()


def check_run_proof_text(read: Callable[[], str], key: VerifierKey) -> ProofSummary:
    """Verify the run proof whose JSON text ``read`` gives a piece at a time ('' at the end), with ``key``.

    The verdict and the problem named are :func:`check_run_proof`'s, holding one entry at a time when
    ``entries`` comes after ``format``, ``run_id`` and ``checkpoint`` (as ``flowledger prove`` writes them);
    another layout is read whole and checked so. A top-level key named twice is refused: which one counts is
    not JSON's to say.
    ValueError (json.JSONDecodeError among them) when the text is not JSON.
    """
    stream = _JsonStream(read)
    if stream.peek() != "{":
        raise _Unstreamable
    header: dict[str, Any] = {}
    seen: set[str] = set()
    summary: ProofSummary | None = None
    for name in stream.members():
        if name in seen:
            raise ProofError(f"the proof names {name} twice")
        seen.add(name)
        if name != "entries":
            header[name] = stream.value()
            continue
        if stream.peek() != "[" or not {"format", "run_id", "checkpoint"} <= seen:
            raise _Unstreamable
        run_id, checkpoint = _header(header, key)
        done: set[int] = set()
        entries = payloads = 0
        failed: ProofError | None = None  # said after the whole list is read: an entry listed twice comes first
        for index, item in enumerate(stream.items()):
            seq = item.get("seq") if isinstance(item, dict) else None
            if type(seq) is int:
                if seq in done:
                    raise ProofError("the proof lists an entry twice")
                done.add(seq)
            entries += 1
            if failed is None:
                try:
                    payloads += _check_entry(item, index, run_id, checkpoint)
                except ProofError as exc:
                    failed = exc
        if not entries:
            raise ProofError(f"the proof holds no entry of run {run_id}")
        if failed is not None:
            raise failed
        summary = ProofSummary(run_id=run_id, checkpoint=checkpoint, entries=entries, payloads=payloads)
    stream.end()
    if summary is None:  # no entries: the whole check says what is missing
        return check_run_proof(header, key)
    return summary


def check_run_proof_file(path: Path, key: VerifierKey) -> ProofSummary:
    """Verify the run proof in ``path`` with ``key``, reading it a piece at a time (:func:`check_run_proof_text`).

    ValueError (json.JSONDecodeError among them) when it is not JSON; UnicodeDecodeError when not UTF-8.
    """
    with path.open(encoding="utf-8", newline="") as text:
        try:
            return check_run_proof_text(functools.partial(text.read, _READ_CHARS), key)
        except _Unstreamable:
            pass
    return check_run_proof(_whole(path.read_text(encoding="utf-8")), key)


def _whole(text: str) -> Any:
    """The proof document read whole, refusing a top-level key named twice as the streamed reading does."""
    last: list[list[tuple[str, Any]]] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        last[:] = [items]  # the outermost object is the last one completed
        return dict(items)

    document = json.loads(text, object_pairs_hook=pairs)
    if isinstance(document, dict) and last:
        names = [name for name, _ in last[0]]
        twice = next((name for name in names if names.count(name) > 1), None)
        if twice is not None:
            raise ProofError(f"the proof names {twice} twice")
    return document


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
