"""The PostgreSQL engine of the :class:`~flowledger.receiver.store._protocol.Store` protocol.

Many receivers may share one database. An asyncpg connection pool serves
each of them; every commit group that extends the ledger (an append, a
purge) first takes one transaction-scoped advisory lock, the chain's single
serialisation point, then reads the chain's head and appends after it, so
the hash chain and the Merkle tree stay linear whichever receiver commits.
Exactly-once holds across receivers: event ids are checked under that lock,
and ``ledger.event_id`` is unique besides. Run and node-attempt projections
are folded in the same transaction as the entries. The sweeper runs on one
receiver at a time: the one holding a session-level advisory lock on a
dedicated connection; when its process dies the lock goes with its session
and the next receiver to sweep takes over.

Every method of the protocol is built, and the Store conformance suite runs
each of its tests on this engine as on SQLite. A ledger converted from
format 1 on SQLite and copied here by ``flowledger migrate`` verifies as it
does there (:mod:`._verify`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any, Final, TypeVar

import asyncpg

from flowledger._exceptions import ConfigError, StoreError, StoreUnavailable, UnstorableError
from flowledger._wire import RunStatus, now_ts
from flowledger.receiver.store._canonical import GENESIS_HASH
from flowledger.receiver.store._children import CHILDREN_COUNT_MAX, CHILDREN_LISTED_MAX, children_json
from flowledger.receiver.store._custom_metrics import CustomMetricQuery
from flowledger.receiver.store._deadline import query_timeout
from flowledger.receiver.store._entry import entry_bytes, entry_hash, payload_hashes, purge_entry
from flowledger.receiver.store._error_groups import ErrorGroupQuery, with_fingerprints
from flowledger.receiver.store._event import PreparedEvent
from flowledger.receiver.store._integrity import CoverageQuery, CoverageReport, ReconcileReport, ReconcileScope
from flowledger.receiver.store._logs import LOG_PAGE_MAX, LOGS_INLINE_MAX, AttemptLogs, LogDrop, LogRow
from flowledger.receiver.store._merkle import STORED_MIN_LEVEL, Frontier
from flowledger.receiver.store._namespace import one_namespace
from flowledger.receiver.store._once import new_events
from flowledger.receiver.store._otlp_logs import OtlpLogRow
from flowledger.receiver.store._otlp_metrics import MetricPointRow, MetricsOutcome
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
from flowledger.receiver.store._purge import DAILY_TOTALS_SQL, daily_total
from flowledger.receiver.store._query import keyset, node_json, run_json
from flowledger.receiver.store._reconcile import reconcile
from flowledger.receiver.store._records import (
    NODE_FIELDS,
    NODE_PAYLOAD_SQL,
    RUN_FIELDS,
    RUN_PAYLOAD_SQL,
    detail_fields,
    select_list,
    stored_fields,
)
from flowledger.receiver.store._search import run_id_search
from flowledger.receiver.store._spans import SpanRow, TraceLinks
from flowledger.receiver.store._stats import StatsQuery
from flowledger.receiver.store._views import (
    PERCENTILE_SAMPLE_MAX,
    PageDirection,
    PayloadKind,
    RunFilter,
    RunListPage,
    RunPageCursor,
)
from flowledger.receiver.store.postgres._coverage import pg_coverage
from flowledger.receiver.store.postgres._custom_metrics import pg_custom_metrics
from flowledger.receiver.store.postgres._dialect import numbered, payload_sql
from flowledger.receiver.store.postgres._error_groups import pg_error_groups
from flowledger.receiver.store.postgres._evidence import pg_resume_chain, pg_resume_evidence
from flowledger.receiver.store.postgres._logs import append_pg_logs, attach_pg_logs, pg_attempt_logs
from flowledger.receiver.store.postgres._namespace import PG_NAMESPACES_SQL, PG_SPACE, pg_run_scope
from flowledger.receiver.store.postgres._otlp_logs import link_pg_otlp_logs, pg_otlp_logs, store_pg_otlp_logs
from flowledger.receiver.store.postgres._otlp_metrics import pg_metric_series, store_pg_metric_points
from flowledger.receiver.store.postgres._projector import PgProjector, columns_of
from flowledger.receiver.store.postgres._purge import pg_purge_runs
from flowledger.receiver.store.postgres._rebuild import pg_refold
from flowledger.receiver.store.postgres._reconcile import PG_RECONCILE_IO
from flowledger.receiver.store.postgres._schema import check_pg_version, migrate_postgres
from flowledger.receiver.store.postgres._search import pg_runs_where, pg_search_hits
from flowledger.receiver.store.postgres._spans import pg_trace, store_pg_spans
from flowledger.receiver.store.postgres._stats import pg_stats_groups
from flowledger.receiver.store.postgres._sweep import SweeperLease, pg_mark_stuck
from flowledger.receiver.store.postgres._tree import load_frontier, pg_consistency, pg_iter_run_proof, pg_run_proof
from flowledger.receiver.store.postgres._url import check_postgres_url, redacted, unreadable_url_message
from flowledger.receiver.store.postgres._verify import pg_verify
from flowledger.receiver.store.postgres._viewer import (
    check_run_payload_kind,
    pg_attempt_detail,
    pg_attempts_overview,
    pg_attempts_page,
    pg_facets,
    pg_node_payload,
    pg_run_header,
    pg_run_summary,
    pg_viewer_runs,
)

__all__ = ["CHAIN_LOCK", "PostgresStore"]

_T = TypeVar("_T")
CHAIN_LOCK: Final = 0x666C6F77636861  # "flowcha": the chain's one serialisation point
POOL_MIN: Final = 1
POOL_MAX: Final = 10
_STREAM_CHUNK: Final = 2_000
_REBUILD_CHUNK: Final = 5_000
_NEWEST_FIRST: Final = "ORDER BY r.started_at DESC NULLS LAST, r.run_id DESC, r.project NULLS FIRST"
_RUN_SELECT: Final = select_list(stored_fields(RUN_FIELDS), "r")
_RUN_PAYLOADS_SELECT: Final = select_list(detail_fields(RUN_FIELDS), "r", payload_sql(RUN_PAYLOAD_SQL))
_RUN_PAYLOADS_FROM: Final = (
    "runs r LEFT JOIN payloads ls ON ls.seq = r.input_seq LEFT JOIN payloads lf ON lf.seq = r.output_seq"
)
_ONE_RUN_SQL: Final = (
    f"SELECT {_RUN_SELECT}, {_RUN_PAYLOADS_SELECT} FROM {_RUN_PAYLOADS_FROM} WHERE {pg_run_scope(1, 'r.')}"
)
"""One run with its payloads: ``$1`` its id, ``$2`` its namespace."""
_NODE_SELECT: Final = (
    select_list(stored_fields(NODE_FIELDS), "n", payload_sql(NODE_PAYLOAD_SQL))
    + " FROM node_runs n LEFT JOIN payloads li ON li.seq = n.input_seq LEFT JOIN payloads lo ON lo.seq = n.output_seq"
)
_INSERT_LEDGER: Final = (
    "INSERT INTO ledger (seq, event_id, run_id, kind, ts, received_at, entry, payload_hash, prev_hash, hash) "
    "SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], "
    "$7::bytea[], $8::bytea[], $9::bytea[], $10::bytea[]) ORDER BY 1"
)
"""A commit group's entries in one statement (each column one array), in chain order."""
_INSERT_PAYLOAD: Final = "INSERT INTO payloads (seq, body) SELECT * FROM unnest($1::bigint[], $2::text[])"
_INSERT_NODE: Final = "INSERT INTO merkle_nodes (level, idx, hash) VALUES ($1, $2, $3)"
_INSERT_BLOB: Final = "INSERT INTO blobs (sha256, body, size) VALUES ($1, $2, $3) ON CONFLICT (sha256) DO NOTHING"
CONNECTION_ERRORS: Final[tuple[type[BaseException], ...]] = (
    OSError,  # refused, reset, timed out: the server is down or unreachable
    asyncpg.InterfaceError,  # the connection closed under a call ("cannot call Transaction.__aexit__()")
    asyncpg.PostgresConnectionError,  # class 08, ConnectionDoesNotExistError among them
    asyncpg.CannotConnectNowError,  # 57P03: the server is starting up or shutting down
    asyncpg.AdminShutdownError,  # 57P01: a fast shutdown ended the session
    asyncpg.CrashShutdownError,  # 57P02
    asyncpg.TooManyConnectionsError,  # 53300
)
"""What a transient outage of the database raises: each method of the store turns it into a :class:`StoreError`."""


class _OneLineConnectionErrors(logging.Filter):
    """asyncpg's pool logs each failed reconnection (the server down) as a warning with a traceback: one info
    line instead (a receiver's log shows it; a CLI command, which logs nothing, says ``error:`` once)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, CONNECTION_ERRORS):
            record.msg, record.args = f"{record.getMessage()}: {exc or type(exc).__name__}", None
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)
        return True


_POOL_LOG_FILTER: Final = _OneLineConnectionErrors()


@contextmanager
def connection_errors_as_store_error(name: str, conn: asyncpg.Connection | None = None) -> Iterator[None]:
    """Turn a connection-level failure raised in the block into one :class:`StoreError` sentence naming ``name``.

    So is any failure that leaves ``conn`` closed (asyncpg's "another operation is in progress" when the
    server ended the session mid-query). The sentence carries asyncpg's message, never the URL's password;
    any other failure passes unchanged (a method's own handling says what it was doing).
    """
    try:
        yield
    except Exception as exc:
        lost = conn is not None and conn.is_closed() and not isinstance(exc, StoreError)
        if not lost and (not isinstance(exc, CONNECTION_ERRORS) or isinstance(exc, asyncpg.ClientConfigurationError)):
            raise
        reason = str(exc) or type(exc).__name__
        raise StoreUnavailable(f"the database {name} is unavailable ({reason}); retry when it is back") from exc


def _page_after(
    select: str, where: str, params: list[Any], cursor: RunPageCursor | None, *, fetch: int, skip: int = 0
) -> tuple[str, list[Any]]:
    """The SELECT (``$n`` parameters) of ``fetch`` runs after ``cursor`` and ``skip`` more, newest first.

    Each part of the keyset condition (the started runs past the cursor, then the runs without a start)
    is its own branch, one range of a listing index cut at ``skip + fetch`` rows; the branches are
    merged and cut again. One ``OR`` of the parts would be a filter PostgreSQL applies to every row
    before the cursor, so a page would cost more the deeper it is.
    """
    base = where or " WHERE TRUE"
    branches = keyset(cursor)
    if len(branches) == 1:
        ((clause, clause_params),) = branches
        sql = f"{select}{base}{clause} {_NEWEST_FIRST} LIMIT ? OFFSET ?"
        return numbered(sql), [*params, *clause_params, fetch, skip]
    parts: list[str] = []
    all_params: list[Any] = []
    for clause, clause_params in branches:
        parts.append(f"({select}{base}{clause} {_NEWEST_FIRST} LIMIT ?)")
        all_params += [*params, *clause_params, skip + fetch]
    sql = f"SELECT * FROM ({' UNION ALL '.join(parts)}) r {_NEWEST_FIRST} LIMIT ? OFFSET ?"
    return numbered(sql), [*all_params, fetch, skip]


class PostgresStore:
    """A store on a PostgreSQL database, shareable by many receivers. ``readonly`` stores serve queries only.

    ``read_timeout_s``: the limit of one query of the query API, the viewer and the analytics, set as the
    connection's ``statement_timeout`` for it (see :mod:`.._deadline`); None or 0, none.
    """

    def __init__(
        self,
        url: str,
        *,
        pool_min: int = POOL_MIN,
        pool_max: int = POOL_MAX,
        readonly: bool = False,
        read_timeout_s: float | None = None,
    ) -> None:
        self.url = check_postgres_url(url)
        self._read_timeout_s = read_timeout_s or None
        self.name = redacted(url)
        self._pool_min, self._pool_max = max(1, pool_min), max(1, pool_max, pool_min)
        self._readonly = readonly
        self._pool: asyncpg.Pool | None = None
        self._lease = SweeperLease(self.url)
        self._head_seq = 0
        self._head_hash = GENESIS_HASH
        self._frontier: Frontier | None = None

    # --- lifecycle -------------------------------------------------------

    async def open(self) -> None:
        """Connect, migrate (unless read-only), and load the chain's head."""
        pool_log = logging.getLogger("asyncpg.pool")
        if _POOL_LOG_FILTER not in pool_log.filters:
            pool_log.addFilter(_POOL_LOG_FILTER)
        try:
            self._pool = await asyncpg.create_pool(self.url, min_size=self._pool_min, max_size=self._pool_max)
        except asyncpg.ClientConfigurationError as exc:  # a parameter's value (sslmode=...): asyncpg says which
            raise ConfigError(f"cannot open the database {self.name}: {exc}") from None
        except ValueError:  # asyncpg's own reading of the URL failed; its message may quote the password
            raise ConfigError(unreadable_url_message(self.name)) from None
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StoreError(f"cannot open the database {self.name}: {exc}") from None
        try:
            async with self._reader() as conn:
                if self._readonly:
                    await check_pg_version(conn, name=self.name)
                else:
                    await migrate_postgres(conn, name=self.name)
                self._head_seq, self._head_hash = await _head(conn)
        except asyncpg.PostgresError as exc:  # a role without rights on the tables, say: one sentence
            await self.close()
            raise StoreError(f"cannot open the database {self.name}: {exc}") from None
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Release every connection; idempotent."""
        try:
            await self._lease.release()  # the session ends: its sweeper lock goes with it
        finally:
            if self._pool is not None:
                pool, self._pool = self._pool, None
                await pool.close()

    @property
    def head(self) -> tuple[int, str]:
        """The last ledger row this store committed or read: (seq, hex hash)."""
        return self._head_seq, self._head_hash.hex()

    @property
    def is_sweeper(self) -> bool:
        """Whether this store holds the sweeper's lock (it sweeps; the other receivers do not)."""
        return self._lease.is_held

    def _the_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StoreError("the store is not open")
        return self._pool

    def _writable(self) -> asyncpg.Pool:
        if self._readonly:
            raise StoreError("this store is read-only")
        return self._the_pool()

    @asynccontextmanager
    async def _write_transaction(self) -> AsyncIterator[asyncpg.Connection]:
        """A write transaction; a lost connection is a StoreError (as in :meth:`_reader`)."""
        with connection_errors_as_store_error(self.name):
            async with self._writable().acquire() as conn:
                with connection_errors_as_store_error(self.name, conn):
                    async with conn.transaction():
                        yield conn

    @asynccontextmanager
    async def _chain_transaction(self) -> AsyncIterator[asyncpg.Connection]:
        """A write transaction holding the chain's lock: one at a time across every receiver."""
        async with self._write_transaction() as conn:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", CHAIN_LOCK)
            yield conn

    @asynccontextmanager
    async def raw_snapshot(self) -> AsyncIterator[asyncpg.Connection]:
        """One read-only repeatable-read transaction over the raw tables (copying a ledger out: :mod:`._copy`):
        every read sees the same state, whatever receivers append meanwhile."""
        async with self._reader() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            yield conn

    @asynccontextmanager
    async def raw_transaction(self) -> AsyncIterator[asyncpg.Connection]:
        """A write transaction under the chain's lock over the raw tables (copying a ledger in: :mod:`._copy`).

        The chain's head is read again afterwards.
        """
        async with self._chain_transaction() as conn:
            yield conn
        async with self._reader() as conn:
            self._head_seq, self._head_hash = await _head(conn)
        self._frontier = None

    @asynccontextmanager
    async def _snapshot(self, *, timed: bool = False) -> AsyncIterator[asyncpg.Connection]:
        """A reader inside one read-only repeatable-read transaction: every query sees the same state."""
        async with self._reader(timed=timed) as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            yield conn

    @asynccontextmanager
    async def _reader(self, *, timed: bool = False) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection. Every read and write of the store goes through it or :meth:`_write_transaction`:
        the one place a connection lost or refused (the server restarting, say) becomes a StoreError.

        ``timed``: its statements stop at the store's limit for one query, raising
        :class:`~flowledger._exceptions.QueryTimeout`; the pool's reset (``RESET ALL``) lifts the limit when the
        connection goes back.
        """
        limit = self._read_timeout_s if timed else None
        with connection_errors_as_store_error(self.name):
            async with self._the_pool().acquire() as conn:
                with connection_errors_as_store_error(self.name, conn):
                    if limit is None:
                        yield conn
                        return
                    await conn.execute(f"SET statement_timeout = {max(1, round(limit * 1000))}")
                    started = time.monotonic()
                    try:
                        yield conn
                    except asyncpg.QueryCanceledError as exc:
                        # The limit's cancel, not someone else's (pg_cancel_backend): the server says so in English,
                        # or in its own language (lc_messages) once the limit has passed.
                        if "statement timeout" not in str(exc) and time.monotonic() - started < limit:
                            raise
                        raise query_timeout(limit) from None

    async def _tree_at(self, conn: asyncpg.Connection, size: int) -> Frontier:
        if self._frontier is None or self._frontier.size != size:
            self._frontier = await load_frontier(conn, size)
        return self._frontier.copy()

    # --- writing ---------------------------------------------------------

    async def append(self, events: Sequence[PreparedEvent]) -> list[tuple[EventOutcome, str | None]]:
        """Store new events in one transaction under the chain's lock; see :meth:`Store.append`."""
        results: list[tuple[EventOutcome, str | None]] = [(EventOutcome.ACCEPTED, None)] * len(events)
        rows: list[tuple[Any, ...]] = []
        seq, prev, tree = self._head_seq, self._head_hash, self._frontier
        try:
            async with self._chain_transaction() as conn:
                ids = list({e.event_id for e in events})
                stored = {  # an event is its project and its id
                    (row[0], row[1]): bytes(row[2])
                    for row in await conn.fetch(
                        "SELECT flowledger_entry_project(entry), event_id, payload_hash FROM ledger "
                        "WHERE event_id = ANY($1::text[])",
                        ids,
                    )
                }
                digests = payload_hashes([e.body_bytes for e in events])
                fresh = new_events(events, digests, stored, results)
                projector = PgProjector(conn)
                await projector.load([events[i] for i in fresh])
                seq, prev = await _head(conn)  # under the lock: no other receiver appends now
                tree = await self._tree_at(conn, seq)
                received_at = now_ts()
                leaves: list[bytes] = []
                payloads: list[tuple[int, str]] = []
                blobs: dict[str, str] = {}
                for i in fresh:
                    event = events[i]  # another project's run of the same id is another run
                    seq += 1
                    event.seq = seq
                    projector.apply(event, event.producer_id, event.producer_seq)
                    kind = event.kind.value
                    entry = entry_bytes(
                        seq=seq,
                        event_id=event.event_id,
                        run_id=event.run_id,
                        kind=kind,
                        ts=event.ts,
                        project=event.project,
                        producer_id=event.producer_id,
                        producer_seq=event.producer_seq,
                        payload_sha256=digests[i],
                    )
                    new_hash = entry_hash(prev, entry)
                    leaves.append(new_hash)  # the chain hash is the entry's Merkle leaf (format 3)
                    rows.append(
                        (
                            seq,
                            event.event_id,
                            event.run_id,
                            kind,
                            event.ts,
                            received_at,
                            entry,
                            digests[i],
                            prev,
                            new_hash,
                        )
                    )
                    payloads.append((seq, event.body))
                    blobs.update(event.blobs)
                    prev = new_hash
                if rows:
                    await conn.execute(_INSERT_LEDGER, *columns_of(rows, 10))
                    await conn.execute(_INSERT_PAYLOAD, *columns_of(payloads, 2))
                    if blobs:
                        await conn.executemany(
                            _INSERT_BLOB, [(d, text, len(text.encode("utf-8"))) for d, text in blobs.items()]
                        )
                    nodes = tree.extend(leaves, keep_from_level=STORED_MIN_LEVEL)
                    if nodes:
                        await conn.executemany(_INSERT_NODE, nodes)
                    await projector.flush()
        except (asyncpg.DataError, OverflowError, ValueError, TypeError) as exc:  # what the events hold
            raise UnstorableError(f"storing {len(events)} events failed: {exc}") from exc
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:  # the server: worth retrying
            raise StoreError(f"storing {len(events)} events failed: {exc}") from exc
        if rows:
            self._head_seq, self._head_hash, self._frontier = seq, prev, tree
        return results

    async def sweep(self, *, now: str, stuck_after_s: float, heartbeats: int) -> list[str]:
        """Mark running runs without a sign of life as stuck; only the sweeper's leader does (others return [])."""
        try:
            if not await self._lease.held():
                return []
            async with self._chain_transaction() as conn:
                marked = await pg_mark_stuck(conn, now=now, stuck_after_s=stuck_after_s, heartbeats=heartbeats)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StoreError(f"sweeping for stuck runs failed: {exc}") from exc
        return marked

    async def rebuild(self) -> Drift:
        """Refold the run, node-attempt and producer rows from the ledger in one transaction; report the drift."""
        try:
            async with self._chain_transaction() as conn:
                return await pg_refold(conn)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StoreError(f"rebuilding the projections failed: {exc}") from exc

    # --- reading ---------------------------------------------------------

    async def list_runs(self, query: RunQuery) -> RunPage:
        """A page of runs, newest first (start time, then run id; runs without a start last); keyset after a cursor.

        The page and its count read one snapshot, so a commit between them cannot make them disagree.
        """
        async with self._snapshot(timed=True) as conn:
            query = await self._without_run_id_search(conn, query)
            hits, hits_capped = (None, False) if query.search is None else await pg_search_hits(conn, query.search)
            where, params = pg_runs_where(query, hits=hits)  # the hits read once for the page and its count
            select = f"SELECT {_RUN_SELECT} FROM runs r"
            fetch, skip = query.limit + 1, query.offset
            page_sql, page_params = _page_after(select, where, params, query.cursor, fetch=fetch, skip=skip)
            rows = await conn.fetch(page_sql, *page_params)
            counted = int(
                await conn.fetchval(
                    numbered(f"SELECT count(*) FROM (SELECT 1 FROM runs r{where}") + f" LIMIT ${len(params) + 1}) m",
                    *params,
                    TOTAL_COUNT_MAX + 1,
                )
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

    async def _without_run_id_search(self, conn: asyncpg.Connection, query: RunQuery) -> RunQuery:
        """A search that is the start of a stored run id lists those runs; any other is full text."""
        if query.search is None:
            return query
        prefix = run_id_search(query.search)
        if prefix is not None:
            found = await conn.fetchval(
                "SELECT 1 FROM runs WHERE run_id >= $1 AND run_id < $2 AND ($3::text IS NULL OR project = $3) LIMIT 1",
                prefix,
                prefix + "\U0010ffff",
                query.project,
            )
            if found:
                return dataclasses.replace(query, search=None, run_id_prefix=prefix)
        return query

    @staticmethod
    def _where(query: RunQuery) -> tuple[str, list[Any]]:
        return pg_runs_where(query)

    async def get_run(self, run_id: str, *, project: str | None = None) -> dict[str, Any] | None:
        """One run with its payloads and node attempts in start order."""
        async with self._reader(timed=True) as conn:
            space = one_namespace(run_id, project, await conn.fetch(PG_NAMESPACES_SQL, run_id))
            row = None if space is None else await conn.fetchrow(_ONE_RUN_SQL, run_id, space)
            if space is None or row is None:
                return None
            run = run_json(row, detail=True)
            run["nodes"] = await _nodes_of(conn, run_id, space, logs_inline=LOGS_INLINE_MAX)
            run["children"] = await _children(conn, run_id, space)
        return with_fingerprints(run)

    async def iter_runs(self, query: RunQuery, *, with_nodes: bool) -> AsyncIterator[dict[str, Any]]:
        """Every matching run, newest first, read in chunks so memory stays flat."""
        where, params = self._where(query)
        select = f"SELECT {_RUN_SELECT} FROM runs r"
        if with_nodes:
            select = f"SELECT {_RUN_SELECT}, {_RUN_PAYLOADS_SELECT} FROM {_RUN_PAYLOADS_FROM}"
        cursor: RunPageCursor | None = None
        async with self._reader() as conn:
            while True:
                page_sql, page_params = _page_after(select, where, params, cursor, fetch=_STREAM_CHUNK)
                rows = await conn.fetch(page_sql, *page_params)
                if not rows:
                    return
                for row in rows:
                    run = run_json(row, detail=with_nodes)
                    if with_nodes:
                        run["nodes"] = await _nodes_of(conn, run["run_id"], run["project"] or "", logs_inline=None)
                    yield run
                last = run_json(rows[-1])
                cursor = RunPageCursor.of(last)

    async def stats(self, *, project: str | None = None, silent_before: str | None = None) -> Stats:
        """Run counts by status, ledger size, producers, lost events and silent producers."""
        scope, params = ("WHERE project = $1", [project]) if project is not None else ("", [])
        async with self._reader(timed=True) as conn:
            by_status = {
                str(s): int(n)
                for s, n in await conn.fetch(f"SELECT status, count(*) FROM runs {scope} GROUP BY 1", *params)
            }
            # numeric: max_seq may be 2**63 - 1, and max_seq - events + 1 would overflow a bigint.
            producers, lost, gappy, scoped_events = await conn.fetchrow(
                "SELECT count(*), coalesce(sum(greatest(0, least(max_seq::numeric - events + 1, events))), 0), "
                "count(*) FILTER (WHERE max_seq::numeric - events + 1 > 0), coalesce(sum(events), 0) "
                f"FROM producers {scope}",
                *params,
            )
            ledger = (
                int(scoped_events)
                if project is not None
                else int(await conn.fetchval("SELECT coalesce(max(seq), 0) FROM ledger"))
            )
            silent = 0
            if silent_before is not None:
                silent_scope = "AND p.project = $2" if project is not None else ""
                silent = int(
                    await conn.fetchval(
                        "SELECT count(*) FROM producers p JOIN runs r ON r.run_id = p.last_run_id "
                        "AND coalesce(r.project, '') = coalesce(p.project, '') "
                        f"WHERE p.last_ts < $1 AND r.status IN ('{RunStatus.RUNNING.value}', "
                        f"'{RunStatus.STUCK.value}') {silent_scope}",
                        silent_before,
                        *params,
                    )
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
        """Walk the chain from its origin (on one snapshot); also check ``(seq, hex hash)`` checkpoints."""
        async with self._reader() as conn:
            return await pg_verify(conn, checkpoints)

    async def purge(self, selection: PurgeSelection) -> PurgeReport:
        """Erase the selected runs and append the purge entry, in one transaction under the chain's lock."""
        try:
            async with self._chain_transaction() as conn:
                now = now_ts()
                work = await pg_purge_runs(conn, selection, now=now)
                if not work.runs:
                    return PurgeReport(runs=[], events=0, purge_seq=None)
                seq, prev = await _head(conn)
                tree = await self._tree_at(conn, seq)
                seq += 1
                row, body = purge_entry(seq=seq, prev=prev, payload=work.payload, project=selection.project, now=now)
                new_hash = row[-1]
                await conn.execute(_INSERT_LEDGER, *columns_of([row], 10))
                await conn.execute(_INSERT_PAYLOAD, *columns_of([(seq, body)], 2))
                nodes = tree.extend([new_hash], keep_from_level=STORED_MIN_LEVEL)  # the leaf is the chain hash
                if nodes:
                    await conn.executemany(_INSERT_NODE, nodes)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StoreError(f"purging runs failed: {exc}") from exc
        self._head_seq, self._head_hash, self._frontier = seq, new_hash, tree
        return PurgeReport(runs=work.runs, events=work.events, purge_seq=seq)

    async def daily_totals(self, *, project: str | None = None, workflow_id: str | None = None) -> list[DailyTotal]:
        """Runs per workflow, project, day and status, purged ones included (the SQLite engine's query)."""
        clauses, params = [], []
        if project is not None:
            clauses.append("project = ?")
            params.append(project)
        if workflow_id is not None:
            clauses.append("workflow_id = ?")
            params.append(workflow_id)
        where = "WHERE " + " AND ".join(clauses) if clauses else ""
        async with self._reader(timed=True) as conn:
            rows = await conn.fetch(numbered(DAILY_TOTALS_SQL.format(where=where)), *params)
        return [daily_total(tuple(row)) for row in rows]

    async def tree_head(self) -> TreeHead:
        """The Merkle tree's size and root now."""
        async with self._reader() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            size = int(await conn.fetchval("SELECT coalesce(max(seq), 0) FROM ledger"))
            frontier = await load_frontier(conn, size)
        return TreeHead(size=size, root=frontier.root())

    async def consistency_proof(self, old_size: int) -> tuple[TreeHead, list[bytes]]:
        """The head now and the proof that the tree of ``old_size`` entries is its prefix (one snapshot)."""
        async with self._reader() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            return await pg_consistency(conn, old_size)

    async def run_proof(self, run_id: str, tree_size: int, *, project: str | None = None) -> list[EntryProof]:
        """A run's entries among the first ``tree_size``, with audit paths; [] for another project's run."""
        async with self._reader() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            space = one_namespace(run_id, project, await conn.fetch(PG_NAMESPACES_SQL, run_id))
            if project is not None and space is None:
                return []
            try:
                return await pg_run_proof(conn, run_id, space, tree_size)
            except LookupError as exc:
                raise StoreError(f"cannot prove run {run_id}: {exc}") from exc

    async def iter_run_proof(
        self, run_id: str, tree_size: int, *, project: str | None = None
    ) -> AsyncIterator[list[EntryProof]]:
        """:meth:`run_proof` a chunk of entries at a time, each read in a snapshot of its own."""

        @asynccontextmanager
        async def snapshot() -> AsyncIterator[asyncpg.Connection]:
            async with self._reader() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
                yield conn

        try:
            async for chunk in pg_iter_run_proof(snapshot, run_id, project, tree_size):
                yield chunk
        except LookupError as exc:
            raise StoreError(f"cannot prove run {run_id}: {exc}") from exc

    async def append_logs(self, rows: Sequence[LogRow], drops: Sequence[LogDrop] = ()) -> int:
        """Insert log lines (OTLP ones, say) and add drop counts in one transaction; return how many were stored."""
        if not rows and not drops:
            return 0
        try:
            async with self._write_transaction() as conn:
                await append_pg_logs(conn, rows, drops)
        except (asyncpg.DataError, OverflowError, ValueError, TypeError) as exc:
            raise UnstorableError(f"storing {len(rows)} log lines failed: {exc}") from exc
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StoreError(f"storing {len(rows)} log lines failed: {exc}") from exc
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
        """One attempt's lines in arrival order, a page at a time (a range of the index ``logs_by_attempt``)."""
        async with self._reader(timed=True) as conn:
            return await pg_attempt_logs(
                conn, run_id, span_id, project=project, min_level=min_level, after_id=after_id, limit=limit
            )

    async def store_spans(self, spans: Sequence[SpanRow]) -> int:
        """Insert spans not stored yet for their project in one transaction; return how many were new."""
        if not spans:
            return 0
        try:
            async with self._write_transaction() as conn:
                return await store_pg_spans(conn, spans)
        except (asyncpg.DataError, OverflowError, ValueError, TypeError) as exc:
            raise UnstorableError(f"storing {len(spans)} spans failed: {exc}") from exc
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StoreError(f"storing {len(spans)} spans failed: {exc}") from exc

    async def get_trace(self, trace_id: str, *, project: str | None = None) -> tuple[list[dict[str, Any]], TraceLinks]:
        """The spans of one trace in start order, with the runs and node attempts they belong to."""
        async with self._reader(timed=True) as conn:
            return await pg_trace(conn, trace_id, project)

    async def sampled_out(self, *, project: str | None = None) -> dict[str, int]:
        """Runs dropped by sampling, per workflow id."""
        async with self._reader(timed=True) as conn:
            rows = await conn.fetch(
                "SELECT workflow_id, sum(runs) FROM sampled_out WHERE ($1::text IS NULL OR project = $1) "
                "GROUP BY workflow_id ORDER BY workflow_id",
                project,
            )
        return {str(workflow_id): int(runs) for workflow_id, runs in rows}

    async def ledger_size(self) -> int:
        """The last ledger row's sequence number (0 when empty)."""
        async with self._reader() as conn:
            return int(await conn.fetchval("SELECT coalesce(max(seq), 0) FROM ledger"))

    async def _write_otlp(self, what: str, work: Callable[[asyncpg.Connection], Awaitable[_T]]) -> _T:
        try:
            async with self._write_transaction() as conn:
                return await work(conn)
        except (asyncpg.DataError, OverflowError, ValueError, TypeError) as exc:
            raise UnstorableError(f"storing {what} failed: {exc}") from exc
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StoreError(f"storing {what} failed: {exc}") from exc

    async def store_metric_points(
        self, points: Sequence[MetricPointRow], *, max_series: int, max_points: int
    ) -> MetricsOutcome:
        """Store metric points and their new series in one transaction; see :meth:`Store.store_metric_points`."""
        if not points:
            return MetricsOutcome(stored=0, duplicates=0, over_series_limit=0)
        return await self._write_otlp(
            f"{len(points)} metric points",
            lambda c: store_pg_metric_points(c, points, max_series=max_series, max_points=max_points),
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
        async with self._snapshot(timed=True) as conn:
            return await pg_metric_series(
                conn,
                name=name,
                project=project,
                since_ns=since_ns,
                until_ns=until_ns,
                max_series=max_series,
                max_points=max_points,
            )

    async def store_logs(self, rows: Sequence[OtlpLogRow], *, max_records: int) -> int:
        """Store OTLP log records and link them in one transaction; see :meth:`Store.store_logs`."""
        if not rows:
            return 0
        return await self._write_otlp(
            f"{len(rows)} log records", lambda c: store_pg_otlp_logs(c, rows, max_records=max_records)
        )

    async def link_otlp_logs(self, *, since: str) -> int:
        """Link OTLP log records whose run arrived later; see :meth:`Store.link_otlp_logs`."""
        return await self._write_otlp("linked log records", lambda c: link_pg_otlp_logs(c, since=since))

    async def otlp_logs(
        self, *, trace_id: str | None = None, run_id: str | None = None, project: str | None, limit: int
    ) -> list[dict[str, Any]] | None:
        """OTLP log records of a trace or a run; see :meth:`Store.otlp_logs`."""
        async with self._snapshot(timed=True) as conn:
            return await pg_otlp_logs(conn, trace_id=trace_id, run_id=run_id, project=project, limit=limit)

    # --- analytics (see ._stats and ._error_groups) and the viewer's queries -----

    async def run_stats(self, query: StatsQuery) -> list[dict[str, Any]]:
        """Statistics per group (:mod:`._stats`), most runs first, read on one snapshot."""
        async with self._snapshot(timed=True) as conn:
            return await pg_stats_groups(conn, query)

    async def error_groups(self, query: ErrorGroupQuery) -> list[dict[str, Any]]:
        """Error groups matching ``query``, biggest first (:mod:`._error_groups`)."""
        async with self._reader(timed=True) as conn:
            return await pg_error_groups(conn, query)

    async def viewer_runs(
        self,
        run_filter: RunFilter,
        *,
        limit: int,
        cursor: RunPageCursor | None = None,
        direction: PageDirection = PageDirection.OLDER,
    ) -> RunListPage:
        """A keyset page of runs, newest first; see :meth:`Store.viewer_runs`."""
        async with self._snapshot(timed=True) as conn:
            return await pg_viewer_runs(conn, _RUN_SELECT, run_filter, limit=limit, cursor=cursor, direction=direction)

    async def run_summary(
        self, run_filter: RunFilter, *, percentile_sample_max: int = PERCENTILE_SAMPLE_MAX
    ) -> dict[str, Any]:
        """Summary cards over every matching run, counted on one snapshot."""
        async with self._snapshot(timed=True) as conn:
            return await pg_run_summary(conn, run_filter, percentile_sample_max=percentile_sample_max)

    async def facets(self, *, project: str | None) -> dict[str, Any]:
        """Workflows seen, trigger types, statuses, modes."""
        async with self._reader(timed=True) as conn:
            return await pg_facets(conn, project=project)

    async def run_header(self, run_id: str, *, project: str | None) -> dict[str, Any] | None:
        """One run without its nodes, with an overview of its attempts; its error names its group."""
        async with self._snapshot(timed=True) as conn:
            space = one_namespace(run_id, project, await conn.fetch(PG_NAMESPACES_SQL, run_id))
            row = None if space is None else await conn.fetchrow(_ONE_RUN_SQL, run_id, space)
            if space is None or row is None:
                return None
            run = pg_run_header(row)
            run["attempts"] = await pg_attempts_overview(conn, run_id, space, run)
            run["children"] = await _children(conn, run_id, space)
        return with_fingerprints(run)

    async def attempts_page(
        self, run_id: str, *, project: str | None, offset: int, limit: int
    ) -> dict[str, Any] | None:
        """A page of a run's node attempts in start order, without payloads."""
        async with self._snapshot(timed=True) as conn:
            return await pg_attempts_page(conn, run_id, project=project, offset=offset, limit=limit)

    async def attempt_detail(self, run_id: str, span_id: str, *, project: str | None) -> dict[str, Any] | None:
        """One node attempt with its payloads."""
        async with self._snapshot(timed=True) as conn:
            return await pg_attempt_detail(conn, _NODE_SELECT, run_id, span_id, project=project)

    async def node_payload(self, run_id: str, span_id: str, kind: PayloadKind, *, project: str | None) -> str | None:
        """One payload of a node attempt as stored JSON text."""
        async with self._snapshot(timed=True) as conn:
            return await pg_node_payload(conn, _NODE_SELECT, run_id, span_id, kind, project=project)

    async def run_payload(self, run_id: str, kind: PayloadKind, *, project: str | None) -> str | None:
        """The input or output of a run as stored JSON text."""
        column = check_run_payload_kind(kind)
        async with self._reader(timed=True) as conn:
            space = one_namespace(run_id, project, await conn.fetch(PG_NAMESPACES_SQL, run_id))
            row = None if space is None else await conn.fetchrow(_ONE_RUN_SQL, run_id, space)
        if row is None:
            return None
        text: str | None = row[column]
        return text

    async def coverage(self, query: CoverageQuery) -> CoverageReport:
        """Missing core events, counted on one snapshot."""
        try:
            async with self._snapshot() as conn:
                return await pg_coverage(conn, query)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StoreError(f"checking coverage failed: {exc}") from exc

    async def reconcile(self, scope: ReconcileScope, *, repair: bool = False) -> ReconcileReport:
        """Projections against a fresh fold, a chunk of runs per snapshot (per write under the chain's lock)."""
        transaction = self._chain_transaction if repair else self._snapshot
        try:
            return await reconcile(transaction, scope, repair=repair, io=PG_RECONCILE_IO)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StoreError(f"reconciling the projections failed: {exc}") from exc

    async def resume_evidence(self, run_id: str, *, project: str | None = None) -> dict[str, Any] | None:
        """A run's outputs for a resume, each checked against the ledger, on one snapshot (see :mod:`._evidence`)."""
        async with self._snapshot() as conn:
            return await pg_resume_evidence(conn, run_id, project)

    async def resume_chain(self, run_id: str, *, project: str | None = None) -> list[dict[str, Any]] | None:
        """The original run, then each resume after the run it resumes."""
        async with self._snapshot() as conn:
            return await pg_resume_chain(conn, run_id, project)

    async def custom_metrics(self, query: CustomMetricQuery) -> list[dict[str, Any]]:
        """Custom metric totals, newest hour first (:mod:`._custom_metrics`)."""
        async with self._reader(timed=True) as conn:
            return await pg_custom_metrics(conn, query)


async def _head(conn: asyncpg.Connection) -> tuple[int, bytes]:
    """The last ledger row's (seq, hash), or (0, GENESIS_HASH) for an empty ledger."""
    row = await conn.fetchrow("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1")
    return (0, GENESIS_HASH) if row is None else (int(row[0]), bytes(row[1]))


async def _nodes_of(
    conn: asyncpg.Connection, run_id: str, space: str, *, logs_inline: int | None
) -> list[dict[str, Any]]:
    """A run's attempts in start order, each with its log lines (at most ``logs_inline`` of them; None: all)."""
    rows = await conn.fetch(
        f"SELECT {_NODE_SELECT} WHERE {pg_run_scope(1, 'n.')} "
        "ORDER BY n.started_at NULLS FIRST, n.attempt NULLS FIRST, n.item NULLS FIRST, n.span_id",  # as SQLite sorts
        run_id,
        space,
    )
    nodes = [node_json(row) for row in rows]
    await attach_pg_logs(conn, run_id, space, nodes, logs_inline)
    return nodes


async def _children(conn: asyncpg.Connection, run_id: str, space: str) -> dict[str, Any]:
    """A run's ``children``: the newest it started and how many (capped), as :mod:`.._children` shapes them.

    A parent run id names a run of the child's own project: ``space`` is the parent's.
    """
    scope = f" AND {PG_SPACE.format('')} = $2"
    scope_params = [space]
    where = f"parent_run_id = $1{scope}"
    n = 2 + len(scope_params)
    listed = await conn.fetch(
        f"SELECT run_id, workflow_id, status, started_at FROM runs WHERE {where} "
        f"ORDER BY started_at DESC NULLS LAST, run_id DESC LIMIT ${n}",
        run_id,
        *scope_params,
        CHILDREN_LISTED_MAX,
    )
    count = await conn.fetchval(
        f"SELECT count(*) FROM (SELECT 1 FROM runs WHERE {where} LIMIT ${n}) c",
        run_id,
        *scope_params,
        CHILDREN_COUNT_MAX + 1,
    )
    return children_json(listed, int(count))
