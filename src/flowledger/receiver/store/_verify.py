"""Walking the ledger's hash chain.

:class:`EntryWalker` checks entry rows (formats 2 and 3, each by its own
hash rule: see :mod:`._entry`) in ``seq`` order, chunk by chunk, and stops
at the first row that breaks the chain: an entry that does not hash to its
stored hash (edited), a ``prev_hash`` that is
not the previous row's hash (a row removed, inserted or moved), a gap in
``seq``, a column that differs from the hashed entry, or a payload that does
not hash to the entry's ``payload_sha256`` or names another event. A payload
that is gone is fine only when a purge entry *after* it names its run (in its
project, or in every project for a purge that named none), and each purge
entry must account for exactly the payloads it records erasing: a payload
deleted by hand, before or after a purge of its run, fails at its row (or at
the purge whose count it breaks).

:class:`Format1Walker` checks rows of the first format, where the hash
covered the whole event body (used when converting a ledger, and for the
format-1 hashes a converted ledger keeps): its ``event_id``, ``run_id``,
``kind`` and ``ts`` columns must be what the hashed body says, so a column
edited before the conversion is not carried into an entry.

In every format ``received_at`` is the only column the hash does not cover.

:func:`verify_ledger` is ``verify`` itself, the same on every engine: the
chain from its origin (a converted ledger's starts from a hash of its format-1
head, see :func:`~._entry.migrated_genesis`), the stored Merkle tree nodes
against the entries, the full-output blobs against their keys (an engine
whose reads are :class:`BlobReads`), the format-1 hashes a converted ledger keeps
(:class:`KeptFormat1Hashes`), then the checkpoints. An engine gives only its
reads, as a :class:`VerifyReads` bound to one snapshot.
"""

from __future__ import annotations

import dataclasses
import decimal
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, runtime_checkable

import orjson

from flowledger.receiver.store._canonical import GENESIS_HASH, chain_hash
from flowledger.receiver.store._entry import (
    PURGE_KIND,
    entry_hashes,
    migrated_genesis,
    parse_entry,
    payload_hash,
)
from flowledger.receiver.store._merkle import FIRST_STORED_MIN_LEVEL, STORED_MIN_LEVEL, Frontier
from flowledger.receiver.store._protocol import VerifyReport
from flowledger.receiver.store._time import same_ts

__all__ = [
    "BLOB_CHUNK",
    "FORMAT1_COLUMNS",
    "VERIFY_CHUNK",
    "BlobReads",
    "EntryRow",
    "EntryWalker",
    "Format1HashRow",
    "Format1Walker",
    "KeptFormat1Hashes",
    "LedgerRow",
    "TreeNodeRow",
    "VerifyReads",
    "parse_checkpoint",
    "verify_ledger",
]

EntryRow = (
    tuple[int, str, str, str, str, bytes, bytes, bytes, bytes, bytes | None]
    | tuple[int, str, str, str, str, bytes, bytes, bytes, bytes, bytes | None, str]
    | tuple[int, str, str, str, str, bytes, bytes, bytes, bytes, bytes | None, str, str | None, int | None]
)
"""``(seq, event_id, run_id, kind, ts, entry, payload_hash, prev_hash, hash, payload or None[, project[,
producer_id, producer_seq]])``: the project column ('' for none) where the engine keeps one beside the entry, and
the producer columns where it keeps those (NULL in a purge entry and in rows stored before they existed)."""

_COLUMNS = ("event_id", "run_id", "kind", "ts")
_EDITED: Final = "its content does not match its hash (the row was edited)"
_EVENT_FIELDS: Final = ("event_id", "run_id", "kind", "ts", "project", "producer_id", "producer_seq")
"""The fields an entry and its event's payload both hold."""


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _read_json(text: bytes) -> Any:
    """A stored payload (or format-1 body) as JSON; ValueError or RecursionError when it is not JSON.

    orjson reads most payloads, fast; it refuses an integer beyond a double's range (``1`` and 400 zeros), which
    ingest accepts and stores as it came. Those are read by the json module instead, each integer as a
    :class:`~decimal.Decimal`: verify compares the event's string fields only, and Decimal has no digit limit, so
    a payload stored by a receiver that ran with Python's integer digit limit raised still reads.
    """
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text, parse_int=decimal.Decimal, parse_constant=_no_constant)


def _edited_field(entry: bytes, payload: bytes | None) -> str | None:
    """Which field of an entry that does not match its hash differs from the event's payload, when one does.

    The hash tells that a row was edited, not where. Where an engine keeps the entry as its fields (SQLite), a
    column edited by hand makes an entry of its own; the payload, when it is still there, names the column.
    """
    if payload is None:
        return None
    try:
        fields, body = parse_entry(entry), _read_json(payload)
    except (ValueError, RecursionError):
        return None
    if not isinstance(body, dict) or body.get("event_id") is None:  # a purge entry's payload is not an event
        return None
    for name in _EVENT_FIELDS:
        mine, theirs = fields.get(name), body.get(name)
        try:
            differs = not same_ts(str(mine), str(theirs)) if name == "ts" else mine != theirs
        except (TypeError, ValueError):
            differs = True
        if differs:
            return f"its {name} does not match the event's payload (the row was edited)"
    if fields.get("payload_sha256") != payload_hash(bytes(payload)).hex():
        return "its payload_hash does not match the payload (the row was edited)"
    return None


_NO_COLUMN: Final = object()
"""The project column of an engine that keeps none (its indexes read the project from the entry)."""

LedgerRow = tuple[int, str, str, str, str, bytes, bytes, bytes]
"""A format-1 row ``(seq, event_id, run_id, kind, ts, body, prev_hash, hash)`` as :class:`Format1Walker` reads it."""

FORMAT1_COLUMNS: Final = "seq, event_id, run_id, kind, ts, CAST(body AS BLOB), prev_hash, hash"
"""The ``SELECT`` list of the format-1 rows :meth:`Format1Walker.feed` takes."""

Format1HashRow = tuple[int, bytes, str | None, bytes | None]
"""A kept format-1 hash ``(seq, hash, event_id or None, payload or None)`` as :class:`KeptFormat1Hashes` reads it."""

TreeNodeRow = tuple[int, int, bytes]
"""A stored Merkle tree node ``(level, index, hash)``."""

VERIFY_CHUNK: Final = 2_000
"""Rows :func:`verify_ledger` reads at a time."""

BLOB_CHUNK: Final = 64
"""Blobs :func:`verify_ledger` reads at a time (a blob is a whole captured output: a few, not thousands)."""


@dataclass(slots=True)
class _Erased:
    purges: int = 0
    covered: set[tuple[str | None, str]] = field(default_factory=set)
    """(project or '', run id) the purges erased; project None: that run id in every project (a purge without a
    project names each id once, whatever projects held it). Its size is the runs purged: a run is its project and
    its id."""
    payloads: int = 0
    pending: dict[tuple[str, str], list[tuple[int, str]]] = field(default_factory=dict)
    """(project or '', run id) -> the (seq, event_id) whose payload is gone and that no purge after them accounts
    for yet, in seq order; a purge takes its runs' ones, and what is left at the end was deleted by hand."""


def _purge_record(body: Any) -> tuple[list[str], str | None, int] | str:
    """A purge payload's ``(runs, project or None, events)``, or why it is not a purge record."""
    if not isinstance(body, dict):
        return "it is not a JSON object"
    runs, selection, events = body.get("runs"), body.get("selection", {}), body.get("events")
    if not isinstance(runs, list) or not all(isinstance(run, str) for run in runs):
        return "its runs are not a list of run ids"
    if not isinstance(selection, dict):
        return "its selection is not an object"
    project = selection.get("project")
    if project is not None and not isinstance(project, str):
        return "its selection's project is not a string"
    if not isinstance(events, int) or isinstance(events, bool) or events < 0:
        return "its events is not a count"
    return runs, project, events


class EntryWalker:
    """Checks entry rows (formats 2 and 3) in order; ``broken`` is set at the first bad one."""

    def __init__(self, genesis: bytes = GENESIS_HASH) -> None:
        self.prev_hash = genesis
        self.prev_seq = 0
        self.count = 0
        self.broken: tuple[int, str, str] | None = None
        self.hashes_at: dict[int, str] = {}
        self.event_ids_at: dict[int, str] = {}
        self._watch: set[int] = set()
        self._erased = _Erased()
        self.tree = Frontier()
        self.tree_nodes: dict[tuple[int, int], bytes] = {}
        """The Merkle tree's perfect subtrees a store keeps or may have kept, recomputed from the entries."""

    def watch(self, seq: int) -> None:
        """Remember the hash found at ``seq`` (for checkpoints)."""
        self._watch.add(seq)

    def feed(self, rows: Iterable[EntryRow]) -> bool:
        """Check more rows; return False once the chain is broken."""
        if self.broken is not None:
            return False
        for row in rows:
            seq, event_id, run_id, kind, ts, entry, stored_payload_hash, prev_hash, stored_hash, payload, *column = row
            chain, leaf = entry_hashes(self.prev_hash, bytes(entry))
            problem = self._check(seq, prev_hash, chain, stored_hash)
            if problem == _EDITED:
                problem = _edited_field(bytes(entry), payload) or problem
            if problem is None:
                project = column[0] if column else _NO_COLUMN
                producer = tuple(column[1:3]) if len(column) == 3 else None
                problem = self._check_entry(
                    seq, (event_id, run_id, kind, ts), project, bytes(entry), bytes(stored_payload_hash), producer
                )
            if problem is None:
                problem = self._check_payload(
                    seq, event_id, run_id, kind, ts, payload, bytes(stored_payload_hash), bytes(entry)
                )
            if problem is not None:
                self.broken = (seq, event_id, problem)
                return False
            self.prev_hash = bytes(stored_hash)
            self.prev_seq = seq
            self.count += 1
            for level, index, digest in self.tree.append(leaf):
                if level >= FIRST_STORED_MIN_LEVEL:
                    self.tree_nodes[level, index] = digest
            if seq in self._watch:
                self.hashes_at[seq] = self.prev_hash.hex()
                self.event_ids_at[seq] = event_id
        return True

    def _check(self, seq: int, prev_hash: bytes, chain: bytes, stored_hash: bytes) -> str | None:
        """Why a row does not follow the last one, ``chain`` being its entry's hash after it, or None."""
        if seq != self.prev_seq + 1:
            return f"rows {self.prev_seq + 1}..{seq - 1} are missing (deleted from the ledger)"
        if bytes(prev_hash) != self.prev_hash:
            return "its prev_hash is not the hash of the row before it (a row was removed, inserted or moved)"
        if chain != bytes(stored_hash):
            return _EDITED
        return None

    @staticmethod
    def _check_entry(
        seq: int,
        columns: tuple[str, str, str, str],
        project: object,
        entry: bytes,
        stored_payload_hash: bytes,
        producer: tuple[object, ...] | None = None,
    ) -> str | None:
        try:
            fields = parse_entry(entry)
        except ValueError as exc:
            return f"its entry cannot be read ({exc})"
        if fields.get("seq") != seq:
            return f"its seq column says {seq} but the hashed entry says {fields.get('seq')} (the row was moved)"
        for name, value in zip(_COLUMNS, columns, strict=True):
            if fields.get(name) != value:
                return f"its {name} column does not match the hashed entry (the column was edited)"
        if project is not _NO_COLUMN and project != (fields.get("project") or ""):
            return "its project column does not match the hashed entry (the column was edited)"
        if fields.get("payload_sha256") != stored_payload_hash.hex():
            return "its payload_hash column does not match the hashed entry (the column was edited)"
        for name, stored in zip(("producer_id", "producer_seq"), producer or (), strict=False):
            # NULL where the schema allows it (a purge entry, a row stored before the columns); else the entry's
            if stored is not None and fields.get(name) != stored:
                return f"its {name} column does not match the hashed entry (the column was edited)"
        return None

    def _check_payload(
        self,
        seq: int,
        event_id: str,
        run_id: str,
        kind: str,
        ts: str,
        payload: bytes | None,
        digest: bytes,
        entry: bytes,
    ) -> str | None:
        erased = self._erased
        if payload is None:
            if kind == PURGE_KIND:
                return "the record of a purge has lost its payload (purge records are never erased)"
            erased.payloads += 1
            project = parse_entry(entry).get("project") or ""  # a run is its project and its id
            erased.pending.setdefault((str(project), run_id), []).append((seq, event_id))
            return None
        payload = bytes(payload)
        if payload_hash(payload) != digest:
            return "its payload does not match the entry's payload_sha256 (the payload was edited)"
        try:
            body: Any = _read_json(payload)
        except (ValueError, RecursionError):
            return "its payload is not JSON"
        if kind == PURGE_KIND:
            record = _purge_record(body)
            if isinstance(record, str):
                return f"its payload is not a purge record ({record})"
            return self._account_purge(*record)
        if not isinstance(body, dict):
            return "its payload is not an event (it is not a JSON object)"
        if body.get("event_id") != event_id or body.get("run_id") != run_id or body.get("kind") != kind:
            return "its payload is the body of another event (event_id, run_id or kind differ from the entry)"
        stated_ts: Any = body.get("ts")
        try:
            if not same_ts(ts, stated_ts):
                return "its payload's ts differs from the entry's"
        except (TypeError, ValueError):
            return "its payload's ts cannot be read"
        return None

    def _account_purge(self, runs: list[str], scope: str | None, events: int) -> str | None:
        """Take the gone payloads before this purge entry of the runs it names (of its project; of any project
        when it names none: a purge by workflow erases an id in each project it selected, and its record does not
        say which). A purge erases every payload of its runs there is, so a gone payload of a run no later purge
        names was deleted by hand (:meth:`report`). ``events``, the count it records, is not matched: with ids
        shared by projects, a record without projects cannot say whose payloads it counted."""
        erased = self._erased
        erased.purges += 1
        erased.covered.update((scope, run) for run in runs)
        named = set(runs)
        for key in [k for k in erased.pending if k[1] in named and (scope is None or k[0] == scope)]:
            del erased.pending[key]
        return None

    def report(self) -> VerifyReport:
        """The verdict so far (call once every row was fed)."""
        erased = self._erased
        if self.broken is None and erased.pending:
            (project, run_id), gone = min(erased.pending.items(), key=lambda item: item[1][0])
            seq, event_id = gone[0]
            of = f" of project {project!r}" if project else ""
            self.broken = (
                seq,
                event_id,
                f"its payload is gone but no purge entry covers run {run_id}{of} after it (a payload was deleted)",
            )
        base: dict[str, Any] = {
            "events": self.count,
            "head_seq": self.prev_seq,
            "head_hash": self.prev_hash.hex(),
            "purges": erased.purges,
            "runs_purged": len(erased.covered),
            "payloads_erased": erased.payloads,
        }
        if self.broken is None:
            return VerifyReport(ok=True, **base)
        seq, event_id, problem = self.broken
        return VerifyReport(ok=False, first_bad_seq=seq, first_bad_event_id=event_id, problem=problem, **base)


class Format1Walker:
    """Checks format-1 rows (:data:`LedgerRow`): hash = sha256(prev_hash || body), columns as the body says."""

    def __init__(self) -> None:
        self.prev_hash = GENESIS_HASH
        self.prev_seq = 0
        self.count = 0
        self.broken: tuple[int, str, str] | None = None

    @staticmethod
    def hash_of(prev_hash: bytes, body: bytes) -> bytes:
        """A format-1 row's hash: ``sha256(prev_hash || body)``."""
        return chain_hash(prev_hash, body)

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
            computed = self.hash_of(self.prev_hash, bytes(body))
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
    """The first format-1 column that does not match the hashed body, or None."""
    try:
        event: Any = _read_json(body)
        said = (event["event_id"], event["run_id"], event["kind"], ts if same_ts(ts, event["ts"]) else None)
    except (ValueError, RecursionError, KeyError, TypeError):
        return "body"
    columns = (event_id, run_id, kind, ts)
    for name, column, value in zip(_COLUMNS, columns, said, strict=True):
        if column != value:
            return name
    return None


class KeptFormat1Hashes:
    """Checks the format-1 hashes a converted ledger keeps (``ledger_v1``), fed in ``seq`` order.

    They must be linked from the genesis hash without a gap, end at the head the
    conversion recorded (``ledger_origin``), and match every payload still there
    (a purged one is not checked). The hashes at watched rows are kept, so
    checkpoints taken before the conversion still check.
    """

    def __init__(self, v1_head_seq: int, v1_head_hash: bytes, watch: set[int]) -> None:
        self._head = (v1_head_seq, v1_head_hash)
        self._watch = watch
        self._prev = GENESIS_HASH
        self._next_seq = 1
        self.found: dict[int, str] = {}
        """The format-1 hash at each watched row (hex)."""
        self.broken: tuple[int, str | None, str] | None = None

    def feed(self, rows: Iterable[Format1HashRow]) -> bool:
        """Check more rows; return False once one is wrong."""
        if self.broken is not None:
            return False
        for seq, stored, event_id, body in rows:
            stored = bytes(stored)
            if seq != self._next_seq:
                self.broken = (seq, event_id, f"format-1 hashes {self._next_seq}..{seq - 1} are missing")
                return False
            if body is not None and Format1Walker.hash_of(self._prev, bytes(body)) != stored:
                problem = "its payload does not match the format-1 hash kept from before the conversion"
                self.broken = (seq, event_id, problem)
                return False
            if seq in self._watch:
                self.found[seq] = stored.hex()
            self._prev, self._next_seq = stored, seq + 1
        return True

    def report(self, report: VerifyReport) -> VerifyReport:
        """``report`` (of the entries' chain) failed at the first wrong format-1 hash, if any (call once every row was
        fed)."""
        if self.broken is None and (self._next_seq - 1, self._prev) != self._head:
            problem = "the format-1 hashes kept from before the conversion do not end at the recorded head"
            self.broken = (self._next_seq, None, problem)
        if self.broken is None:
            return report
        seq, event_id, problem = self.broken
        return dataclasses.replace(report, ok=False, first_bad_seq=seq, first_bad_event_id=event_id, problem=problem)


class VerifyReads(Protocol):
    """What :func:`verify_ledger` reads, in one engine's spelling, every read on the same snapshot."""

    async def origin(self) -> tuple[int, bytes]:
        """The format-1 head ``(seq, hash)`` a converted ledger recorded; ``(0, GENESIS_HASH)`` for any other."""
        ...

    async def entries(self, after_seq: int, limit: int) -> Sequence[EntryRow]:
        """The next ledger rows after ``after_seq`` with their payloads, in ``seq`` order."""
        ...

    async def tree_nodes(self, after: tuple[int, int], limit: int) -> Sequence[TreeNodeRow]:
        """The next stored Merkle tree nodes after ``(level, index)``, in that order."""
        ...

    async def format1_hashes(self, after_seq: int, limit: int) -> Sequence[Format1HashRow]:
        """The next kept format-1 hashes after ``after_seq`` with their entries' event ids and payloads."""
        ...


@runtime_checkable
class BlobReads(Protocol):
    """The reads of an engine that keeps full outputs apart (the ``blobs`` table), for :func:`verify_ledger`."""

    async def blobs(self, after: str, limit: int) -> Sequence[tuple[str, bytes]]:
        """The next stored blobs ``(sha256 key, body as UTF-8)`` after key ``after``, in key order."""
        ...

    async def blob_owner(self, key: str) -> int | None:
        """The first ledger row whose payload names ``key`` (commits to the blob), or None."""
        ...


async def verify_ledger(reads: VerifyReads, checkpoints: Sequence[tuple[int, str]] = ()) -> VerifyReport:
    """Walk the chain from its origin, check the stored tree, a converted ledger's format-1 hashes, and the
    ``(seq, hex hash)`` checkpoints (a checkpoint of a converted row may be its format-1 hash)."""
    v1_seq, v1_hash = await reads.origin()
    walker = EntryWalker(migrated_genesis(v1_seq, v1_hash))
    for seq, _ in checkpoints:
        walker.watch(seq)
    last = 0
    while rows := await reads.entries(last, VERIFY_CHUNK):
        last = int(rows[-1][0])
        if not walker.feed(rows):
            break
    report = walker.report()
    if report.ok:
        report = await _check_tree(reads, report, walker.tree_nodes)
    if report.ok and isinstance(reads, BlobReads):
        report = await _check_blobs(reads, report)
    v1_hashes: dict[int, str] = {}
    if report.ok and v1_seq:
        kept = KeptFormat1Hashes(v1_seq, v1_hash, {seq for seq, _ in checkpoints})
        last = 0
        while hashes := await reads.format1_hashes(last, VERIFY_CHUNK):
            last = int(hashes[-1][0])
            if not kept.feed(hashes):
                break
        report, v1_hashes = kept.report(report), kept.found
    if not report.ok:
        return report
    for seq, expected in checkpoints:
        # A converted row is checked by either hash: its format-1 one, or the chain's that `verify` prints now.
        found = [h for h in (walker.hashes_at.get(seq), v1_hashes.get(seq)) if h is not None]
        if expected not in found:
            problem = (
                f"checkpoint {seq}:{expected[:12]}... does not match: the row's hash is now {found[0]}"
                + (f" (format 1: {found[1]})" if len(found) > 1 else "")
                if found
                else f"checkpoint row {seq} is no longer in the ledger (the chain was truncated)"
            )
            return dataclasses.replace(
                report, ok=False, first_bad_seq=seq, first_bad_event_id=walker.event_ids_at.get(seq), problem=problem
            )
    return report


async def _check_tree(reads: VerifyReads, report: VerifyReport, expected: dict[tuple[int, int], bytes]) -> VerifyReport:
    """Check the stored Merkle tree nodes against the ones recomputed from the entries.

    Every stored node must match; every one of level :data:`~._merkle.STORED_MIN_LEVEL` and up must be there
    (a ledger made when smaller ones were stored too keeps them, checked like the rest).
    """
    seen: set[tuple[int, int]] = set()
    last = (-1, -1)
    while rows := await reads.tree_nodes(last, VERIFY_CHUNK):
        last = (int(rows[-1][0]), int(rows[-1][1]))
        for level, index, digest in rows:
            if level >= STORED_MIN_LEVEL:
                seen.add((level, index))
            if expected.get((level, index)) != bytes(digest):
                first = (index << level) + 1
                problem = (
                    f"the stored Merkle tree node at level {level}, index {index} (entries {first}.."
                    f"{first + (1 << level) - 1}) does not match the entries (the tree was edited)"
                )
                return dataclasses.replace(report, ok=False, first_bad_seq=first, problem=problem)
    missing = [key for key in expected if key[0] >= STORED_MIN_LEVEL and key not in seen]
    if missing:
        level, index = min(missing, key=lambda key: (key[1] << key[0], key[0]))
        first = (index << level) + 1
        problem = (
            f"{len(missing)} stored Merkle tree nodes are missing, the first at level {level}, index {index} "
            f"(entries {first}..{first + (1 << level) - 1}) (the tree was edited)"
        )
        return dataclasses.replace(report, ok=False, first_bad_seq=first, first_bad_event_id=None, problem=problem)
    return report


async def _check_blobs(reads: BlobReads, report: VerifyReport) -> VerifyReport:
    """Check that every stored blob (a full output) hashes to its key, the sha256 a payload commits to.

    Read :data:`BLOB_CHUNK` at a time, in key order: memory stays one chunk whatever the table's size.
    """
    last = ""
    while rows := await reads.blobs(last, BLOB_CHUNK):
        last = str(rows[-1][0])
        for key, body in rows:
            if hashlib.sha256(bytes(body)).hexdigest() != key:
                seq = await reads.blob_owner(str(key))
                owner = f"row {seq}'s payload commits to it" if seq is not None else "no payload names it"
                problem = f"the stored full output (blob) {key} does not hash to its key; {owner} (the blob was edited)"
                return dataclasses.replace(
                    report, ok=False, first_bad_seq=seq, first_bad_event_id=None, problem=problem
                )
    return report


def parse_checkpoint(text: str) -> tuple[int, str]:
    """Parse ``SEQ:HASH`` (as ``flowledger verify`` prints it); ValueError when malformed."""
    seq_text, sep, hash_text = text.strip().partition(":")
    if not sep or not seq_text.isdigit() or len(hash_text) != 64:
        raise ValueError(f"checkpoint {text!r} is not SEQ:HASH (a row number and 64 hex digits)")
    int(hash_text, 16)
    return int(seq_text), hash_text.lower()
