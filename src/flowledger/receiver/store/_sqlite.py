"""The SQLite engine of the :class:`~flowledger.receiver.store._protocol.Store` protocol.

One write connection (used only by the writer task) and a small pool of
read-only connections, all in WAL mode with ``synchronous=NORMAL`` and a
busy timeout, so readers never wait for the writer. A committed batch
survives the receiver being killed; only an operating-system crash can lose
the last transactions before a WAL checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sqlite3
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any, Final, TypeVar

import aiosqlite

from flowledger._exceptions import SchemaVersionError, StoreError, StoreUnavailable, UnstorableError
from flowledger._wire import RunStatus, now_ts
from flowledger.receiver.store import _viewer_query as viewer_sql
from flowledger.receiver.store._binding import register_adapters
from flowledger.receiver.store._blobs import store_blobs
from flowledger.receiver.store._bulk import CHUNK_ROWS, STATEMENT_CACHE, in_list, insert_rows
from flowledger.receiver.store._canonical import GENESIS_HASH
from flowledger.receiver.store._children import children_json, children_sql
from flowledger.receiver.store._coverage import coverage
from flowledger.receiver.store._custom_metrics import CustomMetricQuery, query_custom_metrics
from flowledger.receiver.store._deadline import PROGRESS_STEPS, Deadline, interrupted, query_timeout
from flowledger.receiver.store._entry import (
    ENTRY_COLUMNS,
    ENTRY_FORMAT,
    LEAF_PREFIX,
    LEDGER_PROJECT,
    entry_bytes,
    entry_of,
    kept_as_fields,
    payload_hashes,
    purge_entry,
)
from flowledger.receiver.store._error_groups import ErrorGroupQuery, error_groups, with_fingerprints
from flowledger.receiver.store._event import PreparedEvent
from flowledger.receiver.store._evidence import resume_chain, resume_evidence
from flowledger.receiver.store._fold import RUN_COLUMNS, mark_stuck
from flowledger.receiver.store._integrity import CoverageQuery, CoverageReport, ReconcileReport, ReconcileScope
from flowledger.receiver.store._logs import (
    LOG_PAGE_MAX,
    LOG_SELECT,
    LOGS_INLINE_MAX,
    AttemptLogs,
    LogDrop,
    LogRow,
    append_log_rows,
    log_json,
)
from flowledger.receiver.store._merkle import STORED_MIN_LEVEL, Frontier
from flowledger.receiver.store._migrations import SCHEMA_VERSION, foreign_database, migrate, schema_version
from flowledger.receiver.store._namespace import NAMESPACES_SQL, one_namespace, run_scope
from flowledger.receiver.store._on_thread import (
    OVERLAP_MAX_SWITCH_INTERVAL_S,
    StatementThread,
    WriteConnection,
    run_on_thread,
    stop_statements,
)
from flowledger.receiver.store._once import new_events
from flowledger.receiver.store._otlp_logs import OtlpLogRow, insert_logs, link_pending, select_logs
from flowledger.receiver.store._otlp_metrics import (
    MetricPointRow,
    MetricsOutcome,
    insert_metric_points,
    select_metric_series,
)
from flowledger.receiver.store._projector import Projector, run_from_row, save_runs
from flowledger.receiver.store._protocol import (
    TOTAL_COUNT_MAX,
    DailyTotal,
    Drift,
    EntryProof,
    EventOutcome,
    PurgeReport,
    PurgeSelection,
    RunPage,
    RunQuery,
    Stats,
    TreeHead,
    VerifyReport,
)
from flowledger.receiver.store._purge import DAILY_TOTALS_SQL, daily_total, purge_runs
from flowledger.receiver.store._query import (
    MATCHED_COLUMN,
    NEWEST_FIRST,
    NODE_SELECT,
    RUN_PAYLOADS_SELECT,
    RUN_SELECT,
    keyset_condition,
    node_json,
    run_json,
    run_page_sql,
    runs_count_sql,
    runs_where,
)
from flowledger.receiver.store._rebuild import refold, temp_on_disk
from flowledger.receiver.store._reconcile import reconcile
from flowledger.receiver.store._sampled import SAMPLED_OUT_SQL
from flowledger.receiver.store._search import HITS_CAPPED_SQL, SEARCH_HITS_MAX, fts_query, run_id_search
from flowledger.receiver.store._spans import SPAN_COLUMNS, SpanRow, TraceLinks, span_json
from flowledger.receiver.store._stats import StatsQuery, stats_groups
from flowledger.receiver.store._time import epoch_s, ts_from_epoch_s
from flowledger.receiver.store._tree import (
    consistency,
    frontier_async,
    iter_run_proof,
    run_proof,
    stored_nodes,
    tree_head,
)
from flowledger.receiver.store._verify import EntryRow, Format1HashRow, TreeNodeRow, verify_ledger
from flowledger.receiver.store._views import (
    PERCENTILE_SAMPLE_MAX,
    PageDirection,
    PayloadKind,
    RunFilter,
    RunListPage,
    RunPageCursor,
)

__all__ = ["SqliteStore"]

_T = TypeVar("_T")

BUSY_TIMEOUT_MS: Final = 10_000
_AUTO_VACUUM_INCREMENTAL: Final = 2
_LOOKUP_CHUNK: Final = 500
_STREAM_CHUNK: Final = 2_000
_CACHE_KIB: Final = 65_536
SWEEP_SQL: Final = (
    f"SELECT {', '.join(RUN_COLUMNS)} FROM runs INDEXED BY runs_alive "
    f"WHERE status = '{RunStatus.RUNNING.value}' AND last_seen_at < ?"
)
"""Running runs silent since before a cutoff: a range of the partial index ``runs_alive``, never a scan."""
_LAST_HEARD_SQL: Final = (
    f"SELECT max(received_at) FROM ledger INDEXED BY ledger_by_run WHERE run_id = ? AND {LEDGER_PROJECT.format('')} = ?"
)
"""When the receiver last stored an event of a run, by its own clock (the sweeper's second opinion)."""
_INSERT_LEDGER: Final = (
    "INSERT INTO ledger (seq, event_id, run_id, kind, ts, received_at, payload_hash, prev_hash, hash, project, "
    "producer_id, producer_seq, entry)"
)
"""A ledger row: an entry as its fields (its bytes are rebuilt from them, :func:`~._entry.entry_of`), the
receiver's clock and the hashes; the project is '' for none, the entry column :data:`_AS_FIELDS`."""
_AS_FIELDS: Final = kept_as_fields(ENTRY_FORMAT)
"""The ``entry`` column of a new row: its entry, of this format, is kept as its fields."""
_INSERT_PAYLOADS: Final = "INSERT INTO payloads (seq, body)"
_INSERT_NODES: Final = "INSERT INTO merkle_nodes (level, idx, hash)"
_VERIFY_SQL: Final = (
    f"SELECT {ENTRY_COLUMNS.format('l.')}, l.prev_hash, l.hash, CAST(p.body AS BLOB) "
    "FROM ledger l LEFT JOIN payloads p ON p.seq = l.seq WHERE l.seq > ? ORDER BY l.seq LIMIT ?"
)


def prepare_file(path: Path) -> None:
    """Create (or check) the database file and bring its schema up to date, synchronously.

    Raises StoreError (or SchemaVersionError) with one clear sentence when the file cannot be used.
    """
    try:
        conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open the database {path}: {exc}") from exc
    try:
        foreign = foreign_database(conn, str(path))
        if foreign is not None:
            raise StoreError(foreign)  # first: another application's database is refused untouched
        if schema_version(conn) == 0:
            # Only takes effect before the first table: freed pages can then be handed back after a purge.
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        migrate(conn, name=str(path))
        conn.execute("PRAGMA journal_mode=WAL")
        if int(conn.execute("PRAGMA auto_vacuum").fetchone()[0]) != _AUTO_VACUUM_INCREMENTAL:
            # A file made before purges existed: switch it once (VACUUM rewrites the whole file).
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            conn.execute("VACUUM")
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path} is not a flowledger database: {exc}") from exc
    finally:
        conn.close()


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise StoreError(f"there is no database at {path}; start `flowledger serve --db {path}` first or pass --db")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            foreign = foreign_database(conn, str(path))
            version = schema_version(conn)
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path} is not a flowledger database: {exc}") from exc
    if foreign is not None:
        raise StoreError(foreign)
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"the database has schema version {version}, newer than the {SCHEMA_VERSION} this flowledger knows; "
            "upgrade flowledger to open it"
        )
    if version == 0:
        raise StoreError(f"{path} holds no flowledger ledger yet")
    if version < SCHEMA_VERSION:
        raise StoreError(
            f"{path} has schema version {version}, older than this flowledger's {SCHEMA_VERSION}; "
            f"convert it once with `flowledger rebuild --db {path}` (or by starting `flowledger serve` on it)"
        )


class SqliteStore:
    """The embedded store: one SQLite file. ``readonly`` stores serve queries only.

    ``read_timeout_s``: the limit of one query of the query API, the viewer and the analytics (see
    :mod:`._deadline`); None or 0, none.
    """

    def __init__(
        self, path: Path | str, *, readers: int = 2, readonly: bool = False, read_timeout_s: float | None = None
    ) -> None:
        self.path = Path(path)
        self._readonly = readonly
        self._reader_count = max(1, readers)
        self._read_timeout_s = read_timeout_s or None
        self._deadlines: dict[aiosqlite.Connection, Deadline] = {}
        self._writer: aiosqlite.Connection | None = None
        self._readers: asyncio.Queue[aiosqlite.Connection] = asyncio.Queue()
        self._all_readers: list[aiosqlite.Connection] = []
        self._head_seq = 0
        self._head_hash = GENESIS_HASH
        self._frontier: Frontier | None = None
        self._statements: StatementThread | None = None

    # --- lifecycle -------------------------------------------------------

    async def open(self) -> None:
        """Connect, migrate (unless read-only), and load the chain's head."""
        if self._readonly:
            await asyncio.to_thread(_check_readable, self.path)
        else:
            await asyncio.to_thread(prepare_file, self.path)
            register_adapters()
            self._writer = await self._connect(readonly=False)
            self._head_seq, self._head_hash = await _head(self._writer)
        for _ in range(self._reader_count):
            conn = await self._connect(readonly=True)
            self._all_readers.append(conn)
            self._readers.put_nowait(conn)
            if self._read_timeout_s is not None:
                self._deadlines[conn] = deadline = Deadline()
                await conn.set_progress_handler(deadline, PROGRESS_STEPS)
        if self._writer is not None:
            self._statements = StatementThread(self._writer)

    async def _connect(self, *, readonly: bool) -> aiosqlite.Connection:
        target = f"file:{self.path}?mode=ro" if readonly else str(self.path)
        try:
            conn = await aiosqlite.connect(
                target,
                uri=readonly,
                isolation_level=None,
                timeout=BUSY_TIMEOUT_MS / 1000,
                cached_statements=STATEMENT_CACHE,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the database {self.path}: {exc}") from exc
        await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        await conn.execute(f"PRAGMA cache_size = -{_CACHE_KIB}")
        if readonly:
            conn.row_factory = sqlite3.Row  # queries read columns by name
        else:
            await conn.execute("PRAGMA journal_mode = WAL")
            await conn.execute("PRAGMA synchronous = NORMAL")
            await conn.execute("PRAGMA temp_store = MEMORY")
            # Deleted content is overwritten, so purged payloads are not left in free space.
            await conn.execute("PRAGMA secure_delete = ON")
        return conn

    async def close(self) -> None:
        """Close every connection; idempotent."""
        for conn in self._all_readers:
            await conn.close()
        self._all_readers.clear()
        self._deadlines.clear()
        self._readers = asyncio.Queue()
        if self._statements is not None and self._writer is not None:
            await stop_statements(self._writer, self._statements)
            self._statements = None
        if self._writer is not None:
            await self._writer.close()
            self._writer = None

    @property
    def head(self) -> tuple[int, str]:
        """The last committed ledger row: (seq, hex hash)."""
        return self._head_seq, self._head_hash.hex()

    async def _tree_at(self, conn: WriteConnection, size: int) -> Frontier:
        """A copy of the Merkle frontier at ``size`` entries (cached; reloaded when another writer appended)."""
        if self._frontier is None or self._frontier.size != size:
            self._frontier = await frontier_async(conn, size)
        return self._frontier.copy()

    def _write_conn(self) -> aiosqlite.Connection:
        if self._writer is None:
            raise StoreError("this store is read-only or closed")
        return self._writer

    @asynccontextmanager
    async def _reader(self, *, timed: bool = False) -> AsyncIterator[aiosqlite.Connection]:
        """A pooled read-only connection; ``timed``: its statements stop at the store's limit for one query
        (:mod:`._deadline`), raising :class:`~flowledger._exceptions.QueryTimeout`."""
        if not self._all_readers:
            raise StoreError("the store is not open")
        conn = await self._readers.get()
        limit, deadline = self._read_timeout_s, self._deadlines.get(conn)
        if timed and limit is not None and deadline is not None:
            deadline.start(limit)
        try:
            yield conn
        except sqlite3.OperationalError as exc:
            if timed and limit is not None and interrupted(exc):
                raise query_timeout(limit) from None
            raise
        finally:
            if deadline is not None:
                deadline.clear()
            self._readers.put_nowait(conn)

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        conn = self._write_conn()
        await conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            await conn.execute("ROLLBACK")
            raise
        await conn.execute("COMMIT")

    # --- writing ---------------------------------------------------------

    async def _stored_payload_hashes(self, conn: WriteConnection, ids: list[str]) -> dict[tuple[str, str], bytes]:
        """``(project or '', event_id)`` -> payload hash of the stored events with these ids, in every project."""
        found: dict[tuple[str, str], bytes] = {}
        for start in range(0, len(ids), _LOOKUP_CHUNK):
            part = ids[start : start + _LOOKUP_CHUNK]
            marks, params = in_list(part)
            sql = f"SELECT {LEDGER_PROJECT.format('')}, event_id, payload_hash FROM ledger WHERE event_id IN ({marks})"
            for project, event_id, digest in await conn.execute_fetchall(sql, params):
                found[project, event_id] = bytes(digest)
        return found

    async def append(self, events: Sequence[PreparedEvent]) -> list[tuple[EventOutcome, str | None]]:
        """Store new events in one transaction; see :meth:`Store.append`.

        The whole transaction runs on the writer connection's thread in one hand-off (:mod:`._on_thread`).
        Cancelled while it runs there, it is rolled back rather than committed (unless it committed already),
        all or nothing as before.
        """
        conn = self._write_conn()
        abandoned = threading.Event()
        try:
            work = partial(self._append, events=events, abandoned=abandoned)
            # The statement thread pays off only when the interpreter hands its lock over often (see
            # OVERLAP_MAX_SWITCH_INTERVAL_S); otherwise the writer runs its statements itself.
            overlap = sys.getswitchinterval() <= OVERLAP_MAX_SWITCH_INTERVAL_S
            results, head = await run_on_thread(conn, work, statements=self._statements if overlap else None)
        except asyncio.CancelledError:
            abandoned.set()  # the thread cannot be stopped: it rolls back instead of committing
            raise
        except sqlite3.OperationalError as exc:  # locked, busy, disk full, I/O: worth retrying
            raise _failed(f"storing {len(events)} events", exc) from exc
        except (sqlite3.Error, OverflowError, ValueError, TypeError) as exc:  # what the events hold
            raise UnstorableError(f"storing {len(events)} events failed: {exc}") from exc
        if head is not None:
            self._head_seq, self._head_hash, self._frontier = head
        return results

    async def _append(
        self, conn: WriteConnection, *, events: Sequence[PreparedEvent], abandoned: threading.Event
    ) -> tuple[list[tuple[EventOutcome, str | None]], tuple[int, bytes, Frontier] | None]:
        """:meth:`append`'s transaction: the outcomes, and the new head and tree when events were stored.

        The events are chained a statement's worth of rows at a time (:data:`CHUNK_ROWS`), each chunk's
        ledger and payload rows handed to the statement thread before the next chunk is hashed and folded
        (:mod:`._on_thread`). Rolled back, never committed, once ``abandoned`` is set (its caller was cancelled).
        """
        results: list[tuple[EventOutcome, str | None]] = [(EventOutcome.ACCEPTED, None)] * len(events)
        blobs: list[tuple[str, str]] = []
        nodes: list[tuple[int, int, bytes]] = []
        await conn.execute("BEGIN IMMEDIATE")
        try:
            stored = await self._stored_payload_hashes(conn, list({e.event_id for e in events}))
            digests = payload_hashes([e.body_bytes for e in events])
            fresh = new_events(events, digests, stored, results)
            projector = Projector(conn)
            await projector.load([events[i] for i in fresh])
            # Read the head inside the write transaction: another process appending to the
            # same file (a second receiver, a CLI) cannot fork the chain.
            seq, prev = await _head(conn)
            tree = await self._tree_at(conn, seq)
            received_at = now_ts()
            apply, leaf_prefix, as_fields = projector.apply, LEAF_PREFIX.copy, _AS_FIELDS  # skip global look-ups
            for start in range(0, len(fresh), CHUNK_ROWS):
                rows: list[tuple[Any, ...]] = []
                payloads: list[tuple[int, str]] = []
                leaves: list[bytes] = []
                add_row, add_payload, add_leaf = rows.append, payloads.append, leaves.append
                for i in fresh[start : start + CHUNK_ROWS]:
                    event = events[i]
                    run_id = event.run_id  # a run is (project, run_id): another project's run is another run
                    seq += 1
                    event.seq = seq
                    apply(event, event.producer_id, event.producer_seq)
                    digest = digests[i]
                    kind = event.kind._value_
                    entry = entry_bytes(
                        seq=seq,
                        event_id=event.event_id,
                        run_id=run_id,
                        kind=kind,
                        ts=event.ts,
                        project=event.project,
                        producer_id=event.producer_id,
                        producer_seq=event.producer_seq,
                        payload_sha256=digest,
                    )
                    state = leaf_prefix()  # entry_hash, inline: this runs once per event
                    state.update(prev)
                    state.update(entry)
                    new_hash = state.digest()
                    add_leaf(new_hash)  # the chain hash is the entry's Merkle leaf (format 3)
                    add_row(
                        (seq, event.event_id, run_id, kind, event.ts, received_at, digest, prev, new_hash,
                         event.project or "", event.producer_id, event.producer_seq, as_fields)
                    )  # fmt: skip
                    add_payload((seq, event.body))
                    if event.blobs:
                        blobs.extend(event.blobs)
                    prev = new_hash
                await insert_rows(conn, _INSERT_LEDGER, rows, width=13)
                await insert_rows(conn, _INSERT_PAYLOADS, payloads, width=2)
                nodes += tree.extend(leaves, keep_from_level=STORED_MIN_LEVEL)
            if fresh:
                await store_blobs(conn, blobs)
                if nodes:
                    await insert_rows(conn, _INSERT_NODES, nodes, width=3)
                await projector.flush()
            if abandoned.is_set():
                raise asyncio.CancelledError("the append was cancelled before its commit")
            await conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):  # a failed COMMIT may have ended the transaction itself
                await conn.execute("ROLLBACK")
            raise
        return results, ((seq, prev, tree) if fresh else None)

    async def sweep(self, *, now: str, stuck_after_s: float, heartbeats: int) -> list[str]:
        """Mark running runs without a sign of life as stuck (indexed on ``last_seen_at``).

        A run is silent when its last event's time (the producer's clock) is older than the threshold and
        the receiver has not stored an event of it within the threshold either (its own clock): a producer
        whose clock runs behind is not taken for dead. One whose clock runs ahead is found stuck that much later.
        """
        conn = self._write_conn()
        now_dt = epoch_s(now)
        cutoff = ts_from_epoch_s(now_dt - stuck_after_s)
        marked = []
        try:
            async with self._transaction():
                for row in await conn.execute_fetchall(SWEEP_SQL, (cutoff,)):
                    run = run_from_row(row)
                    threshold_s = max(stuck_after_s, heartbeats * (run.heartbeat_interval_s or 0.0))
                    if run.last_seen_at is None or epoch_s(run.last_seen_at) > now_dt - threshold_s:
                        continue
                    # Silent by its own clock, but heard from lately by ours: a producer whose clock is behind.
                    async with conn.execute(_LAST_HEARD_SQL, (run.run_id, run.project or "")) as cursor:
                        heard = (await cursor.fetchone() or (None,))[0]
                    if heard is not None and epoch_s(heard) > now_dt - threshold_s:
                        continue
                    reason = f"no event since {run.last_seen_at}: more than {threshold_s:g} s without a heartbeat"
                    if mark_stuck(run, reason):
                        marked.append(run)
                await save_runs(conn, marked)
        except sqlite3.Error as exc:
            raise _failed("sweeping for stuck runs", exc) from exc
        return [run.run_id for run in marked]

    async def purge(self, selection: PurgeSelection) -> PurgeReport:
        """Erase the selected runs and append the purge entry, in one transaction; then free the pages."""
        conn = self._write_conn()
        try:
            async with self._transaction():
                now = now_ts()
                work = await purge_runs(conn, selection, now=now)
                if not work.runs:
                    return PurgeReport(runs=[], events=0, purge_seq=None)
                seq, prev = await _head(conn)
                tree = await self._tree_at(conn, seq)
                seq += 1
                row, body = purge_entry(seq=seq, prev=prev, payload=work.payload, project=selection.project, now=now)
                new_hash = row[-1]
                ledger_row = (*row[:6], *row[7:], selection.project or "", None, None, _AS_FIELDS)  # as its fields
                await conn.execute(f"{_INSERT_LEDGER} VALUES ({', '.join('?' * len(ledger_row))})", ledger_row)
                await conn.execute(f"{_INSERT_PAYLOADS} VALUES (?, ?)", (seq, body))
                nodes = stored_nodes(tree.append(new_hash))  # a format-3 entry's leaf is its chain hash
                if nodes:
                    await insert_rows(conn, _INSERT_NODES, nodes, width=3)
        except sqlite3.Error as exc:
            raise _failed("purging runs", exc) from exc
        self._head_seq, self._head_hash, self._frontier = seq, new_hash, tree
        try:
            # As one statement, sqlite3 steps it once and frees one page; a script runs it to the end.
            await conn.executescript("PRAGMA incremental_vacuum;")
            await conn.execute_fetchall("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:  # giving pages back is best effort: the purge itself is committed
            pass
        return PurgeReport(runs=work.runs, events=work.events, purge_seq=seq)

    async def tree_head(self) -> TreeHead:
        """The Merkle tree's size and root now."""
        return await self._sync_read(tree_head)

    async def consistency_proof(self, old_size: int) -> tuple[TreeHead, list[bytes]]:
        """The head now and the proof that the tree of ``old_size`` entries is its prefix."""
        return await self._sync_read(lambda c: consistency(c, old_size))

    async def run_proof(self, run_id: str, tree_size: int, *, project: str | None = None) -> list[EntryProof]:
        """A run's entries among the first ``tree_size``, with audit paths; [] for another project's run."""
        async with self._reader() as conn:
            space = one_namespace(run_id, project, await conn.execute_fetchall(NAMESPACES_SQL, (run_id,)))
        if project is not None and space is None:
            return []
        try:
            return await self._sync_read(lambda c: run_proof(c, run_id, space, tree_size))
        except LookupError as exc:
            raise StoreError(f"cannot prove run {run_id}: {exc}") from exc

    async def iter_run_proof(
        self, run_id: str, tree_size: int, *, project: str | None = None
    ) -> AsyncIterator[list[EntryProof]]:
        """:meth:`run_proof` a chunk of entries at a time (:data:`~._tree.PROOF_CHUNK`), each read on its own."""
        async with self._reader() as conn:
            space = one_namespace(run_id, project, await conn.execute_fetchall(NAMESPACES_SQL, (run_id,)))
        if project is not None and space is None:
            return
        try:
            async for chunk in iter_run_proof(self._sync_read, run_id, space, tree_size):
                yield chunk
        except LookupError as exc:
            raise StoreError(f"cannot prove run {run_id}: {exc}") from exc

    async def daily_totals(self, *, project: str | None = None, workflow_id: str | None = None) -> list[DailyTotal]:
        """Runs per workflow, project, day and status, purged ones included."""
        clauses, params = [], []
        if project is not None:
            clauses.append("project = ?")
            params.append(project)
        if workflow_id is not None:
            clauses.append("workflow_id = ?")
            params.append(workflow_id)
        where = "WHERE " + " AND ".join(clauses) if clauses else ""
        async with self._reader(timed=True) as conn:
            rows = await conn.execute_fetchall(DAILY_TOTALS_SQL.format(where=where), params)
        return [daily_total(tuple(row)) for row in rows]

    async def run_stats(self, query: StatsQuery) -> list[dict[str, Any]]:
        """Statistics per group (:mod:`._stats`), most runs first."""
        async with self._reader(timed=True) as conn:
            return await stats_groups(conn, query)

    async def error_groups(self, query: ErrorGroupQuery) -> list[dict[str, Any]]:
        """Error groups matching ``query``, biggest first."""
        async with self._reader(timed=True) as conn:
            return await error_groups(conn, query)

    async def rebuild(self) -> Drift:
        """Refold every projection from the ledger in one transaction; report what differed."""
        conn = self._write_conn()
        try:
            async with temp_on_disk(conn), self._transaction():  # the projections' copies on disk, not in memory
                return await refold(conn)
        except sqlite3.Error as exc:
            raise _failed("rebuilding the projections", exc) from exc

    # --- reading ---------------------------------------------------------

    async def list_runs(self, query: RunQuery) -> RunPage:
        """A page of runs, newest first (stable order: start time, then run id); keyset after a cursor.

        A search that looks like the start of a run id and is one lists those runs; any other is full text.
        """
        prefix = None if query.search is None else run_id_search(query.search)
        if prefix is not None:
            async with self._reader(timed=True) as conn:
                found = await conn.execute_fetchall(
                    "SELECT 1 FROM runs WHERE run_id >= ? AND run_id < ? AND (? IS NULL OR project = ?) LIMIT 1",
                    (prefix, prefix + "\U0010ffff", query.project, query.project),
                )
            if list(found):
                query = dataclasses.replace(query, search=None, run_id_prefix=prefix)
        page_sql, page_params = run_page_sql(query, fetch=query.limit + 1)
        count_sql, count_params = runs_count_sql(query, cap=TOTAL_COUNT_MAX)
        matched = (query.search is not None or bool(query.attributes)) and query.cursor is None and not query.offset
        async with self._snapshot(timed=True) as conn:  # the page and its count of one state, whatever commits
            rows = list(await conn.execute_fetchall(page_sql, page_params))
            if matched:  # the first page of a search counted its runs in the same pass
                counted = int(rows[0][MATCHED_COLUMN]) if rows else 0
            else:
                counted = int(next(iter(await conn.execute_fetchall(count_sql, count_params)))[0])
            hits_capped = query.search is not None and (
                int(next(iter(await conn.execute_fetchall(HITS_CAPPED_SQL, (fts_query(query.search),))))[0])
                > SEARCH_HITS_MAX
            )
        runs = [run_json(row) for row in rows[: query.limit]]
        more = len(rows) > query.limit
        after = RunPageCursor.of(runs[-1]) if more else None
        return RunPage(
            runs=runs,
            total=min(counted, TOTAL_COUNT_MAX),
            total_capped=counted > TOTAL_COUNT_MAX or hits_capped,
            next=after,
        )

    async def get_run(self, run_id: str, *, project: str | None = None) -> dict[str, Any] | None:
        """One run with its payloads and node attempts in start order."""
        async with self._reader(timed=True) as conn:
            return await _run_with_nodes(conn, run_id, project)

    async def iter_runs(self, query: RunQuery, *, with_nodes: bool) -> AsyncIterator[dict[str, Any]]:
        """Every matching run, newest first, read in chunks so memory stays flat.

        ``with_nodes`` (the JSONL export): each run also has its input, output and attributes, and its nodes.
        """
        where, params = runs_where(query)
        select = f"SELECT {RUN_SELECT} FROM runs r"
        if with_nodes:
            select = (
                f"SELECT {RUN_SELECT}, {RUN_PAYLOADS_SELECT} FROM runs r LEFT JOIN payloads ls ON ls.seq = r.input_seq "
                "LEFT JOIN payloads lf ON lf.seq = r.output_seq"
            )
        cursor: RunPageCursor | None = None
        async with self._reader() as conn:
            while True:
                page_where, page_params = where, list(params)
                if cursor is not None:
                    after, after_params = keyset_condition(cursor)
                    page_where = (where or " WHERE 1") + after
                    page_params += after_params
                rows = list(
                    await conn.execute_fetchall(
                        f"{select}{page_where} {NEWEST_FIRST} LIMIT ?",
                        [*page_params, _STREAM_CHUNK],
                    )
                )
                if not rows:
                    return
                for row in rows:
                    run = run_json(row, detail=with_nodes)
                    if with_nodes:
                        run["nodes"] = await _nodes_of(conn, run["run_id"], run["project"] or "", logs_inline=None)
                    yield run
                cursor = RunPageCursor.of(run_json(rows[-1]))

    async def stats(self, *, project: str | None = None, silent_before: str | None = None) -> Stats:
        """Run counts by status, ledger size, producers, lost events and silent producers."""
        scope, params = ("WHERE project = ?", [project]) if project is not None else ("", [])
        silent_scope = "AND p.project = ?" if project is not None else ""
        async with self._reader(timed=True) as conn:
            by_status = {
                str(s): int(n)
                for s, n in await conn.execute_fetchall(f"SELECT status, count(*) FROM runs {scope} GROUP BY 1", params)
            }
            # max_seq - events + 1 in this order: max_seq may be 2**63 - 1, and SQLite integers stop there.
            rows = await conn.execute_fetchall(
                "SELECT count(*), coalesce(sum(max(0, min(max_seq - events + 1, events))), 0), "
                f"coalesce(sum(max_seq - events + 1 > 0), 0), coalesce(sum(events), 0) FROM producers {scope}",
                params,
            )
            producers, lost, gappy, scoped_events = next(iter(rows))
            ledger = (
                int(scoped_events)
                if project is not None
                else await _count(conn, "SELECT coalesce(max(seq), 0) FROM ledger")
            )
            silent = 0
            if silent_before is not None:
                silent = await _count_params(
                    conn,
                    "SELECT count(*) FROM producers p JOIN runs r ON r.run_id = p.last_run_id "
                    "AND ifnull(r.project, '') = ifnull(p.project, '') "
                    f"WHERE p.last_ts < ? AND r.status IN ('{RunStatus.RUNNING.value}', '{RunStatus.STUCK.value}') "
                    f"{silent_scope}",
                    [silent_before, *params],
                )
        return Stats(
            runs_by_status={s.value: by_status.get(s.value, 0) for s in RunStatus},
            ledger_events=ledger,
            producers=int(producers),
            events_lost=max(0, int(lost)),
            producers_with_gaps=int(gappy),
            producers_silent_unfinished=silent,
        )

    async def verify(self, checkpoints: Sequence[tuple[int, str]] = ()) -> VerifyReport:
        """Walk the chain from its origin; also check ``(seq, hex hash)`` checkpoints (see :func:`verify_ledger`)."""
        async with self._reader() as conn:
            return await verify_ledger(_VerifyReads(conn), checkpoints)

    # --- spans (OTLP) ----------------------------------------------------

    async def store_spans(self, spans: Sequence[SpanRow]) -> int:
        """Insert spans not stored yet for their project; return how many were new."""
        if not spans:
            return 0
        conn = self._write_conn()
        head = f"INSERT OR IGNORE INTO spans ({', '.join(SPAN_COLUMNS)})"  # once per (trace, span, project)
        try:
            async with self._transaction():
                before = conn.total_changes
                rows = [span.values() for span in spans]
                await insert_rows(conn, head, rows, width=len(SPAN_COLUMNS))
                return conn.total_changes - before
        except sqlite3.OperationalError as exc:
            raise _failed(f"storing {len(spans)} spans", exc) from exc
        except (sqlite3.Error, OverflowError, ValueError, TypeError) as exc:
            raise UnstorableError(f"storing {len(spans)} spans failed: {exc}") from exc

    # --- sampling -----------------------------------------------------------

    async def sampled_out(self, *, project: str | None = None) -> dict[str, int]:
        """Runs dropped by sampling, per workflow id."""
        async with self._reader(timed=True) as conn:
            rows = await conn.execute_fetchall(SAMPLED_OUT_SQL, (project, project))
        return {str(workflow_id): int(runs) for workflow_id, runs in rows}

    # --- log lines ---------------------------------------------------------

    async def append_logs(self, rows: Sequence[LogRow], drops: Sequence[LogDrop] = ()) -> int:
        """Insert log lines and add drop counts in one transaction; return how many lines were stored."""
        if not rows and not drops:
            return 0
        conn = self._write_conn()
        try:
            async with self._transaction():
                await append_log_rows(conn, rows, drops)
        except sqlite3.OperationalError as exc:
            raise _failed(f"storing {len(rows)} log lines", exc) from exc
        except (sqlite3.Error, OverflowError, ValueError, TypeError) as exc:
            raise UnstorableError(f"storing {len(rows)} log lines failed: {exc}") from exc
        return len(rows)

    async def attempt_logs(
        self,
        run_id: str,
        span_id: str | None,
        *,
        project: str | None = None,
        min_level: int = 0,
        after_id: int = 0,
        limit: int = LOG_PAGE_MAX,
    ) -> AttemptLogs | None:
        """One attempt's lines in arrival order, a page at a time (an index range of ``logs_by_attempt``)."""
        limit = max(1, min(limit, LOG_PAGE_MAX))
        async with self._reader(timed=True) as conn:
            space = one_namespace(run_id, project, await conn.execute_fetchall(NAMESPACES_SQL, (run_id,)))
            if space is None:
                return None
            span = "span_id = ?" if span_id is not None else "span_id IS NULL"
            span_params: list[Any] = [span_id] if span_id is not None else []
            rows = list(
                await conn.execute_fetchall(
                    f"{LOG_SELECT} WHERE {run_scope()} AND {span} AND id > ? AND level >= ? ORDER BY id LIMIT ?",
                    [run_id, space, *span_params, after_id, min_level, limit + 1],
                )
            )
            drops = list(
                await conn.execute_fetchall(
                    f"SELECT lines, bytes FROM log_drops WHERE {run_scope()} AND span_id = ?",
                    (run_id, space, span_id or ""),
                )
            )
        page = AttemptLogs(lines=[log_json(row) for row in rows[:limit]], more=len(rows) > limit)
        if drops:
            page.dropped_lines, page.dropped_bytes = int(drops[0][0]), int(drops[0][1])
        return page

    async def get_trace(self, trace_id: str, *, project: str | None = None) -> tuple[list[dict[str, Any]], TraceLinks]:
        """The spans of one trace in start order, with the runs and node attempts they belong to."""
        scope, params = (" AND project = ?", [project]) if project is not None else ("", [])
        async with self._reader(timed=True) as conn:
            rows = await conn.execute_fetchall(
                f"SELECT {', '.join(SPAN_COLUMNS)} FROM spans WHERE trace_id = ?{scope} ORDER BY start_ns, span_id",
                [trace_id, *params],
            )
            run_rows = await conn.execute_fetchall(
                "SELECT r.run_id, json_extract(sp.body, '$.data.span_id'), json_extract(fp.body, '$.data.span_id'), "
                "ifnull(r.project, '') FROM runs r "
                f"LEFT JOIN ledger s ON s.event_id = r.started_event_id AND {LEDGER_PROJECT.format('s.')} = "
                "ifnull(r.project, '') LEFT JOIN payloads sp ON sp.seq = s.seq "
                f"LEFT JOIN ledger f ON f.event_id = r.finished_event_id AND {LEDGER_PROJECT.format('f.')} = "
                "ifnull(r.project, '') LEFT JOIN payloads fp ON fp.seq = f.seq "
                f"WHERE r.trace_id = ?{scope.replace('project', 'r.project')} ORDER BY r.started_at, r.run_id",
                [trace_id, *params],
            )
            run_ids = [str(row[0]) for row in run_rows]
            keys = [(str(row[0]), str(row[3])) for row in run_rows]
            nodes: dict[str, dict[str, Any]] = {}
            for start in range(0, len(keys), _LOOKUP_CHUNK):
                part = keys[start : start + _LOOKUP_CHUNK]
                for run_id, span_id, node_id, attempt, item in await conn.execute_fetchall(
                    "SELECT run_id, span_id, node_id, attempt, item FROM node_runs "
                    f"WHERE (run_id, ifnull(project, '')) IN ({', '.join(['(?, ?)'] * len(part))})",
                    [value for key in part for value in key],
                ):
                    nodes[span_id] = {"run_id": run_id, "node_id": node_id, "attempt": attempt, "item": item}
        runs = {str(span): str(run_id) for run_id, *spans, _space in run_rows for span in spans if span}
        return [span_json(row) for row in rows], TraceLinks(runs=runs, nodes=nodes, run_ids=run_ids)

    # --- the viewer's queries ---------------------------------------------

    async def _sync_read(self, work: Callable[[sqlite3.Connection], _T], *, timed: bool = False) -> _T:
        """Run ``work`` on a fresh read-only connection in a worker thread (the viewer's SQL is synchronous);
        ``timed``: its statements stop at the store's limit for one query (:mod:`._deadline`)."""
        limit = self._read_timeout_s if timed else None

        def job() -> _T:
            with viewer_sql.open_reader(self.path) as conn:
                if limit is not None:
                    deadline = Deadline()
                    conn.set_progress_handler(deadline, PROGRESS_STEPS)
                    deadline.start(limit)
                return work(conn)

        try:
            return await asyncio.to_thread(job)
        except sqlite3.OperationalError as exc:
            if limit is not None and interrupted(exc):
                raise query_timeout(limit) from None
            if exc.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):  # the writer holds it
                raise StoreUnavailable(str(exc)) from exc
            raise StoreError(str(exc)) from exc
        except sqlite3.Error as exc:
            raise StoreError(str(exc)) from exc

    async def ledger_size(self) -> int:
        """The last ledger row's sequence number (0 when empty)."""
        return await self._sync_read(viewer_sql.ledger_size)

    async def viewer_runs(
        self,
        run_filter: RunFilter,
        *,
        limit: int,
        cursor: RunPageCursor | None = None,
        direction: PageDirection = PageDirection.OLDER,
    ) -> RunListPage:
        """A keyset page of runs, newest first; see :meth:`Store.viewer_runs`."""
        return await self._sync_read(
            lambda c: viewer_sql.viewer_runs(c, run_filter, limit=limit, cursor=cursor, direction=direction),
            timed=True,
        )

    async def run_summary(
        self, run_filter: RunFilter, *, percentile_sample_max: int = PERCENTILE_SAMPLE_MAX
    ) -> dict[str, Any]:
        """Summary cards over every matching run; see :func:`~flowledger.receiver.store._viewer_query.run_summary`."""
        return await self._sync_read(
            lambda c: viewer_sql.run_summary(c, run_filter, percentile_sample_max=percentile_sample_max),
            timed=True,
        )

    async def facets(self, *, project: str | None) -> dict[str, Any]:
        """Workflows seen, trigger types, statuses, modes."""
        return await self._sync_read(lambda c: viewer_sql.facets(c, project=project), timed=True)

    async def run_header(self, run_id: str, *, project: str | None) -> dict[str, Any] | None:
        """One run without its nodes, with an overview of its attempts; its error names its group."""
        run = await self._sync_read(lambda c: viewer_sql.run_header(c, run_id, project=project), timed=True)
        return None if run is None else with_fingerprints(run)

    async def attempts_page(
        self, run_id: str, *, project: str | None, offset: int, limit: int
    ) -> dict[str, Any] | None:
        """A page of a run's node attempts in start order, without payloads."""
        return await self._sync_read(
            lambda c: viewer_sql.attempts_page(c, run_id, project=project, offset=offset, limit=limit),
            timed=True,
        )

    async def attempt_detail(self, run_id: str, span_id: str, *, project: str | None) -> dict[str, Any] | None:
        """One node attempt with its payloads."""
        return await self._sync_read(
            lambda c: viewer_sql.attempt_detail(c, run_id, span_id, project=project), timed=True
        )

    async def node_payload(self, run_id: str, span_id: str, kind: PayloadKind, *, project: str | None) -> str | None:
        """One payload of a node attempt as stored JSON text."""
        return await self._sync_read(
            lambda c: viewer_sql.node_payload(c, run_id, span_id, kind, project=project), timed=True
        )

    async def run_payload(self, run_id: str, kind: PayloadKind, *, project: str | None) -> str | None:
        """The input or output of a run as stored JSON text."""
        return await self._sync_read(lambda c: viewer_sql.run_payload(c, run_id, kind, project=project), timed=True)

    # --- integrity ---------------------------------------------------------

    @asynccontextmanager
    async def _snapshot(self, *, timed: bool = False) -> AsyncIterator[aiosqlite.Connection]:
        """A reader inside one read transaction: every query sees the same committed state (``timed``: as
        :meth:`_reader`)."""
        async with self._reader(timed=timed) as conn:
            await conn.execute("BEGIN")
            try:
                yield conn
            finally:
                await conn.execute("COMMIT")

    async def coverage(self, query: CoverageQuery) -> CoverageReport:
        """Missing core events, counted on one snapshot."""
        try:
            async with self._snapshot() as conn:
                return await coverage(conn, query)
        except sqlite3.Error as exc:
            raise StoreError(f"checking coverage failed: {exc}") from exc

    async def reconcile(self, scope: ReconcileScope, *, repair: bool = False) -> ReconcileReport:
        """Projections against a fresh fold, a chunk of runs per snapshot (per write transaction with repair)."""
        try:
            return await reconcile(self._transaction if repair else self._snapshot, scope, repair=repair)
        except sqlite3.Error as exc:
            raise StoreError(f"reconciling the projections failed: {exc}") from exc

    async def resume_evidence(self, run_id: str, *, project: str | None = None) -> dict[str, Any] | None:
        """A run's outputs for a resume, each checked against the ledger (see :mod:`._evidence`)."""
        return await self._sync_read(lambda c: resume_evidence(c, run_id, project))

    async def resume_chain(self, run_id: str, *, project: str | None = None) -> list[dict[str, Any]] | None:
        """The original run, then each resume after the run it resumes (see :mod:`._evidence`)."""
        return await self._sync_read(lambda c: resume_chain(c, run_id, project))

    # --- OTLP logs and metrics -------------------------------------------

    async def _write_otlp(self, what: str, work: Callable[[aiosqlite.Connection], Awaitable[_T]]) -> _T:
        try:
            async with self._transaction() as conn:
                return await work(conn)
        except sqlite3.OperationalError as exc:
            raise _failed(f"storing {what}", exc) from exc
        except (sqlite3.Error, OverflowError, ValueError, TypeError) as exc:
            raise UnstorableError(f"storing {what} failed: {exc}") from exc

    async def store_metric_points(
        self, points: Sequence[MetricPointRow], *, max_series: int, max_points: int
    ) -> MetricsOutcome:
        """Store metric points and their new series; see :meth:`Store.store_metric_points`."""
        if not points:
            return MetricsOutcome(stored=0, duplicates=0, over_series_limit=0)
        return await self._write_otlp(
            f"{len(points)} metric points",
            lambda c: insert_metric_points(c, points, max_series=max_series, max_points=max_points),
        )

    async def metric_series(
        self,
        *,
        name: str | None,
        project: str | None,
        since_ns: int | None = None,
        until_ns: int | None = None,
        max_series: int,
        max_points: int,
    ) -> list[dict[str, Any]]:
        """Stored metric series; see :meth:`Store.metric_series`."""
        async with self._reader(timed=True) as conn:
            return await select_metric_series(
                conn,
                name=name,
                project=project,
                since_ns=since_ns,
                until_ns=until_ns,
                max_series=max_series,
                max_points=max_points,
            )

    async def store_logs(self, rows: Sequence[OtlpLogRow], *, max_records: int) -> int:
        """Store OTLP log records; see :meth:`Store.store_logs`."""
        if not rows:
            return 0
        return await self._write_otlp(
            f"{len(rows)} log records", lambda c: insert_logs(c, rows, max_records=max_records)
        )

    async def link_otlp_logs(self, *, since: str) -> int:
        """Link OTLP log records whose run arrived later; see :meth:`Store.link_otlp_logs`."""
        return await self._write_otlp("linked log records", lambda c: link_pending(c, since=since))

    async def otlp_logs(
        self, *, trace_id: str | None = None, run_id: str | None = None, project: str | None, limit: int
    ) -> list[dict[str, Any]] | None:
        """OTLP log records of a trace or a run; see :meth:`Store.otlp_logs`."""
        async with self._reader(timed=True) as conn:
            return await select_logs(conn, trace_id=trace_id, run_id=run_id, project=project, limit=limit)

    async def custom_metrics(self, query: CustomMetricQuery) -> list[dict[str, Any]]:
        """Custom metric totals by workflow, node, name, labels and hour, newest hour first."""
        async with self._reader(timed=True) as conn:
            return await query_custom_metrics(conn, query)


_UNAVAILABLE: Final = frozenset(
    {
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_CANTOPEN,
    }
)
"""Primary result codes of a write the file cannot take now (locked, its disk full or read-only, an I/O error):
the same request may succeed once that is mended."""


def _failed(what: str, exc: sqlite3.Error) -> StoreError:
    """The error for a failed write: :class:`StoreUnavailable` (answered 503 with Retry-After) when the file cannot
    take writes now, else a :class:`StoreError`."""
    unavailable = getattr(exc, "sqlite_errorcode", 0) & 0xFF in _UNAVAILABLE
    return (StoreUnavailable if unavailable else StoreError)(f"{what} failed: {exc}")


async def _head(conn: WriteConnection) -> tuple[int, bytes]:
    """The last ledger row's (seq, hash), or (0, GENESIS_HASH) for an empty ledger."""
    for seq, digest in await conn.execute_fetchall("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1"):
        return int(seq), bytes(digest)
    return 0, GENESIS_HASH


def entry_rows(rows: Iterable[Sequence[Any]]) -> list[EntryRow]:
    """Rows of :data:`_VERIFY_SQL` as ``verify`` reads them (:data:`~._verify.EntryRow`), each entry's bytes read
    or rebuilt from its fields."""
    return [(*row[1:6], entry_of(row[:10]), *row[9:], row[6], row[7], row[8]) for row in rows]


class _VerifyReads:
    """What ``verify`` reads, on one reader connection (see :class:`~._verify.VerifyReads`)."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def origin(self) -> tuple[int, bytes]:
        for seq, digest in await self._conn.execute_fetchall("SELECT v1_head_seq, v1_head_hash FROM ledger_origin"):
            return int(seq), bytes(digest)
        return 0, GENESIS_HASH

    async def entries(self, after_seq: int, limit: int) -> Sequence[EntryRow]:
        return entry_rows(await self._conn.execute_fetchall(_VERIFY_SQL, (after_seq, limit)))

    async def tree_nodes(self, after: tuple[int, int], limit: int) -> Sequence[TreeNodeRow]:
        return list(
            await self._conn.execute_fetchall(  # type: ignore[arg-type]
                "SELECT level, idx, hash FROM merkle_nodes WHERE (level, idx) > (?, ?) ORDER BY level, idx LIMIT ?",
                (*after, limit),
            )
        )

    async def format1_hashes(self, after_seq: int, limit: int) -> Sequence[Format1HashRow]:
        return list(
            await self._conn.execute_fetchall(  # type: ignore[arg-type]
                "SELECT v.seq, v.hash, l.event_id, CAST(p.body AS BLOB) FROM ledger_v1 v "
                "LEFT JOIN ledger l ON l.seq = v.seq LEFT JOIN payloads p ON p.seq = v.seq "
                "WHERE v.seq > ? ORDER BY v.seq LIMIT ?",
                (after_seq, limit),
            )
        )

    async def blobs(self, after: str, limit: int) -> Sequence[tuple[str, bytes]]:
        rows = await self._conn.execute_fetchall(
            "SELECT sha256, CAST(body AS BLOB) FROM blobs WHERE sha256 > ? ORDER BY sha256 LIMIT ?", (after, limit)
        )
        return [(str(key), bytes(body)) for key, body in rows]

    async def blob_owner(self, key: str) -> int | None:
        for (seq,) in await self._conn.execute_fetchall(
            "SELECT min(seq) FROM payloads WHERE instr(body, ?) > 0", (key,)
        ):
            return None if seq is None else int(seq)
        return None


async def _count(conn: aiosqlite.Connection, sql: str) -> int:
    rows = await conn.execute_fetchall(sql)
    return int(next(iter(rows))[0])


async def _count_params(conn: aiosqlite.Connection, sql: str, params: Sequence[Any]) -> int:
    rows = await conn.execute_fetchall(sql, params)
    return int(next(iter(rows))[0])


async def _nodes_of(
    conn: aiosqlite.Connection, run_id: str, space: str, *, logs_inline: int | None
) -> list[dict[str, Any]]:
    """A run's attempts in start order, each with its log lines (at most ``logs_inline`` of them; None: all)."""
    rows = await conn.execute_fetchall(
        f"SELECT {NODE_SELECT} WHERE {run_scope('n.')} ORDER BY n.started_at, n.attempt, n.item, n.span_id",
        (run_id, space),
    )
    nodes = [node_json(row) for row in rows]
    await _attach_logs(conn, run_id, space, nodes, logs_inline)
    return nodes


async def _attach_logs(
    conn: aiosqlite.Connection, run_id: str, space: str, nodes: list[dict[str, Any]], inline: int | None
) -> None:
    """Give every attempt its ``logs``, ``logs_url`` and ``logs_dropped``."""
    lines: dict[str | None, list[dict[str, Any]]] = {}
    more: set[str | None] = set()
    cap = -1 if inline is None else inline + 1
    sql = (
        "SELECT * FROM (SELECT id, span_id, ts, level, level_name, logger, message, exception, trace_id, "
        "log_span_id, repeats, source, attributes, row_number() OVER (PARTITION BY span_id ORDER BY id) AS nth "
        f"FROM logs WHERE {run_scope()}) WHERE ? < 0 OR nth <= ? ORDER BY id"
    )
    for row in await conn.execute_fetchall(sql, (run_id, space, cap, cap)):
        span_id = row[1]
        if inline is not None and int(row[13]) > inline:
            more.add(span_id)
            continue
        lines.setdefault(span_id, []).append(log_json(row))
    drops = {
        str(row[0]): {"lines": int(row[1]), "bytes": int(row[2])}
        for row in await conn.execute_fetchall(
            f"SELECT span_id, lines, bytes FROM log_drops WHERE {run_scope()}", (run_id, space)
        )
    }
    for node in nodes:
        span_id = node["span_id"]
        node["logs"] = lines.get(span_id, [])
        node["logs_url"] = f"/api/runs/{run_id}/attempts/{span_id}/logs" if span_id in more else None
        node["logs_dropped"] = drops.get(span_id)


async def _run_with_nodes(conn: aiosqlite.Connection, run_id: str, project: str | None) -> dict[str, Any] | None:
    sql = (
        f"SELECT {RUN_SELECT}, {RUN_PAYLOADS_SELECT} FROM runs r "
        "LEFT JOIN payloads ls ON ls.seq = r.input_seq LEFT JOIN payloads lf ON lf.seq = r.output_seq "
        f"WHERE {run_scope('r.')}"
    )
    space = one_namespace(run_id, project, await conn.execute_fetchall(NAMESPACES_SQL, (run_id,)))
    if space is None:
        return None
    rows = list(await conn.execute_fetchall(sql, (run_id, space)))
    if not rows:
        return None
    run = run_json(rows[0], detail=True)
    run["nodes"] = await _nodes_of(conn, run_id, space, logs_inline=LOGS_INLINE_MAX)
    listed, listed_params, counted, counted_params = children_sql(run_id, space)
    children = list(await conn.execute_fetchall(listed, listed_params))
    count = int(next(iter(await conn.execute_fetchall(counted, counted_params)))[0])
    run["children"] = children_json(children, count)
    return with_fingerprints(run)
