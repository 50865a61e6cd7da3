"""Schema migrations: a format-1 ledger (hash over the whole body) becomes format 2 without losing its proof."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from flowledger._exceptions import StoreError
from flowledger.receiver.store import _migrations as migrations
from flowledger.receiver.store._entry import ENTRY_COLUMNS, ENTRY_FORMAT, entry_format, entry_of
from flowledger.receiver.store._merkle import verify_consistency, verify_inclusion
from flowledger.receiver.store._migrations import (
    _LEDGER_ENTRY_AS_COLUMNS,
    _LEDGER_PROJECT_AS_COLUMN,
    MIGRATIONS,
    SCHEMA_VERSION,
    Migration,
    _run_and_event_ids_per_project,
    migrate,
    schema_version,
)
from flowledger.receiver.store._protocol import EntryProof, PurgeSelection, RunQuery, TreeHead, VerifyReport
from flowledger.receiver.store._sqlite import SqliteStore
from tests.receiver._support import RunEvents, simple_run, typical_run
from tests.receiver.store._format1 import FORMAT1_VERSION, format1_ledger
from tests.receiver.store._rewrite import as_format2
from tests.receiver.store.conformance.conftest import prepared


async def _open_verify(path: Path, checkpoints: list[tuple[int, str]] = ()) -> VerifyReport:  # type: ignore[assignment]
    store = SqliteStore(path)
    await store.open()
    try:
        return await store.verify(checkpoints)
    finally:
        await store.close()


def _checkpoint(text: str) -> tuple[int, str]:
    seq, _, digest = text.partition(":")
    return int(seq), digest


def test_a_format1_ledger_is_converted_and_still_verifies(tmp_path: Path) -> None:
    """Opening a format-1 database converts it; the chain verifies, and checkpoints taken before still check."""
    path = tmp_path / "old.db"
    heads = format1_ledger(path)
    report = asyncio.run(_open_verify(path, [_checkpoint(heads[-1]), _checkpoint(heads[9])]))
    assert report.ok, report
    assert report.events == 23
    with sqlite3.connect(path) as conn:
        assert schema_version(conn) == SCHEMA_VERSION
        assert conn.execute("SELECT count(*) FROM payloads").fetchone()[0] == 23
        assert conn.execute("SELECT v1_head_seq FROM ledger_origin").fetchone()[0] == 23
    forged = heads[9][:-4] + "0000"
    assert not asyncio.run(_open_verify(path, [_checkpoint(forged)])).ok


def test_a_converted_row_is_checked_by_the_hash_verify_prints_too(tmp_path: Path) -> None:
    """A checkpoint of a converted row passes with its chain hash (what `verify` prints) as with its format-1 one."""
    path = tmp_path / "old.db"
    heads = format1_ledger(path)
    report = asyncio.run(_open_verify(path))
    assert report.ok, report
    assert report.head_seq == 23
    now = (report.head_seq, report.head_hash)
    assert now != _checkpoint(heads[-1])
    with sqlite3.connect(path) as conn:
        tenth = (10, bytes(conn.execute("SELECT hash FROM ledger WHERE seq = 10").fetchone()[0]).hex())
    assert asyncio.run(_open_verify(path, [now, tenth, _checkpoint(heads[-1])])).ok
    forged = asyncio.run(_open_verify(path, [(23, "00" * 32)]))
    assert not forged.ok
    assert forged.problem == (
        f"checkpoint 23:000000000000... does not match: the row's hash is now {report.head_hash} "
        f"(format 1: {_checkpoint(heads[-1])[1]})"
    )


def test_a_converted_ledger_takes_new_events_and_refolds(tmp_path: Path) -> None:
    """After the conversion, new events extend the chain and a rebuild folds old and new events alike."""
    path = tmp_path / "old.db"
    format1_ledger(path)

    async def main() -> tuple[VerifyReport, int]:
        store = SqliteStore(path)
        await store.open()
        try:
            await store.append(prepared(simple_run().events))
            drift = await store.rebuild()
            assert len(drift.runs_missing) == 3  # the format-1 file had no projections
            page = await store.list_runs(RunQuery())
            return await store.verify(), page.total
        finally:
            await store.close()

    report, total = asyncio.run(main())
    assert report.ok, report
    assert report.events == 27
    assert total == 4


def test_a_converted_ledger_is_bound_to_its_old_head(tmp_path: Path) -> None:
    """Editing the recorded format-1 head, or a payload against its format-1 hash, fails verify."""
    path = tmp_path / "old.db"
    format1_ledger(path)
    assert asyncio.run(_open_verify(path)).ok
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE ledger_origin SET v1_head_hash = zeroblob(32)")
    report = asyncio.run(_open_verify(path))
    assert not report.ok
    assert report.first_bad_seq == 1
    assert "prev_hash" in (report.problem or "")


def test_a_broken_format1_ledger_is_not_converted(tmp_path: Path) -> None:
    """A format-1 ledger that does not verify is refused, and the file is left as it was."""
    path = tmp_path / "old.db"
    format1_ledger(path)
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TRIGGER ledger_no_update")
        conn.execute("UPDATE ledger SET body = body || ' ' WHERE seq = 5")
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        with pytest.raises(StoreError, match="row 5"):
            migrate(conn)
        assert schema_version(conn) == FORMAT1_VERSION
        assert conn.execute("SELECT count(*) FROM ledger").fetchone()[0] == 23
    finally:
        conn.close()


@pytest.mark.parametrize("column", ["event_id", "run_id", "kind", "ts"])
def test_a_format1_ledger_with_an_edited_column_is_not_converted(tmp_path: Path, column: str) -> None:
    """A column the format-1 hash does not cover, edited by hand, is found before it could be baked into an entry."""
    path = tmp_path / "old.db"
    format1_ledger(path)
    value = {"ts": "'2000-01-01T00:00:00.000000Z'", "kind": "'heartbeat'"}.get(column, f"'x' || {column}")
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TRIGGER ledger_no_update")
        conn.execute(f"UPDATE ledger SET {column} = {value} WHERE seq = 7")
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        with pytest.raises(StoreError, match=f"row 7.*{column} column"):
            migrate(conn)
        assert schema_version(conn) == FORMAT1_VERSION
    finally:
        conn.close()


def test_a_converted_ledger_can_be_purged_and_still_verifies(tmp_path: Path) -> None:
    """Purging a run of a converted ledger keeps both its chains verifying, old checkpoints included."""
    path = tmp_path / "old.db"
    heads = format1_ledger(path)

    async def main() -> VerifyReport:
        store = SqliteStore(path)
        await store.open()
        try:
            await store.rebuild()
            first = (await store.list_runs(RunQuery(limit=1))).runs[0]["run_id"]
            report = await store.purge(PurgeSelection(run_ids=(first,), by="test"))
            assert report.runs == [first]
            return await store.verify([_checkpoint(heads[-1]), _checkpoint(heads[4])])
        finally:
            await store.close()

    report = asyncio.run(main())
    assert report.ok, report
    assert report.purges == 1
    assert report.payloads_erased > 0


async def _ingest_and_read(path: Path, events: list[dict[str, Any]], run_id: str) -> dict[str, Any] | None:
    store = SqliteStore(path)
    await store.open()
    try:
        await store.append(prepared(events))
        return await store.get_run(run_id)
    finally:
        await store.close()


def _made_before(migration: Migration, path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty database at the schema version before ``migration``."""
    before = MIGRATIONS.index(migration)
    monkeypatch.setattr(migrations, "MIGRATIONS", MIGRATIONS[:before])
    monkeypatch.setattr(migrations, "SCHEMA_VERSION", before)
    conn = sqlite3.connect(path, isolation_level=None)
    migrations.migrate(conn)
    conn.close()
    monkeypatch.undo()


def _copy_ledger(conn: sqlite3.Connection, columns: list[str]) -> None:
    """The attached new ledger's rows into the older table of ``main``, each with its entry's bytes."""
    at = columns.index("entry")
    rows = conn.execute(f"SELECT {ENTRY_COLUMNS.format('')}, {', '.join(columns)} FROM new.ledger ORDER BY seq")
    conn.executemany(
        f"INSERT INTO main.ledger ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
        [(*row[10 : 10 + at], entry_of(row[:10]), *row[11 + at :]) for row in rows],
    )


def _copy_rows(source: Path, target: Path) -> None:
    """Every row of ``source`` into the older tables of ``target`` (the columns both have; what triggers fill, not)."""
    conn = sqlite3.connect(target, isolation_level=None)
    conn.execute("ATTACH DATABASE ? AS new", (str(source),))
    tables = [
        str(name)
        for (name,) in conn.execute(
            "SELECT name FROM main.sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
            "AND name NOT LIKE 'search_fts%' AND name <> 'run_counts'"
        )
    ]
    for table in tables:
        old = [str(c[1]) for c in conn.execute(f"PRAGMA main.table_info({table})")]
        new = {str(c[1]) for c in conn.execute(f"PRAGMA new.table_info({table})")}
        # Texts get new ids: the logs trigger numbers the log lines' texts as their rows are copied.
        columns = ", ".join(c for c in old if c in new and (table, c) != ("search_text", "id"))
        if table == "ledger":  # older ledgers store every entry's bytes, which the new one keeps as fields
            _copy_ledger(conn, [c for c in old if c in new])
            continue
        skip = " WHERE source NOT LIKE 'log:%'" if table == "search_text" else ""  # made by the logs trigger
        conn.execute(f"INSERT INTO main.{table} ({columns}) SELECT {columns} FROM new.{table}{skip} ORDER BY 1")
    conn.close()


def test_a_database_made_before_ids_were_per_project_keeps_its_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database of the schema before per-project ids opens: its runs, attempts, logs and search rows read the
    same, the ledger verifies, a rebuild finds no drift, and another project may then use the same ids."""
    run = typical_run(project="alpha").logs("stock", ["picked 3 items"])
    source, old = tmp_path / "source.db", tmp_path / "old.db"
    expected = asyncio.run(_ingest_and_read(source, run.events, run.run_id))
    assert expected is not None
    _made_before(_run_and_event_ids_per_project, old, monkeypatch)
    _copy_rows(source, old)
    with sqlite3.connect(old) as conn:
        assert schema_version(conn) == MIGRATIONS.index(_run_and_event_ids_per_project)
        assert conn.execute("SELECT count(*) FROM runs").fetchone()[0] == 1

    async def check() -> None:
        store = SqliteStore(old)
        await store.open()
        try:
            assert await store.get_run(run.run_id) == expected
            assert await store.get_run(run.run_id, project="alpha") == expected
            assert (await store.verify()).ok
            assert [r["run_id"] for r in (await store.list_runs(RunQuery(search="picked"))).runs] == [run.run_id]
            assert (await store.rebuild()).clean
            squat = [{**event, "project": "beta"} for event in run.events[:1]]
            assert [outcome.value for outcome, _ in await store.append(prepared(squat))] == ["accepted"]
            assert await store.get_run(run.run_id, project="alpha") == expected
        finally:
            await store.close()

    asyncio.run(check())
    with sqlite3.connect(old) as conn:
        assert schema_version(conn) == SCHEMA_VERSION
        assert conn.execute("SELECT count(*) FROM node_runs WHERE project = 'alpha'").fetchone()[0] == 6


def _copied_before(migration: Migration, source: Path, old: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``old`` made at the schema version before ``migration``, holding every row of ``source``."""
    _made_before(migration, old, monkeypatch)
    _copy_rows(source, old)


async def _proven(store: SqliteStore, run: RunEvents, head: TreeHead) -> list[EntryProof]:
    """The proofs of every entry of ``run`` in the tree ``head``, each checked against its root."""
    proofs = await store.run_proof(run.run_id, head.size)
    assert len(proofs) == len(run.events)
    for p in proofs:
        assert verify_inclusion(p.leaf, p.seq - 1, head.size, p.path, head.root)
    return proofs


def test_a_ledger_that_stores_its_entries_keeps_them_and_adds_entries_as_fields(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ledger made when every row stored its entry's bytes keeps those bytes (no hash changes, its old head and
    tree verify), and the entries appended after it are kept as their fields; proofs cover both kinds of row."""
    runs = [typical_run(project="alpha"), simple_run()]
    source, old = tmp_path / "source.db", tmp_path / "old.db"
    asyncio.run(_ingest_and_read(source, runs[0].events, runs[0].run_id))
    _copied_before(_LEDGER_ENTRY_AS_COLUMNS, source, old, monkeypatch)
    with sqlite3.connect(old) as conn:
        assert "producer_id" not in {c[1] for c in conn.execute("PRAGMA table_info(ledger)")}
        head = conn.execute("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1").fetchone()
        stored = conn.execute("SELECT seq, entry FROM ledger ORDER BY seq").fetchall()

    async def check() -> None:
        store = SqliteStore(old)
        await store.open()
        try:
            tree_before = await store.tree_head()
            report = await store.verify([(int(head[0]), bytes(head[1]).hex())])
            assert report.ok, report
            assert [o.value for o, _ in await store.append(prepared(runs[1].events))] == ["accepted"] * len(
                runs[1].events
            )
            assert (await store.verify()).ok
            head_now, path = await store.consistency_proof(tree_before.size)
            assert verify_consistency(tree_before.size, head_now.size, tree_before.root, head_now.root, path)
            for run in runs:  # the first run's rows store their entries, the second's keep them as fields
                await _proven(store, run, head_now)
        finally:
            await store.close()

    asyncio.run(check())
    with sqlite3.connect(old) as conn:
        assert schema_version(conn) == SCHEMA_VERSION
        rows = conn.execute("SELECT seq, entry, producer_id FROM ledger ORDER BY seq").fetchall()
    assert [(seq, bytes(entry)) for seq, entry, _ in rows[: len(stored)]] == [(s, bytes(e)) for s, e in stored]
    assert all(producer is None for _, _, producer in rows[: len(stored)])
    new_rows = rows[len(stored) :]
    assert len(new_rows) == len(runs[1].events)
    assert all(entry == ENTRY_FORMAT and producer is not None for _, entry, producer in new_rows)


def test_a_ledger_without_the_project_column_gets_it_from_its_entries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database whose ledger indexed the project read out of each entry opens with the project as a column, filled
    from the hashed entries: it verifies with its old head, a resent event is still a duplicate in its project and new
    in another, and the event-id index is read without parsing entries."""
    runs = [typical_run(project="alpha"), simple_run(), simple_run(project="beta")]
    source, old = tmp_path / "source.db", tmp_path / "old.db"
    events = [e for run in runs for e in run.events]
    asyncio.run(_ingest_and_read(source, events, runs[0].run_id))
    _copied_before(_LEDGER_PROJECT_AS_COLUMN, source, old, monkeypatch)
    with sqlite3.connect(old) as conn:
        assert "project" not in {c[1] for c in conn.execute("PRAGMA table_info(ledger)")}
        head = conn.execute("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1").fetchone()

    async def check() -> None:
        store = SqliteStore(old)
        await store.open()
        try:
            report = await store.verify([(int(head[0]), bytes(head[1]).hex())])
            assert report.ok, report
            assert report.events == len(events)
            outcomes = await store.append(prepared(runs[0].events[:2]))
            assert [outcome.value for outcome, _ in outcomes] == ["duplicate", "duplicate"]
            moved = [{**event, "project": "gamma"} for event in runs[0].events[:1]]
            assert [outcome.value for outcome, _ in await store.append(prepared(moved))] == ["accepted"]
            assert (await store.verify()).ok
        finally:
            await store.close()

    asyncio.run(check())
    with sqlite3.connect(old) as conn:
        assert schema_version(conn) == SCHEMA_VERSION
        counted = dict(conn.execute("SELECT project, count(*) FROM ledger GROUP BY project").fetchall())
        assert counted == {
            "": len(runs[1].events),
            "alpha": len(runs[0].events),
            "beta": len(runs[2].events),
            "gamma": 1,
        }
        plan = " ".join(
            str(row[3])
            for row in conn.execute(
                "EXPLAIN QUERY PLAN SELECT payload_hash FROM ledger WHERE event_id = 'x' AND project = 'alpha'"
            )
        )
        assert "ledger_event_once" in plan
        triggers = " ".join(
            str(sql) for (sql,) in conn.execute("SELECT sql FROM sqlite_master WHERE tbl_name = 'ledger'")
        )
        assert "json_extract" not in triggers


def test_a_format2_ledger_keeps_its_proof_and_goes_on_in_format_3(tmp_path: Path) -> None:
    """A ledger written before format 3 keeps every entry, hash and tree node: its old head and tree verify, the
    tree it had is a prefix of the tree after new entries (a consistency proof), the entries appended are of format 3
    (their chain hash is their leaf), a purge of an old run still verifies, and proofs cover entries of both."""
    runs = [typical_run(project="alpha"), simple_run(), simple_run()]
    path = tmp_path / "format2.db"
    asyncio.run(_ingest_and_read(path, runs[0].events, runs[0].run_id))
    as_format2(path)
    with sqlite3.connect(path) as conn:
        old_head = conn.execute("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1").fetchone()
        old_rows = conn.execute("SELECT seq, entry, hash FROM ledger ORDER BY seq").fetchall()
    assert all(entry is None for _, entry, _ in old_rows)

    async def check() -> None:
        store = SqliteStore(path)
        await store.open()
        try:
            tree_before = await store.tree_head()
            assert (await store.verify([(int(old_head[0]), bytes(old_head[1]).hex())])).ok
            await store.append(prepared(runs[1].events + runs[2].events))
            report = await store.verify([(int(old_head[0]), bytes(old_head[1]).hex())])
            assert report.ok, report
            head_now, path_between = await store.consistency_proof(tree_before.size)
            assert verify_consistency(tree_before.size, head_now.size, tree_before.root, head_now.root, path_between)
            for run in runs:
                proofs = await _proven(store, run, head_now)
                assert [entry_format(p.entry) for p in proofs] == [2 if run is runs[0] else 3] * len(run.events)
            purged = await store.purge(PurgeSelection(run_ids=(runs[0].run_id,), by="test"))
            assert purged.runs == [runs[0].run_id]
            report = await store.verify()
            assert report.ok, report
            assert (report.purges, report.runs_purged) == (1, 1)
        finally:
            await store.close()

    asyncio.run(check())
    with sqlite3.connect(path) as conn:
        assert schema_version(conn) == SCHEMA_VERSION
        rows = conn.execute("SELECT seq, entry, prev_hash, hash FROM ledger ORDER BY seq").fetchall()
    assert [(seq, entry, bytes(digest)) for seq, entry, _, digest in rows[: len(old_rows)]] == [
        (seq, None, bytes(digest)) for seq, _, digest in old_rows
    ]
    assert {entry for _, entry, _, _ in rows[len(old_rows) :]} == {3}  # kept as their fields, of format 3
    first_new = rows[len(old_rows)]
    with sqlite3.connect(path) as conn:
        (row,) = conn.execute(f"SELECT {ENTRY_COLUMNS.format('')} FROM ledger WHERE seq = ?", (first_new[0],))
    assert bytes(first_new[3]) == hashlib.sha256(b"\x00" + bytes(first_new[2]) + entry_of(row)).digest()
