"""The SQLite engine of the :class:`~flowledger.receiver.store._protocol.Store` protocol.

One write connection (used only by the writer task) and a small pool of
read-only connections, all in WAL mode with ``synchronous=NORMAL`` and a
busy timeout, so readers never wait for the writer. A committed batch
survives the receiver being killed; only an operating-system crash can lose
the last transactions before a WAL checkpoint.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final, TypeVar

import aiosqlite

from flowledger._exceptions import SchemaVersionError, StoreError, UnstorableError
from flowledger._wire import RunStatus, now_ts
from flowledger.receiver.store import _viewer_query as viewer_sql
from flowledger.receiver.store._bulk import insert_rows
from flowledger.receiver.store._canonical import GENESIS_HASH, chain_hash
from flowledger.receiver.store._event import PreparedEvent
from flowledger.receiver.store._fold import RUN_COLUMNS, mark_stuck
from flowledger.receiver.store._migrations import SCHEMA_VERSION, foreign_database, migrate, schema_version
from flowledger.receiver.store._projector import Projector, run_from_row, save_runs
from flowledger.receiver.store._protocol import (
    TOTAL_COUNT_MAX,
    Drift,
    EventOutcome,
    RunPage,
    RunQuery,
    Stats,
    VerifyReport,
)
from flowledger.receiver.store._query import (
    NEWEST_FIRST,
    NODE_SELECT,
    RUN_PAYLOADS_SELECT,
    RUN_SELECT,
    node_json,
    run_json,
    run_page_sql,
    runs_count_sql,
    runs_where,
)
from flowledger.receiver.store._rebuild import refold
from flowledger.receiver.store._spans import SPAN_COLUMNS, SpanRow, TraceLinks, span_json
from flowledger.receiver.store._time import epoch_s, ts_from_epoch_s
from flowledger.receiver.store._verify import VERIFY_COLUMNS, ChainWalker
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
_LOOKUP_CHUNK: Final = 500
_STREAM_CHUNK: Final = 2_000
_CACHE_KIB: Final = 65_536
SWEEP_SQL: Final = (
    f"SELECT {', '.join(RUN_COLUMNS)} FROM runs INDEXED BY runs_alive "
    f"WHERE status = '{RunStatus.RUNNING.value}' AND last_seen_at < ?"
)
"""Running runs silent since before a cutoff: a range of the partial index ``runs_alive``, never a scan."""
_INSERT_LEDGER: Final = "INSERT INTO ledger (seq, event_id, run_id, kind, ts, received_at, body, prev_hash, hash)"


def prepare_file(path: Path) -> None:
    """Create (or check) the database file and bring its schema up to date, synchronously.

    Raises StoreError (or SchemaVersionError) with one clear sentence when the file cannot be used.
    """
    try:
        conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open the database {path}: {exc}") from exc
    try:
        migrate(conn, name=str(path))  # first: another application's database is refused untouched
        conn.execute("PRAGMA journal_mode=WAL")
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


class SqliteStore:
    """The embedded store: one SQLite file. ``readonly`` stores serve queries only."""

    def __init__(self, path: Path | str, *, readers: int = 2, readonly: bool = False) -> None:
        self.path = Path(path)
        self._readonly = readonly
        self._reader_count = max(1, readers)
        self._writer: aiosqlite.Connection | None = None
        self._readers: asyncio.Queue[aiosqlite.Connection] = asyncio.Queue()
        self._all_readers: list[aiosqlite.Connection] = []
        self._head_seq = 0
        self._head_hash = GENESIS_HASH

    # --- lifecycle -------------------------------------------------------

    async def open(self) -> None:
        """Connect, migrate (unless read-only), and load the chain's head."""
        if self._readonly:
            await asyncio.to_thread(_check_readable, self.path)
        else:
            await asyncio.to_thread(prepare_file, self.path)
            self._writer = await self._connect(readonly=False)
            self._head_seq, self._head_hash = await _head(self._writer)
        for _ in range(self._reader_count):
            conn = await self._connect(readonly=True)
            self._all_readers.append(conn)
            self._readers.put_nowait(conn)

    async def _connect(self, *, readonly: bool) -> aiosqlite.Connection:
        target = f"file:{self.path}?mode=ro" if readonly else str(self.path)
        try:
            conn = await aiosqlite.connect(target, uri=readonly, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
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
        return conn

    async def close(self) -> None:
        """Close every connection; idempotent."""
        for conn in self._all_readers:
            await conn.close()
        self._all_readers.clear()
        self._readers = asyncio.Queue()
        if self._writer is not None:
            await self._writer.close()
            self._writer = None

    @property
    def head(self) -> tuple[int, str]:
        """The last committed ledger row: (seq, hex hash)."""
        return self._head_seq, self._head_hash.hex()

    def _write_conn(self) -> aiosqlite.Connection:
        if self._writer is None:
            raise StoreError("this store is read-only or closed")
        return self._writer

    @asynccontextmanager
    async def _reader(self) -> AsyncIterator[aiosqlite.Connection]:
        if not self._all_readers:
            raise StoreError("the store is not open")
        conn = await self._readers.get()
        try:
            yield conn
        finally:
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

    async def _stored_bodies(self, conn: aiosqlite.Connection, ids: list[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for start in range(0, len(ids), _LOOKUP_CHUNK):
            part = ids[start : start + _LOOKUP_CHUNK]
            sql = f"SELECT event_id, body FROM ledger WHERE event_id IN ({', '.join('?' * len(part))})"
            for event_id, body in await conn.execute_fetchall(sql, part):
                found[event_id] = body
        return found

    async def append(self, events: Sequence[PreparedEvent]) -> list[tuple[EventOutcome, str | None]]:
        """Store new events in one transaction; see :meth:`Store.append`."""
        conn = self._write_conn()
        results: list[tuple[EventOutcome, str | None]] = [(EventOutcome.ACCEPTED, None)] * len(events)
        rows: list[tuple[Any, ...]] = []
        seq, prev = self._head_seq, self._head_hash
        try:
            async with self._transaction():
                stored = await self._stored_bodies(conn, list({e.event_id for e in events}))
                fresh: list[int] = []
                for i, event in enumerate(events):
                    prior = stored.get(event.event_id)
                    if prior is None:
                        stored[event.event_id] = event.body
                        fresh.append(i)
                    elif prior == event.body:
                        results[i] = (EventOutcome.DUPLICATE, None)
                    else:
                        results[i] = (
                            EventOutcome.CONFLICT,
                            f"event_id {event.event_id} is taken by a different event; give each event a new id",
                        )
                projector = Projector(conn)
                await projector.load([events[i] for i in fresh])
                # Read the head inside the write transaction: another process appending to the
                # same file (a second receiver, a CLI) cannot fork the chain.
                seq, prev = await _head(conn)
                received_at = now_ts()
                apply, add_row = projector.apply, rows.append  # once per event: skip the attribute lookups
                for i in fresh:
                    event = events[i]
                    run_id = event.run_id
                    if event.project is not None:
                        owner = projector.project_of(run_id)
                        if owner is not None and owner != event.project:
                            # Never say whose run it is: the answer must not confirm another project's run.
                            reason = f"run_id {run_id} cannot be used with this API key; give each run a new id"
                            results[i] = (EventOutcome.FORBIDDEN, reason)
                            continue
                    seq += 1
                    event.seq = seq
                    apply(event, event.producer_id, event.producer_seq)
                    new_hash = chain_hash(prev, event.body_bytes)
                    row = (seq, event.event_id, run_id, event.kind, event.ts, received_at, event.body, prev, new_hash)
                    add_row(row)
                    prev = new_hash
                if rows:
                    await insert_rows(conn, _INSERT_LEDGER, rows, width=9)
                    await projector.flush()
        except sqlite3.OperationalError as exc:  # locked, busy, disk full, I/O: worth retrying
            raise StoreError(f"storing {len(events)} events failed: {exc}") from exc
        except (sqlite3.Error, OverflowError, ValueError, TypeError) as exc:  # what the events hold
            raise UnstorableError(f"storing {len(events)} events failed: {exc}") from exc
        if rows:
            self._head_seq, self._head_hash = seq, prev
        return results

    async def sweep(self, *, now: str, stuck_after_s: float, heartbeats: int) -> list[str]:
        """Mark running runs without a sign of life as stuck (indexed on ``last_seen_at``)."""
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
                    reason = f"no event since {run.last_seen_at}: more than {threshold_s:g} s without a heartbeat"
                    if mark_stuck(run, reason):
                        marked.append(run)
                await save_runs(conn, marked)
        except sqlite3.Error as exc:
            raise StoreError(f"sweeping for stuck runs failed: {exc}") from exc
        return [run.run_id for run in marked]

    async def rebuild(self) -> Drift:
        """Refold every projection from the ledger in one transaction; report what differed."""
        conn = self._write_conn()
        try:
            async with self._transaction():
                return await refold(conn)
        except sqlite3.Error as exc:
            raise StoreError(f"rebuilding the projections failed: {exc}") from exc

    # --- reading ---------------------------------------------------------

    async def list_runs(self, query: RunQuery) -> RunPage:
        """A page of runs, newest first (stable order: start time, then run id); keyset after a cursor."""
        page_sql, page_params = run_page_sql(query, fetch=query.limit + 1)
        count_sql, count_params = runs_count_sql(query, cap=TOTAL_COUNT_MAX)
        async with self._reader() as conn:
            rows = list(await conn.execute_fetchall(page_sql, page_params))
            counted = int(next(iter(await conn.execute_fetchall(count_sql, count_params)))[0])
        runs = [run_json(row) for row in rows[: query.limit]]
        more = len(rows) > query.limit
        after = RunPageCursor(runs[-1]["started_at"] or "", runs[-1]["run_id"]) if more else None
        return RunPage(
            runs=runs, total=min(counted, TOTAL_COUNT_MAX), total_capped=counted > TOTAL_COUNT_MAX, next=after
        )

    async def get_run(self, run_id: str, *, project: str | None = None) -> dict[str, Any] | None:
        """One run with its payloads and node attempts in start order."""
        async with self._reader() as conn:
            return await _run_with_nodes(conn, run_id, project)

    async def iter_runs(self, query: RunQuery, *, with_nodes: bool) -> AsyncIterator[dict[str, Any]]:
        """Every matching run, newest first, read in chunks so memory stays flat."""
        where, params = runs_where(query)
        cursor_key: tuple[str | None, str] | None = None
        async with self._reader() as conn:
            while True:
                page_where, page_params = where, list(params)
                if cursor_key is not None:
                    started, rid = cursor_key
                    clause = (
                        "(r.started_at < ? OR (r.started_at = ? AND r.run_id < ?) OR r.started_at IS NULL)"
                        if started is not None
                        else "(r.started_at IS NULL AND r.run_id < ?)"
                    )
                    page_params += [started, started, rid] if started is not None else [rid]
                    page_where = (where + " AND " if where else " WHERE ") + clause
                rows = list(
                    await conn.execute_fetchall(
                        f"SELECT {RUN_SELECT} FROM runs r{page_where} {NEWEST_FIRST} LIMIT ?",
                        [*page_params, _STREAM_CHUNK],
                    )
                )
                if not rows:
                    return
                for row in rows:
                    run = run_json(row)
                    if with_nodes:
                        run["nodes"] = await _nodes_of(conn, run["run_id"])
                    yield run
                last = run_json(rows[-1])
                cursor_key = (last["started_at"], last["run_id"])

    async def stats(self, *, project: str | None = None, silent_before: str | None = None) -> Stats:
        """Run counts by status, ledger size, producers, lost events and silent producers."""
        scope, params = ("WHERE project = ?", [project]) if project is not None else ("", [])
        silent_scope = "AND p.project = ?" if project is not None else ""
        async with self._reader() as conn:
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
        """Walk the chain from the first row; also check ``(seq, hex hash)`` checkpoints."""
        walker = ChainWalker()
        for seq, _ in checkpoints:
            walker.watch(seq)
        last = 0
        async with self._reader() as conn:
            while True:
                rows = list(
                    await conn.execute_fetchall(
                        f"SELECT {VERIFY_COLUMNS} FROM ledger WHERE seq > ? ORDER BY seq LIMIT ?",
                        (last, _STREAM_CHUNK),
                    )
                )
                if not rows:
                    break
                last = int(rows[-1][0])
                if not walker.feed(rows):  # type: ignore[arg-type]
                    break
        report = walker.report()
        if report.ok:
            for seq, expected in checkpoints:
                found = walker.hashes_at.get(seq)
                if found != expected:
                    problem = (
                        f"checkpoint {seq}:{expected[:12]}... does not match: the row's hash is now {found}"
                        if found
                        else f"checkpoint row {seq} is no longer in the ledger (the chain was truncated)"
                    )
                    return VerifyReport(
                        ok=False,
                        events=report.events,
                        head_seq=report.head_seq,
                        head_hash=report.head_hash,
                        first_bad_seq=seq,
                        first_bad_event_id=walker.event_ids_at.get(seq),
                        problem=problem,
                    )
        return report

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
            raise StoreError(f"storing {len(spans)} spans failed: {exc}") from exc
        except (sqlite3.Error, OverflowError, ValueError, TypeError) as exc:
            raise UnstorableError(f"storing {len(spans)} spans failed: {exc}") from exc

    async def get_trace(self, trace_id: str, *, project: str | None = None) -> tuple[list[dict[str, Any]], TraceLinks]:
        """The spans of one trace in start order, with the runs and node attempts they belong to."""
        scope, params = (" AND project = ?", [project]) if project is not None else ("", [])
        async with self._reader() as conn:
            rows = await conn.execute_fetchall(
                f"SELECT {', '.join(SPAN_COLUMNS)} FROM spans WHERE trace_id = ?{scope} ORDER BY start_ns, span_id",
                [trace_id, *params],
            )
            run_rows = await conn.execute_fetchall(
                "SELECT r.run_id, json_extract(s.body, '$.data.span_id'), json_extract(f.body, '$.data.span_id') "
                "FROM runs r LEFT JOIN ledger s ON s.event_id = r.started_event_id "
                "LEFT JOIN ledger f ON f.event_id = r.finished_event_id "
                f"WHERE r.trace_id = ?{scope.replace('project', 'r.project')} ORDER BY r.started_at, r.run_id",
                [trace_id, *params],
            )
            run_ids = [str(row[0]) for row in run_rows]
            nodes: dict[str, dict[str, Any]] = {}
            for start in range(0, len(run_ids), _LOOKUP_CHUNK):
                part = run_ids[start : start + _LOOKUP_CHUNK]
                for run_id, span_id, node_id, attempt, item in await conn.execute_fetchall(
                    "SELECT run_id, span_id, node_id, attempt, item FROM node_runs "
                    f"WHERE run_id IN ({', '.join('?' * len(part))})",
                    part,
                ):
                    nodes[span_id] = {"run_id": run_id, "node_id": node_id, "attempt": attempt, "item": item}
        runs = {str(span): str(run_id) for run_id, *spans in run_rows for span in spans if span}
        return [span_json(row) for row in rows], TraceLinks(runs=runs, nodes=nodes, run_ids=run_ids)

    # --- the viewer's queries ---------------------------------------------

    async def _sync_read(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``work`` on a fresh read-only connection in a worker thread (the viewer's SQL is synchronous)."""

        def job() -> _T:
            with viewer_sql.open_reader(self.path) as conn:
                return work(conn)

        try:
            return await asyncio.to_thread(job)
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
            lambda c: viewer_sql.viewer_runs(c, run_filter, limit=limit, cursor=cursor, direction=direction)
        )

    async def run_summary(
        self, run_filter: RunFilter, *, percentile_sample_max: int = PERCENTILE_SAMPLE_MAX
    ) -> dict[str, Any]:
        """Summary cards over every matching run; see :func:`~flowledger.receiver.store._viewer_query.run_summary`."""
        return await self._sync_read(
            lambda c: viewer_sql.run_summary(c, run_filter, percentile_sample_max=percentile_sample_max)
        )

    async def facets(self, *, project: str | None) -> dict[str, Any]:
        """Workflows seen, trigger types, statuses, modes."""
        return await self._sync_read(lambda c: viewer_sql.facets(c, project=project))

    async def run_header(self, run_id: str, *, project: str | None) -> dict[str, Any] | None:
        """One run without its nodes, with an overview of its attempts."""
        return await self._sync_read(lambda c: viewer_sql.run_header(c, run_id, project=project))

    async def attempts_page(
        self, run_id: str, *, project: str | None, offset: int, limit: int
    ) -> dict[str, Any] | None:
        """A page of a run's node attempts in start order, without payloads."""
        return await self._sync_read(
            lambda c: viewer_sql.attempts_page(c, run_id, project=project, offset=offset, limit=limit)
        )

    async def attempt_detail(self, run_id: str, span_id: str, *, project: str | None) -> dict[str, Any] | None:
        """One node attempt with its payloads."""
        return await self._sync_read(lambda c: viewer_sql.attempt_detail(c, run_id, span_id, project=project))

    async def node_payload(self, run_id: str, span_id: str, kind: PayloadKind, *, project: str | None) -> str | None:
        """One payload of a node attempt as stored JSON text."""
        return await self._sync_read(lambda c: viewer_sql.node_payload(c, run_id, span_id, kind, project=project))

    async def run_payload(self, run_id: str, kind: PayloadKind, *, project: str | None) -> str | None:
        """The input or output of a run as stored JSON text."""
        return await self._sync_read(lambda c: viewer_sql.run_payload(c, run_id, kind, project=project))


async def _head(conn: aiosqlite.Connection) -> tuple[int, bytes]:
    """The last ledger row's (seq, hash), or (0, GENESIS_HASH) for an empty ledger."""
    for seq, digest in await conn.execute_fetchall("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1"):
        return int(seq), bytes(digest)
    return 0, GENESIS_HASH


async def _count(conn: aiosqlite.Connection, sql: str) -> int:
    rows = await conn.execute_fetchall(sql)
    return int(next(iter(rows))[0])


async def _count_params(conn: aiosqlite.Connection, sql: str, params: Sequence[Any]) -> int:
    rows = await conn.execute_fetchall(sql, params)
    return int(next(iter(rows))[0])


async def _nodes_of(conn: aiosqlite.Connection, run_id: str) -> list[dict[str, Any]]:
    rows = await conn.execute_fetchall(
        f"SELECT {NODE_SELECT} WHERE n.run_id = ? ORDER BY n.started_at, n.attempt, n.item, n.span_id",
        (run_id,),
    )
    return [node_json(row) for row in rows]


async def _run_with_nodes(conn: aiosqlite.Connection, run_id: str, project: str | None) -> dict[str, Any] | None:
    sql = (
        f"SELECT {RUN_SELECT}, {RUN_PAYLOADS_SELECT} FROM runs r "
        "LEFT JOIN ledger ls ON ls.seq = r.input_seq LEFT JOIN ledger lf ON lf.seq = r.output_seq WHERE r.run_id = ?"
    )
    rows = list(await conn.execute_fetchall(sql, (run_id,)))
    if not rows:
        return None
    row = rows[0]
    run = run_json(row, detail=True)
    if project is not None and run["project"] != project:
        return None
    run["nodes"] = await _nodes_of(conn, run_id)
    return run
