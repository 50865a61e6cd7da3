"""Purging on SQLite: the erased bytes are gone from the file, and the file shrinks after a large purge."""

from __future__ import annotations

import asyncio
import json
import secrets
import sqlite3
from contextlib import closing
from pathlib import Path

from flowledger.receiver.store._protocol import PurgeSelection
from flowledger.receiver.store._spans import SpanRow
from flowledger.receiver.store._sqlite import SqliteStore
from tests.receiver._support import RunEvents, simple_run, typical_run
from tests.receiver.store.conformance.conftest import prepared


def _file_bytes(path: Path) -> bytes:
    """The database file and whatever journal is left beside it."""
    out = path.read_bytes()
    for suffix in ("-wal", "-journal"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            out += side.read_bytes()
    return out


def _marked_run(marker: str) -> RunEvents:
    """A failed run whose trigger data, node inputs, outputs, error message and stack all carry ``marker``."""
    run = typical_run()
    text = json.dumps(run.events).replace("price broke", f"price broke {marker}").replace("Traceback", marker)
    run.events = json.loads(text)
    run.events[0]["data"]["trigger_data"] = {"order": marker}
    return run


def _span(run: RunEvents, marker: str) -> SpanRow:
    return SpanRow(
        trace_id=run.trace_id,
        span_id=secrets.token_hex(8),
        parent_span_id=None,
        name="root",
        kind=1,
        start_ns=1,
        end_ns=2,
        status_code=0,
        status_message=None,
        service_name="svc",
        scope_name=None,
        scope_version=None,
        attributes=json.dumps({"secret": marker}),
        resource="{}",
        events="[]",
        links="[]",
        project=None,
        received_at="2026-01-01T00:00:00.000000Z",
    )


def test_purged_bytes_are_not_in_the_file(tmp_path: Path) -> None:
    """After a purge, no copy of the run's payloads, error text or span attributes is left in the file."""
    path = tmp_path / "purge.db"
    marker = "MARKER-" + secrets.token_hex(12)
    kept_marker = "KEPT-" + secrets.token_hex(12)
    gone, kept = _marked_run(marker), _marked_run(kept_marker)

    async def fill() -> None:
        store = SqliteStore(path)
        await store.open()
        await store.append(prepared(gone.events + kept.events))
        await store.store_spans([_span(gone, marker), _span(kept, kept_marker)])
        await store.rebuild()  # old versions of rows rewritten, as a long-lived receiver would
        await store.close()

    async def purge() -> None:
        store = SqliteStore(path)
        await store.open()
        report = await store.purge(PurgeSelection(run_ids=(gone.run_id,), by="test"))
        assert report.runs == [gone.run_id]
        assert (await store.verify()).ok
        await store.close()

    asyncio.run(fill())
    assert marker.encode() in _file_bytes(path)
    asyncio.run(purge())
    data = _file_bytes(path)
    assert marker.encode() not in data
    assert kept_marker.encode() in data


def test_the_file_shrinks_after_a_large_purge(tmp_path: Path) -> None:
    """Purging most runs hands their pages back: the file is much smaller afterwards."""
    path = tmp_path / "shrink.db"
    runs = []
    for _ in range(200):
        run = RunEvents(workflow_id="big").start(trigger_data={"blob": secrets.token_hex(5_000)})
        runs.append(run.node("fetch").finish())

    async def fill() -> None:
        store = SqliteStore(path)
        await store.open()
        await store.append(prepared([e for run in runs for e in run.events]))
        await store.close()

    async def purge() -> int:
        store = SqliteStore(path)
        await store.open()
        report = await store.purge(PurgeSelection(workflow_id="big", by="test"))
        await store.close()
        return len(report.runs)

    asyncio.run(fill())
    before = path.stat().st_size
    assert asyncio.run(purge()) == 200
    after = path.stat().st_size
    # Error groups and statistics outlive purges by design: their pages are not the purged runs'.
    with closing(sqlite3.connect(path)) as conn:
        (kept,) = conn.execute(
            "SELECT coalesce(sum(pgsize), 0) FROM dbstat WHERE name IN "
            "(SELECT name FROM sqlite_master WHERE tbl_name IN "
            "('stats_rollup', 'stats_hist', 'stats_total', 'error_groups'))"
        ).fetchone()
    assert after - kept < before / 4, (before, after, kept)


def test_purge_keeps_the_run_counts_right(tmp_path: Path) -> None:
    """run_counts (kept by triggers on runs) still equals a count over the runs left after purges, and verify passes."""
    import sqlite3

    path = tmp_path / "counts.db"
    runs = [(typical_run if i % 2 else simple_run)(workflow_id=f"w{i % 3}", project=f"p{i % 2}") for i in range(9)]
    runs += [RunEvents(workflow_id="w0").start(), RunEvents(workflow_id="w1").start().finish("failed")]

    async def work() -> None:
        store = SqliteStore(path)
        await store.open()
        await store.append(prepared([e for run in runs for e in run.events]))
        assert (await store.purge(PurgeSelection(run_ids=(runs[0].run_id, runs[-1].run_id), by="test"))).runs
        assert (await store.purge(PurgeSelection(workflow_id="w1", keep_newest=1, by="test"))).runs
        await store.rebuild()
        assert (await store.purge(PurgeSelection(workflow_id="w2", by="test"))).runs
        assert (await store.verify()).ok
        await store.close()

    asyncio.run(work())
    key = "coalesce(workflow_id, ''), status, coalesce(trigger_type, ''), coalesce(dry_run, -1), coalesce(project, '')"
    counted_sql = (
        f"SELECT {key}, count(*), sum(CAST(cost_usd AS INTEGER)), "
        "sum(CAST(round((cost_usd - CAST(cost_usd AS INTEGER)) * 1e9) AS INTEGER)) FROM runs GROUP BY 1, 2, 3, 4, 5"
        " ORDER BY 1, 2, 3, 4, 5"
    )
    with sqlite3.connect(path) as conn:
        counted = [(*row[:6], row[6] or 0, row[7] or 0) for row in conn.execute(counted_sql)]
        assert counted  # runs are left to count
        assert conn.execute("SELECT * FROM run_counts WHERE runs > 0 ORDER BY 1, 2, 3, 4, 5").fetchall() == counted
        assert conn.execute("SELECT count(*) FROM run_counts WHERE runs < 0").fetchone()[0] == 0
