"""Copying a ledger between SQLite and PostgreSQL (either way, into an empty database), and proving the copy.

The ledger is copied as it is, row for row (entries, hashes, payloads,
full-output blobs, the Merkle tree's stored nodes), never re-appended: so the
copy has the same chain, the same head and the same tree root, purged
payloads and purge entries included. A ledger converted from format 1 keeps
its origin (the format-1 head its chain starts from) and its format-1 hashes,
so it verifies on PostgreSQL as on SQLite, checkpoints from before the
conversion included. The projections are then folded from the
copied ledger (``rebuild``), and both databases are verified; the copy is
proven when both verify and their heads and tree roots are equal.

Into PostgreSQL the copy is all or nothing: the rows, the rebuild and what is
copied after it are one transaction, so a copy cut off (interrupted, killed,
failed) leaves the target as it was, and running it again copies it whole.
The target must be empty of every table the copy writes (:data:`WRITTEN`);
one that holds rows is refused, naming them: a copy never deletes a target's
rows.

What is not folded from the ledger is copied too, after the rebuild: the
running sums that outlive purges (statistics rollups and histograms, error
groups, custom metric totals: the source's rows replace the ones the rebuild
folded, which lack what runs purged before the copy added), and what lives beside the ledger: OTLP
spans, OTLP log records (linked or not) with the lines they were copied to
beside their runs (searchable there as at ingest), and OTLP metric series
and points, ids kept. The way back (:func:`copy_postgres_ledger`) does the
same from one snapshot of the PostgreSQL database into a new SQLite file,
which also gets the columns only SQLite keeps (each entry as its fields, read
from its hashed bytes, which SQLite rebuilds from them; each statistics place's totals and each histogram's
stored percentiles, made from the copied rows).
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import asyncpg

from flowledger._exceptions import LedgerIntegrityError, StoreError, UsageError
from flowledger.receiver.store._custom_metrics import CUSTOM_METRIC_COLUMNS
from flowledger.receiver.store._entry import ENTRY_COLUMNS, entry_format, entry_of, kept_as_fields, parse_entry
from flowledger.receiver.store._logs import LOG_COLUMNS, LogRow, LogSource
from flowledger.receiver.store._otlp_logs import OTLP_LOG_COLUMNS
from flowledger.receiver.store._otlp_metrics import SERIES_FIELDS
from flowledger.receiver.store._protocol import Drift, TreeHead, VerifyReport
from flowledger.receiver.store._spans import SPAN_COLUMNS
from flowledger.receiver.store._sqlite import SqliteStore
from flowledger.receiver.store._stats import STATS_ROW_COLUMNS, keep_totals_sync, store_percentiles_sync
from flowledger.receiver.store.postgres._logs import append_pg_logs
from flowledger.receiver.store.postgres._rebuild import pg_refold
from flowledger.receiver.store.postgres._store import PostgresStore
from flowledger.receiver.store.postgres._tree import load_frontier
from flowledger.receiver.store.postgres._verify import pg_verify_in_snapshot

__all__ = ["WRITTEN", "CopyReport", "copy_postgres_ledger", "copy_sqlite_ledger"]

COPY_CHUNK: Final = 5_000
_TABLES: Final = (
    (
        "ledger",
        ("seq", "event_id", "run_id", "kind", "ts", "received_at", "entry", "payload_hash", "prev_hash", "hash"),
    ),
    ("payloads", ("seq", "body")),
    ("ledger_origin", ("v1_head_seq", "v1_head_hash")),
    ("ledger_v1", ("seq", "hash")),
    ("merkle_nodes", ("level", "idx", "hash")),
    ("blobs", ("sha256", "body", "size")),
    (
        "purged_totals",
        (
            "workflow_id",
            "project",
            "day",
            "status",
            "runs",
            "cost_usd",
            "duration_ms_sum",
            "durations",
            "duration_ms_max",
        ),
    ),
)
"""What is copied, in this order, and the columns (the same names on both engines)."""
_PLACE: Final = ("dim", "grain", "project", "bucket", "key")
_AFTER_REBUILD: Final[tuple[tuple[str, tuple[str, ...]], ...]] = (
    ("stats_rollup", (*_PLACE, "status", *(c.strip() for c in STATS_ROW_COLUMNS.split(",")))),
    ("stats_hist", (*_PLACE, "hist")),
    (
        "error_groups",
        ("project", "fingerprint", "hour", "type", "message", "node_id", "workflow_id", "count", "first_seen",
         "last_seen", "samples"),
    ),
    ("spans", SPAN_COLUMNS),
    ("otlp_logs", ("log_id", *OTLP_LOG_COLUMNS, "linked")),
    ("otlp_metric_series", ("series_id", "series_key", *SERIES_FIELDS)),
    ("otlp_metric_points", ("point_id", "series_id", "time_ns", "start_ns", "value", "data", "int_value")),
    ("custom_metrics", CUSTOM_METRIC_COLUMNS),
)  # fmt: skip
"""What is copied after the rebuild, in this order."""
_FOLDED: Final = frozenset({"stats_rollup", "stats_hist", "error_groups", "custom_metrics"})
"""Tables of :data:`_AFTER_REBUILD` the rebuild also fills: the source's rows replace the ones it folded."""
_REFOLDED: Final = (
    "runs", "node_runs", "producers", "logs", "log_drops", "sampled_out", "search_text", "run_attributes",
)  # fmt: skip
"""Tables the rebuild (:func:`~._rebuild.pg_refold`) empties and fills, beside those copied."""
WRITTEN: Final = (*(t for t, _ in _TABLES), *(t for t, _ in _AFTER_REBUILD), *_REFOLDED)
"""Every table a copy into PostgreSQL writes: the target must hold no row in any of them."""
_SERIALS: Final = {"otlp_logs": "log_id", "otlp_metric_series": "series_id", "otlp_metric_points": "point_id"}
"""Tables whose ids are copied: their sequences then continue after the largest."""
_KEYS: Final = {
    "ledger": "seq",
    "payloads": "seq",
    "ledger_origin": "v1_head_seq",
    "ledger_v1": "seq",
    "merkle_nodes": "level, idx",
    "blobs": "sha256",
    "purged_totals": "workflow_id, project, day, status",
    "stats_rollup": ", ".join((*_PLACE, "status")),
    "stats_hist": ", ".join(_PLACE),
    "error_groups": "project, fingerprint, hour",
    "custom_metrics": ", ".join(CUSTOM_METRIC_COLUMNS[:6]),
    "spans": "trace_id, span_id, project",
    "logs": "id",
    **_SERIALS,
}
_BYTES: Final = {"entry", "payload_hash", "prev_hash", "hash", "v1_head_hash", "hist"}
_BOOLEANS: Final = {"linked", "monotonic"}
"""Columns SQLite keeps as 0 or 1 and PostgreSQL as booleans."""
_OTLP_LINES: Final = f"SELECT {', '.join(LOG_COLUMNS)} FROM logs WHERE source = '{LogSource.OTLP.value}' ORDER BY id"


@dataclass(frozen=True, slots=True)
class CopyReport:
    """What was copied and how the two databases compare afterwards."""

    rows: dict[str, int]
    """Rows copied per table."""
    source: VerifyReport
    target: VerifyReport
    source_tree: TreeHead
    target_tree: TreeHead
    drift: Drift
    """The rebuild of the target's projections (against empty ones: every run is "missing")."""

    @property
    def proven(self) -> bool:
        """Both chains verify, with the same head and the same Merkle root."""
        return (
            self.source.ok
            and self.target.ok
            and (self.source.head_seq, self.source.head_hash) == (self.target.head_seq, self.target.head_hash)
            and self.source_tree == self.target_tree
        )

    def as_json(self) -> dict[str, Any]:
        """A JSON-safe summary."""
        return {
            "proven": self.proven,
            "rows": self.rows,
            "runs": len(self.drift.runs_missing),
            "source": {"ok": self.source.ok, "head_seq": self.source.head_seq, "head_hash": self.source.head_hash,
                       "tree_root": self.source_tree.root.hex(), "problem": self.source.problem},
            "target": {"ok": self.target.ok, "head_seq": self.target.head_seq, "head_hash": self.target.head_hash,
                       "tree_root": self.target_tree.root.hex(), "problem": self.target.problem},
        }  # fmt: skip


def _chunks(conn: sqlite3.Connection, table: str, columns: tuple[str, ...]) -> Iterator[list[tuple[Any, ...]]]:
    """The rows of ``table`` in key order, a chunk at a time (blobs as bytes, text as text)."""
    if table == "ledger":
        yield from _ledger_chunks(conn)
        return
    select = ", ".join(f"CAST({c} AS BLOB)" if c in _BYTES else c for c in columns)
    cursor = conn.execute(f"SELECT {select} FROM {table} ORDER BY {_KEYS[table]}")
    booleans = [i for i, c in enumerate(columns) if c in _BOOLEANS]
    while rows := cursor.fetchmany(COPY_CHUNK):
        chunk = [[bytes(v) if isinstance(v, memoryview) else v for v in row] for row in rows]
        for row in chunk:
            for i in booleans:
                row[i] = None if row[i] is None else bool(row[i])
        yield [tuple(row) for row in chunk]


def _otlp_lines(conn: sqlite3.Connection) -> Iterator[list[LogRow]]:
    """The OTLP log lines copied beside their runs' lines (not in the ledger: a rebuild keeps them), in chunks."""
    cursor = conn.execute(_OTLP_LINES)
    while rows := cursor.fetchmany(COPY_CHUNK):
        yield [LogRow(**{**dict(zip(LOG_COLUMNS, row, strict=True)), "source": LogSource.OTLP}) for row in rows]


async def copy_sqlite_ledger(source: Path, target: PostgresStore) -> CopyReport:
    """Copy the ledger of the SQLite file ``source`` into ``target`` (open, empty), rebuild, verify both.

    All or nothing: the copy, the rebuild and the tables copied after it are one transaction, so a copy cut off
    leaves ``target`` as it was. UsageError when the target holds rows in any table the copy writes (naming
    them); LedgerIntegrityError when the source does not verify (a broken chain is not copied); StoreError when
    writing the target fails (nothing of the copy is kept).
    """
    async with target.raw_snapshot() as pg:  # refused early, before the source is read
        await _refuse_unless_empty(pg, target.name)
    reader = SqliteStore(source, readers=1, readonly=True)
    await reader.open()
    try:
        source_report = await reader.verify()
        source_tree = await reader.tree_head()
    finally:
        await reader.close()
    if not source_report.ok:
        raise LedgerIntegrityError(
            f"{source} does not verify at entry {source_report.first_bad_seq}: {source_report.problem}; "
            "it is not copied"
        )
    conn = sqlite3.connect(f"{Path(source).resolve().as_uri()}?mode=ro", uri=True)  # a name with ? or # too
    try:
        try:
            async with target.raw_transaction() as pg:
                await _refuse_unless_empty(pg, target.name)  # again, under the chain's lock
                rows, drift = await _copy_in(conn, pg)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StoreError(f"copying into {target.name} failed, nothing of it was kept: {exc}") from exc
    finally:
        conn.close()
    return CopyReport(
        rows=rows,
        source=source_report,
        target=await target.verify(),
        source_tree=source_tree,
        target_tree=await target.tree_head(),
        drift=drift,
    )


async def _refuse_unless_empty(pg: asyncpg.Connection, name: str) -> None:
    """UsageError naming the rows the database of ``pg`` holds in the tables a copy writes, if any."""
    counts = await pg.fetch(" UNION ALL ".join(f"SELECT '{t}', count(*) FROM {t}" for t in WRITTEN))
    held = ", ".join(f"{table} {count}" for table, count in counts if count)
    if not held:
        return
    what = "already holds a ledger" if any(table == "ledger" and count for table, count in counts) else "is not empty"
    raise UsageError(
        f"{name} {what} (rows: {held}); migrate copies into an empty database and deletes nothing: "
        "give it a new database"
    )


async def _copy_in(conn: sqlite3.Connection, pg: asyncpg.Connection) -> tuple[dict[str, int], Drift]:
    """The rows of the SQLite ``conn`` into the transaction ``pg`` (under the chain's lock): the ledger's
    tables, a rebuild, the tables beside the ledger, then the OTLP log lines; the rows per table and the drift."""
    rows: dict[str, int] = {}
    for table, columns in _TABLES:
        rows[table] = 0
        for chunk in _chunks(conn, table, columns):
            await pg.copy_records_to_table(table, records=chunk, columns=list(columns))
            rows[table] += len(chunk)
    drift = await pg_refold(pg)
    for table, beside in _AFTER_REBUILD:
        if table in _FOLDED:  # only what this rebuild folded: the target held no row before
            await pg.execute(f"DELETE FROM {table}")
        rows[table] = 0
        for chunk in _chunks(conn, table, beside):
            await pg.copy_records_to_table(table, records=chunk, columns=list(beside))
            rows[table] += len(chunk)
        if table in _SERIALS:
            column = _SERIALS[table]
            await pg.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), "
                f"coalesce(max({column}), 0) + 1, false) FROM {table}"
            )
    rows["logs"] = 0
    for lines in _otlp_lines(conn):
        await append_pg_logs(pg, lines)
        rows["logs"] += len(lines)
    return rows, drift


async def _pg_chunks(
    pg: asyncpg.Connection, table: str, columns: tuple[str, ...], *, where: str = "TRUE"
) -> AsyncIterator[list[tuple[Any, ...]]]:
    """The rows of ``table`` in key order, a chunk at a time, as SQLite binds them (booleans as 0 or 1, the
    statistics' numeric sums as integers, or past 2**63 as the nearest float, as SQLite keeps them)."""
    chunk: list[tuple[Any, ...]] = []
    query = f"SELECT {', '.join(columns)} FROM {table} WHERE {where} ORDER BY {_KEYS[table]}"
    async for record in pg.cursor(query, prefetch=COPY_CHUNK):
        chunk.append(tuple(_sqlite_value(v) for v in record))
        if len(chunk) == COPY_CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _sqlite_value(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, Decimal):
        whole = int(value)
        return whole if -(2**63) <= whole < 2**63 else float(whole)
    return value


def _ledger_chunks(conn: sqlite3.Connection) -> Iterator[list[tuple[Any, ...]]]:
    """SQLite's ledger rows as PostgreSQL keeps them (:data:`_TABLES`): each with its entry's bytes, rebuilt from
    its columns where SQLite keeps the entry as its fields."""
    cursor = conn.execute(f"SELECT {ENTRY_COLUMNS.format('')}, received_at, prev_hash, hash FROM ledger ORDER BY seq")
    while rows := cursor.fetchmany(COPY_CHUNK):
        yield [(*row[1:6], row[10], entry_of(row[:10]), bytes(row[9]), bytes(row[11]), bytes(row[12])) for row in rows]


_SQLITE_LEDGER: Final = (*_TABLES[0][1], "project", "producer_id", "producer_seq")
"""The columns of SQLite's ledger rows :func:`_as_sqlite_ledger` makes."""


def _as_sqlite_ledger(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """PostgreSQL's ledger rows as SQLite keeps them: the entry as its fields (its bytes too where the fields
    would not rebuild them), the project '' for none."""
    at = _TABLES[0][1].index("entry")
    converted = []
    for row in rows:
        entry = bytes(row[at])
        fields = parse_entry(entry)
        project, producer_id, producer_seq = (
            fields.get("project") or "",
            fields.get("producer_id"),
            fields.get("producer_seq"),
        )
        marker = kept_as_fields(entry_format(entry))
        rebuilt = entry_of((marker, *row[:5], project, producer_id, producer_seq, row[at + 1]))
        # SQLite makes a float in producer_seq's INTEGER column an integer (an entry made before the receiver took
        # 1e16 as 10**16 hashed the float): such an entry keeps its bytes, as any other the fields do not rebuild
        as_fields = rebuilt == entry and (producer_seq is None or type(producer_seq) is int)
        stored = marker if as_fields else entry
        converted.append((*row[:at], stored, *row[at + 1 :], project, producer_id, producer_seq))
    return converted


async def copy_postgres_ledger(source: PostgresStore, target: Path) -> CopyReport:
    """Copy the ledger of ``source`` (open) into a new SQLite file ``target``, rebuild, verify both.

    UsageError when ``target`` exists; LedgerIntegrityError when the source does not verify; StoreError when
    the source fails while it is read. The copy is made in ``TARGET.partial`` and renamed into place only when
    it is whole and verified: a failure leaves no file that looks like a copy. Everything, the source's
    verification included, is read from one snapshot of the source, so receivers may go on appending to it
    meanwhile: the copy is the ledger as it was when the snapshot began.
    """
    if target.exists():
        raise UsageError(f"--to {target} exists; migrate writes a new file")
    partial = target.with_name(target.name + ".partial")
    _remove_sqlite_files(partial)  # what a copy cut off before left
    try:
        report = await _copy_into(source, partial)
        conn = sqlite3.connect(partial, isolation_level=None)
        try:  # one file with nothing beside it to rename (the receiver turns WAL on again when it opens it)
            conn.execute("PRAGMA journal_mode = DELETE")
        finally:
            conn.close()
    except BaseException:
        _remove_sqlite_files(partial)
        raise
    partial.replace(target)
    return report


def _remove_sqlite_files(path: Path) -> None:
    for name in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        name.unlink(missing_ok=True)


async def _copy_into(source: PostgresStore, path: Path) -> CopyReport:
    store = SqliteStore(path, readers=1)
    await store.open()  # a new file, made and migrated as the receiver makes one
    try:
        try:
            async with source.raw_snapshot() as pg:
                source_report = await pg_verify_in_snapshot(pg)
                if not source_report.ok:
                    raise LedgerIntegrityError(
                        f"{source.name} does not verify at entry {source_report.first_bad_seq}: "
                        f"{source_report.problem}; it is not copied"
                    )
                size = int(await pg.fetchval("SELECT coalesce(max(seq), 0) FROM ledger"))
                source_tree = TreeHead(size, (await load_frontier(pg, size)).root())
                rows, drift = await _copy_out(pg, store, path)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StoreError(f"reading {source.name} failed: {exc}") from exc
        target_report = await store.verify()
        target_tree = await store.tree_head()
    finally:
        await store.close()
    return CopyReport(
        rows=rows,
        source=source_report,
        target=target_report,
        source_tree=source_tree,
        target_tree=target_tree,
        drift=drift,
    )


def _insert(table: str, columns: tuple[str, ...]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


async def _copy_out(pg: asyncpg.Connection, store: SqliteStore, target: Path) -> tuple[dict[str, int], Drift]:
    """The rows of the snapshot ``pg`` into the SQLite ``store`` (open on ``target``): the ledger's tables, a
    rebuild, the tables beside the ledger, then the OTLP log lines; the rows copied per table and the drift."""
    rows: dict[str, int] = {}
    conn = sqlite3.connect(target, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        for table, columns in _TABLES:
            rows[table] = 0
            insert = _insert(table, _SQLITE_LEDGER if table == "ledger" else columns)
            async for chunk in _pg_chunks(pg, table, columns):
                if table == "ledger_origin":  # a converted ledger's origin replaces the new file's (none: genesis)
                    conn.execute("DELETE FROM ledger_origin")
                conn.executemany(insert, _as_sqlite_ledger(chunk) if table == "ledger" else chunk)
                rows[table] += len(chunk)
        conn.execute("COMMIT")
        drift = await store.rebuild()
        conn.execute("BEGIN IMMEDIATE")
        for table, beside in _AFTER_REBUILD:
            conn.execute(f"DELETE FROM {table}")
            rows[table] = 0
            async for chunk in _pg_chunks(pg, table, beside):
                conn.executemany(_insert(table, beside), chunk)
                rows[table] += len(chunk)
        keep_totals_sync(conn)  # what SQLite keeps beside the statistics rows, made from the copied ones
        store_percentiles_sync(conn)
        conn.execute("COMMIT")
    finally:
        conn.close()
    rows["logs"] = 0
    async for lines in _pg_chunks(pg, "logs", LOG_COLUMNS, where=f"source = '{LogSource.OTLP.value}'"):
        rows["logs"] += await store.append_logs(
            [LogRow(**{**dict(zip(LOG_COLUMNS, line, strict=True)), "source": LogSource.OTLP}) for line in lines]
        )
    return rows, drift
