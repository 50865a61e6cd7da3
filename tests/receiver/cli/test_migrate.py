"""``flowledger migrate``: a ledger copied between SQLite and PostgreSQL row for row, rebuilt there, and proven."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sqlite3
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from click.testing import CliRunner

from flowledger._wire import now_ts
from flowledger.receiver.cli._commands import verify_command
from flowledger.receiver.cli._migrate import migrate_command, sqlite_path
from flowledger.receiver.store._custom_metrics import CustomMetricQuery
from flowledger.receiver.store._entry import ENTRY_FORMAT
from flowledger.receiver.store._error_groups import ErrorGroupQuery
from flowledger.receiver.store._protocol import DailyTotal, PurgeSelection, RunQuery, Store
from flowledger.receiver.store._sqlite import SqliteStore
from flowledger.receiver.store._stats import Bucket, StatsBy, StatsQuery
from flowledger.receiver.store.postgres import PostgresStore
from tests.receiver._support import simple_run, typical_run
from tests.receiver.store._format1 import format1_ledger
from tests.receiver.store._rewrite import as_format2
from tests.receiver.store.conformance.conftest import prepared


def _sqlite_ledger(path: Path, *, purge: bool) -> list[str]:
    """A SQLite ledger of a few runs (one purged when ``purge``); returns the run ids kept."""
    runs = [typical_run(), *(simple_run() for _ in range(20))]

    async def main() -> None:
        store = SqliteStore(path)
        await store.open()
        try:
            await store.append(prepared([e for run in runs for e in run.events]))
            if purge:
                await store.purge(PurgeSelection(run_ids=(runs[1].run_id,), by="test"))
        finally:
            await store.close()

    asyncio.run(main())
    return [run.run_id for run in runs if not (purge and run is runs[1])]


async def _everything(store: Store) -> tuple[list[dict[str, Any]], list[DailyTotal]]:
    await store.open()
    try:
        return [run async for run in store.iter_runs(RunQuery(), with_nodes=True)], await store.daily_totals()
    finally:
        await store.close()


def test_sqlite_paths_are_read_in_each_spelling() -> None:
    """--from takes sqlite:PATH, sqlite:///PATH and a plain path."""
    assert sqlite_path("sqlite:data/f.db") == Path("data/f.db")
    assert sqlite_path("sqlite:///tmp/f.db") == Path("/tmp/f.db")
    assert sqlite_path("f.db") == Path("f.db")


@pytest.mark.slow
def test_migrate_copies_the_chain_and_proves_it(tmp_path: Path, postgres_url: str) -> None:
    """Same head and root, both verified, a purge entry kept, and the same runs and attempts on both engines."""
    source = tmp_path / "f.db"
    kept = _sqlite_ledger(source, purge=True)
    result = CliRunner().invoke(migrate_command, ["--from", f"sqlite:{source}", "--to", postgres_url, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["proven"] is True
    assert report["source"]["head_hash"] == report["target"]["head_hash"]
    assert report["source"]["tree_root"] == report["target"]["tree_root"]
    assert report["runs"] == len(kept)
    on_sqlite = asyncio.run(_everything(SqliteStore(source, readonly=True)))
    on_postgres = asyncio.run(_everything(PostgresStore(postgres_url, readonly=True)))
    assert on_postgres[0] == on_sqlite[0]
    for pg_total, sqlite_total in zip(on_postgres[1], on_sqlite[1], strict=True):  # purged runs' figures too
        # Sums of floats may be added in another order by each engine: equal to the last few bits.
        assert dataclasses.astuple(pg_total) == pytest.approx(dataclasses.astuple(sqlite_total))
    assert {run["run_id"] for run in on_postgres[0]} == set(kept)
    assert sum(total.runs for total in on_postgres[1]) == len(kept) + 1
    again = CliRunner().invoke(migrate_command, ["--from", str(source), "--to", postgres_url])
    assert again.exit_code == 2  # the target given holds a ledger: a usage error
    assert "already holds a ledger" in again.output


def test_a_source_that_does_not_verify_is_not_copied(tmp_path: Path, postgres_url: str) -> None:
    """An edited source ledger stops the migration with the entry that breaks it; nothing is copied."""
    source = tmp_path / "f.db"
    _sqlite_ledger(source, purge=False)
    conn = sqlite3.connect(source)
    conn.execute("DROP TRIGGER payloads_no_update")
    conn.execute("UPDATE payloads SET body = replace(body, 'order-intake', 'order-intakE') WHERE seq = 1")
    conn.commit()
    conn.close()
    result = CliRunner().invoke(migrate_command, ["--from", f"sqlite:{source}", "--to", postgres_url])
    assert result.exit_code == 1
    assert "does not verify at entry 1" in result.output

    async def size() -> int:
        store = PostgresStore(postgres_url)
        await store.open()
        try:
            return await store.ledger_size()
        finally:
            await store.close()

    assert asyncio.run(size()) == 0


def test_bad_arguments_are_usage_errors_without_the_password(tmp_path: Path) -> None:
    """A missing source, a malformed target, or both ends on one engine exits 2 naming the option."""
    missing = CliRunner().invoke(migrate_command, ["--from", "sqlite:nope.db", "--to", "postgresql://u@h/db"])
    assert missing.exit_code == 2
    assert "no database at nope.db" in missing.output
    source = tmp_path / "f.db"
    source.touch()
    bad = CliRunner().invoke(migrate_command, ["--from", str(source), "--to", "postgresql://u:s3cret@h/"])
    assert bad.exit_code == 2
    assert "--to" in bad.output
    assert "s3cret" not in bad.output
    same = CliRunner().invoke(migrate_command, ["--from", "postgresql://u@h/db", "--to", "postgresql://u@h/db"])
    assert same.exit_code == 2
    assert "copies between engines" in same.output
    files = CliRunner().invoke(migrate_command, ["--from", str(source), "--to", f"sqlite:{tmp_path / 'b.db'}"])
    assert files.exit_code == 2
    bad_source = CliRunner().invoke(migrate_command, ["--from", "postgresql://u:s3cret@h/", "--to", "b.db"])
    assert bad_source.exit_code == 2
    assert "--from" in bad_source.output
    assert "s3cret" not in bad_source.output
    for given, said in (("sqlite:", "name the SQLite file"), ("sqlite://", "name the SQLite file"),
                        (f"sqlite:{tmp_path}", "is a folder, not a SQLite file")):  # fmt: skip
        pg = "postgresql://u@h/db"
        for args in (["--from", given, "--to", pg], ["--from", pg, "--to", given]):
            nameless = CliRunner().invoke(migrate_command, args)
            assert nameless.exit_code == 2, (args, nameless.output)  # was "`.` is not a flowledger database"
            assert said in nameless.output, (args, nameless.output)


def _ledger_with_otlp(path: Path) -> dict[str, Any]:
    """A SQLite ledger with failing runs (one purged), a run's spans, OTLP log records (one linked beside the
    run's lines, one not) and metric points; returns what to look for."""
    from flowledger.receiver.otlp._logs import logs_from_request
    from flowledger.receiver.otlp._metrics import points_from_request
    from tests.receiver.store.conformance.test_conformance import _span
    from tests.receiver.store.conformance.test_otlp import _gauge_request, _logs_request

    failing = [typical_run() for _ in range(3)]
    for run in (failing[0], failing[2]):  # the purged run's metric totals outlive it
        finished = next(e for e in run.events if e["kind"] == "node_finished")
        metric = {"name": "cache_hit", "labels": {"tier": "a"}, "count": 2, "sum": 3.0, "min": 1.0, "max": 2.0}
        finished["data"] |= {"workflow_id": run.workflow_id, "metrics": [metric | {"value": 2.0}]}
    shared = [{**e, "run_id": failing[1].run_id} for e in typical_run(project="beta").events]  # another project's
    kept = simple_run()
    node_span = next(e["data"]["span_id"] for e in kept.events if e["kind"] == "node_started")

    async def main() -> None:
        store = SqliteStore(path)
        await store.open()
        try:
            await store.append(prepared([e for run in [*failing, kept] for e in run.events]))
            await store.append(prepared(shared))
            await store.purge(PurgeSelection(run_ids=(failing[0].run_id,), by="test"))
            await store.store_spans([_span(kept, node_span, parent=None, name="fetch", start_ns=1_000)])
            records = logs_from_request(
                _logs_request(kept.trace_id, [node_span, "0f" * 8]), project=None, received_at=now_ts()
            ).rows
            await store.store_logs(records, max_records=100)
            points = points_from_request(_gauge_request([("a", 1), ("a", 2), ("b", 1)]), project=None).rows
            await store.store_metric_points(points, max_series=10, max_points=100)
        finally:
            await store.close()

    asyncio.run(main())
    return {"kept": kept, "trace_id": kept.trace_id, "purged": failing[0].run_id, "shared": failing[1].run_id}


async def _analytics(store: Store, trace_id: str, kept: str) -> dict[str, Any]:
    await store.open()
    try:
        get = await store.get_run(kept)
        return {
            "errors": await store.error_groups(ErrorGroupQuery()),
            "metrics": await store.custom_metrics(CustomMetricQuery()),
            "stats": [await store.run_stats(StatsQuery(by=by, bucket=Bucket.DAY)) for by in StatsBy],
            "spans": (await store.get_trace(trace_id))[0],
            "records": await store.otlp_logs(trace_id=trace_id, project=None, limit=10),
            "series": await store.metric_series(name="depth", project=None, max_series=10, max_points=10),
            "lines": None if get is None else [(line["message"], line["source"]) for line in get["nodes"][0]["logs"]],
            "found": [r["run_id"] for r in (await store.list_runs(RunQuery(search="line"))).runs],
            "beta": (
                await store.error_groups(ErrorGroupQuery(project="beta")),
                await store.run_stats(StatsQuery(by=StatsBy.NODE, project="beta")),
                [(r["run_id"], r["project"]) for r in (await store.list_runs(RunQuery(search="broke"))).runs],
            ),
        }
    finally:
        await store.close()


@pytest.mark.slow
def test_migrate_copies_what_outlives_purges_and_what_lives_beside_the_ledger(
    tmp_path: Path, postgres_url: str
) -> None:
    """Error groups and statistics (a purged run's share included, another project's run of one of the ids apart),
    spans, OTLP log records and the lines they were linked to (searchable), metric series and points: the same on
    PostgreSQL after the copy."""
    source = tmp_path / "f.db"
    made = _ledger_with_otlp(source)
    result = CliRunner().invoke(migrate_command, ["--from", f"sqlite:{source}", "--to", postgres_url, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["rows"]["otlp_logs"] == 2
    kept = made["kept"].run_id
    on_sqlite = asyncio.run(_analytics(SqliteStore(source, readonly=True), made["trace_id"], kept))
    on_postgres = asyncio.run(_analytics(PostgresStore(postgres_url, readonly=True), made["trace_id"], kept))
    assert on_sqlite["errors"][0]["count"] == 4  # the purged run's failure counts, and beta's (read for all projects)
    assert sum(row["count"] for row in on_sqlite["metrics"]) == 4  # the purged run's metric too
    assert sum(g["runs"] for g in on_sqlite["stats"][0]) == 5  # beta's run of one of their ids is a run too
    [beta_group] = on_sqlite["beta"][0]
    assert (beta_group["count"], beta_group["sample_run_ids"]) == (1, [made["shared"]])
    assert {found for found in on_sqlite["beta"][2] if found[0] == made["shared"]} == {
        (made["shared"], None),
        (made["shared"], "beta"),
    }
    assert on_sqlite["lines"] == [("line 0", "otlp")]
    assert on_sqlite["found"] == [kept]
    assert len(on_sqlite["spans"]) == 1
    assert {s["attributes"]["queue"]: len(s["points"]) for s in on_sqlite["series"]} == {"a": 2, "b": 1}
    assert on_postgres == on_sqlite


def _converted_ledger(path: Path) -> list[str]:
    """A format-1 ledger converted by opening it, then extended and with its last old run purged; returns the
    format-1 heads (SEQ:HASH after each old row) and, last, the head after the new events."""
    heads = format1_ledger(path)
    with sqlite3.connect(path) as conn:
        last_old_run = str(conn.execute("SELECT run_id FROM ledger WHERE seq = 23").fetchone()[0])

    async def main() -> str:
        store = SqliteStore(path)  # opening it converts it to the current format
        await store.open()
        try:
            await store.append(prepared(simple_run().events))
            await store.rebuild()  # a format-1 file has no projections: fold them, so the old run can be purged
            purged = await store.purge(PurgeSelection(run_ids=(last_old_run,), by="test"))
            assert purged.runs == [last_old_run]
            seq, digest = store.head
            return f"{seq}:{digest}"
        finally:
            await store.close()

    return [*heads, asyncio.run(main())]


def _verify(db: str, *checkpoints: str) -> Any:
    args = ["--db", db, "--json", *(arg for c in checkpoints for arg in ("--checkpoint", c))]
    return CliRunner().invoke(verify_command, args)


async def _sql(url: str, *statements: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


@pytest.mark.slow
def test_a_ledger_converted_from_format1_is_copied_and_verifies_as_on_sqlite(tmp_path: Path, postgres_url: str) -> None:
    """A converted ledger (a purge after the conversion included) is copied and proven; verify passes on both engines
    with checkpoints from before and after the conversion; an edited format-1 hash or origin fails on PostgreSQL
    naming the row."""
    source = tmp_path / "f.db"
    heads = _converted_ledger(source)
    result = CliRunner().invoke(migrate_command, ["--from", f"sqlite:{source}", "--to", postgres_url, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["proven"] is True
    assert (report["rows"]["ledger_origin"], report["rows"]["ledger_v1"]) == (1, 23)
    checkpoints = (heads[4], heads[22], heads[-1])  # format-1 hashes of rows 5 and 23 (purged since), a new head
    answers = [_verify(db, *checkpoints) for db in (str(source), postgres_url)]
    assert [a.exit_code for a in answers] == [0, 0], [a.output for a in answers]
    on_sqlite, on_postgres = (json.loads(a.output) for a in answers)
    assert on_postgres == on_sqlite
    assert (on_postgres["events"], on_postgres["purges"]) == (23 + len(simple_run().events) + 1, 1)
    forged = _verify(postgres_url, heads[4][:-4] + "0000")
    assert forged.exit_code == 1
    assert json.loads(forged.output)["first_bad_seq"] == 5

    with sqlite3.connect(source) as conn:
        event_5 = conn.execute("SELECT event_id FROM ledger WHERE seq = 5").fetchone()[0]
    asyncio.run(
        _sql(
            postgres_url,
            "DROP TRIGGER ledger_v1_no_update ON ledger_v1",
            "UPDATE ledger_v1 SET hash = sha256(hash) WHERE seq = 5",
        )
    )
    edited = _verify(postgres_url)
    assert edited.exit_code == 1
    found = json.loads(edited.output)
    assert (found["first_bad_seq"], found["first_bad_event_id"]) == (5, event_5)
    assert "format-1 hash" in found["problem"]
    assert _verify(str(source)).exit_code == 0  # the source is untouched


@pytest.mark.slow
def test_an_edited_origin_of_a_converted_ledger_fails_on_postgres(tmp_path: Path, postgres_url: str) -> None:
    """The recorded format-1 head binds the copied chain: edited on PostgreSQL, verify fails at the first row."""
    source = tmp_path / "f.db"
    _converted_ledger(source)
    assert CliRunner().invoke(migrate_command, ["--from", str(source), "--to", postgres_url]).exit_code == 0
    asyncio.run(_sql(postgres_url, "UPDATE ledger_origin SET v1_head_hash = sha256(v1_head_hash)"))
    edited = _verify(postgres_url)
    assert edited.exit_code == 1
    found = json.loads(edited.output)
    assert found["first_bad_seq"] == 1
    assert "prev_hash" in found["problem"]


@pytest.mark.slow
def test_migrate_back_from_postgres_gives_the_same_ledger_and_answers(tmp_path: Path, postgres_url: str) -> None:
    """SQLite -> PostgreSQL -> a new SQLite file: proven each way, the same head and root three times over, and the
    same runs, analytics, spans, OTLP records and lines, statistics (a purged run's share included) on the copy;
    a converted ledger's format-1 checkpoints still check on it; a target holding a ledger is refused."""
    source, back = tmp_path / "f.db", tmp_path / "back.db"
    made = _ledger_with_otlp(source)
    there = CliRunner().invoke(migrate_command, ["--from", f"sqlite:{source}", "--to", postgres_url, "--json"])
    assert there.exit_code == 0, there.output
    result = CliRunner().invoke(migrate_command, ["--from", postgres_url, "--to", f"sqlite:{back}", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["proven"] is True
    assert report["target"]["head_hash"] == json.loads(there.output)["source"]["head_hash"]
    assert report["target"]["tree_root"] == json.loads(there.output)["source"]["tree_root"]
    assert report["rows"]["otlp_logs"] == 2
    kept = made["kept"].run_id
    original = asyncio.run(_analytics(SqliteStore(source, readonly=True), made["trace_id"], kept))
    returned = asyncio.run(_analytics(SqliteStore(back, readonly=True), made["trace_id"], kept))
    assert returned == original
    runs_before = asyncio.run(_everything(SqliteStore(source, readonly=True)))
    runs_after = asyncio.run(_everything(SqliteStore(back, readonly=True)))
    assert runs_after[0] == runs_before[0]
    for after, before in zip(runs_after[1], runs_before[1], strict=True):
        assert dataclasses.astuple(after) == pytest.approx(dataclasses.astuple(before))
    assert _verify(str(back)).exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("back")) == ["back.db"]
    again = CliRunner().invoke(migrate_command, ["--from", postgres_url, "--to", str(back)])
    assert again.exit_code == 2
    assert "exists; migrate writes a new file" in again.output


@pytest.mark.slow
def test_a_converted_ledger_comes_back_from_postgres_with_its_format1_checkpoints(
    tmp_path: Path, postgres_url: str
) -> None:
    """A ledger converted from format 1 keeps its origin and format-1 hashes through PostgreSQL and back."""
    source, back = tmp_path / "f.db", tmp_path / "back.db"
    heads = _converted_ledger(source)
    assert CliRunner().invoke(migrate_command, ["--from", str(source), "--to", postgres_url]).exit_code == 0
    result = CliRunner().invoke(migrate_command, ["--from", postgres_url, "--to", str(back), "--json"])
    assert result.exit_code == 0, result.output
    assert (json.loads(result.output)["rows"]["ledger_origin"], json.loads(result.output)["rows"]["ledger_v1"]) == (
        1,
        23,
    )
    checkpoints = (heads[4], heads[22], heads[-1])
    answers = [_verify(db, *checkpoints) for db in (str(source), str(back))]
    assert [a.exit_code for a in answers] == [0, 0], [a.output for a in answers]
    assert json.loads(answers[1].output) == json.loads(answers[0].output)


@pytest.mark.slow
def test_a_ledger_made_on_postgres_is_copied_to_sqlite(tmp_path: Path, postgres_url: str) -> None:
    """A ledger written by PostgreSQL receivers (runs of two projects, a purge) comes to a new SQLite file proven,
    with the same runs; its project column matches the entries (verify checks it)."""
    runs = [typical_run(), typical_run(project="beta"), *(simple_run() for _ in range(5))]

    async def fill() -> None:
        store = PostgresStore(postgres_url)
        await store.open()
        try:
            await store.append(prepared([e for run in runs for e in run.events]))
            await store.purge(PurgeSelection(run_ids=(runs[2].run_id,), by="test"))
        finally:
            await store.close()

    asyncio.run(fill())
    back = tmp_path / "back.db"
    result = CliRunner().invoke(migrate_command, ["--from", postgres_url, "--to", str(back), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["proven"] is True
    on_postgres = asyncio.run(_everything(PostgresStore(postgres_url, readonly=True)))
    on_sqlite = asyncio.run(_everything(SqliteStore(back, readonly=True)))
    assert on_sqlite[0] == on_postgres[0]
    assert {(r["run_id"], r["project"]) for r in on_sqlite[0]} == {
        (run.run_id, "beta" if run is runs[1] else None) for run in runs if run is not runs[2]
    }
    verified = _verify(str(back))
    assert verified.exit_code == 0, verified.output
    assert json.loads(verified.output)["purges"] == 1


@pytest.mark.slow
def test_a_copy_back_that_fails_leaves_no_file(tmp_path: Path, postgres_url: str) -> None:
    """A source that does not verify is not copied back, and no file (nor a partial one) is left."""
    runs = [typical_run(), simple_run()]

    async def fill() -> None:
        store = PostgresStore(postgres_url)
        await store.open()
        try:
            await store.append(prepared([e for run in runs for e in run.events]))
        finally:
            await store.close()

    asyncio.run(fill())
    asyncio.run(
        _sql(
            postgres_url,
            "DROP TRIGGER payloads_no_update ON payloads",
            "UPDATE payloads SET body = replace(body, 'order-intake', 'order-intakE') WHERE seq = 1",
        )
    )
    result = CliRunner().invoke(migrate_command, ["--from", postgres_url, "--to", str(tmp_path / "back.db")])
    assert result.exit_code == 1
    assert "does not verify at entry 1" in result.output
    assert list(tmp_path.iterdir()) == []


def test_an_entry_that_hashed_a_float_producer_seq_keeps_its_bytes_on_the_way_to_sqlite() -> None:
    """A PostgreSQL entry made when ``1e16`` was hashed as the float keeps its bytes in SQLite, whose INTEGER column
    would make it 10**16 and rebuild other bytes; an entry with an integer is kept as its fields."""
    from flowledger.receiver.store._entry import ENTRY_FORMAT, entry_bytes, entry_hash, payload_hash
    from flowledger.receiver.store.postgres._copy import _as_sqlite_ledger

    rows: list[tuple[Any, ...]] = []
    producer_seqs: tuple[Any, ...] = (1e16, 7)  # the float, as an older receiver passed it on
    for seq, producer_seq in enumerate(producer_seqs, start=1):
        digest = payload_hash(b"{}")
        fields: dict[str, Any] = {
            "event_id": f"e{seq}",
            "run_id": "r",
            "kind": "node_finished",
            "ts": "2026-01-01T00:00:00.000000Z",
        }
        entry = entry_bytes(
            seq=seq, project=None, producer_id="p", producer_seq=producer_seq, payload_sha256=digest, **fields
        )
        rows.append((seq, *fields.values(), "2026-01-01T00:00:01.000000Z", entry, digest, b"", entry_hash(b"", entry)))
    converted = _as_sqlite_ledger(rows)
    assert b'"producer_seq":1e+16' in bytes(rows[0][6])
    assert converted[0][6] == rows[0][6]  # kept: SQLite could not give these bytes back
    assert converted[1][6] == ENTRY_FORMAT  # the fields make the entry, of this format
    assert converted[1][-3:] == ("", "p", 7)


def test_a_format2_ledger_goes_to_postgres_and_back_with_both_formats(tmp_path: Path, postgres_url: str) -> None:
    """A SQLite ledger of format-2 entries and the format-3 entries after them is copied to PostgreSQL and back:
    proven each way, the same head and root, each entry of its own format, kept as its fields on the way back."""
    source, back = tmp_path / "mixed.db", tmp_path / "back.db"
    old, new = typical_run(), simple_run()

    async def append(events: list[dict[str, Any]]) -> None:
        store = SqliteStore(source)
        await store.open()
        try:
            await store.append(prepared(events))
        finally:
            await store.close()

    asyncio.run(append(old.events))
    as_format2(source)
    asyncio.run(append(new.events))
    there = CliRunner().invoke(migrate_command, ["--from", f"sqlite:{source}", "--to", postgres_url, "--json"])
    assert there.exit_code == 0, there.output
    assert json.loads(there.output)["proven"] is True
    result = CliRunner().invoke(migrate_command, ["--from", postgres_url, "--to", f"sqlite:{back}", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["proven"] is True
    assert report["target"]["tree_root"] == json.loads(there.output)["source"]["tree_root"]
    with sqlite3.connect(back) as conn:
        kept = [row[0] for row in conn.execute("SELECT entry FROM ledger ORDER BY seq")]
    assert kept == [None] * len(old.events) + [ENTRY_FORMAT] * len(new.events)
