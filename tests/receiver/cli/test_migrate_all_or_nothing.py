"""``flowledger migrate`` into PostgreSQL is all or nothing, and never deletes what the target holds."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Final

import asyncpg
import pytest
from click.testing import CliRunner

from flowledger._wire import now_ts
from flowledger.receiver.cli._migrate import migrate_command
from flowledger.receiver.store._sqlite import SqliteStore
from flowledger.receiver.store.postgres import PostgresStore
from tests.receiver._support import simple_run
from tests.receiver.cli.test_migrate import _analytics, _ledger_with_otlp

WAIT_S: Final = 60.0
STALL_S: Final = 3
"""How long the target stalls the copy's last step: long enough to be caught there, short for a killed client."""
_STALL: Final = (
    f"CREATE FUNCTION stall() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep({STALL_S}); "
    "RETURN NULL; END $$",
    "CREATE TRIGGER stall BEFORE INSERT ON otlp_metric_points FOR EACH STATEMENT EXECUTE FUNCTION stall()",
)
"""The target made to sleep when metric points are copied into it (after the rebuild, near the copy's end)."""


async def _open_and_close(url: str) -> None:
    store = PostgresStore(url)
    await store.open()  # the schema, as a receiver makes it
    await store.close()


async def _sql(url: str, *statements: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def _counts(url: str) -> dict[str, int]:
    """The rows of every table of the database but the schema's version."""
    conn = await asyncpg.connect(url)
    try:
        tables = [r[0] for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")]
        return {t: int(await conn.fetchval(f'SELECT count(*) FROM "{t}"')) for t in tables if t != "flowledger_schema"}
    finally:
        await conn.close()


async def _wait_for(url: str, query: str, *, until: bool, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Poll ``query`` (a boolean) until it answers ``until``; fail past :data:`WAIT_S` or when ``proc`` ends."""
    conn = await asyncpg.connect(url)
    try:
        deadline = time.monotonic() + WAIT_S
        while bool(await conn.fetchval(query)) != until:
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"migrate ended first: {proc.communicate()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"waited {WAIT_S} s for {query} to be {until}")
            await asyncio.sleep(0.02)
    finally:
        await conn.close()


_ACTIVITY: Final = "SELECT count(*) > 0 FROM pg_stat_activity WHERE datname = current_database() AND "
_STALLED: Final = _ACTIVITY + "wait_event = 'PgSleep'"
"""Whether the copy's session sleeps in the stalled step."""
_OTHERS: Final = _ACTIVITY + "pid <> pg_backend_pid()"
"""Whether another session is connected to the database."""


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGKILL], ids=["sigint", "sigkill"])
def test_an_interrupted_copy_leaves_the_target_as_it_was_and_a_rerun_copies_it_whole(
    tmp_path: Path, postgres_url: str, stop: signal.Signals
) -> None:
    """Stopped after the ledger was copied and rebuilt (at its OTLP metric points), the copy leaves every table of
    the target empty (not a ledger without runs); run again, it is proven with the source's analytics."""
    source = tmp_path / "f.db"
    made = _ledger_with_otlp(source)
    asyncio.run(_open_and_close(postgres_url))
    asyncio.run(_sql(postgres_url, *_STALL))
    args = [sys.executable, "-m", "flowledger", "migrate", "--from", f"sqlite:{source}", "--to", postgres_url]
    with subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        try:
            asyncio.run(_wait_for(postgres_url, _STALLED, until=True, proc=proc))
        finally:
            proc.send_signal(stop)
            proc.communicate(timeout=WAIT_S)
    assert proc.returncode != 0
    asyncio.run(_wait_for(postgres_url, _OTHERS, until=False))  # the copy's session gone (its transaction too)
    held = asyncio.run(_counts(postgres_url))
    assert {t: n for t, n in held.items() if n} == {}
    asyncio.run(_sql(postgres_url, "DROP TRIGGER stall ON otlp_metric_points"))
    again = CliRunner().invoke(migrate_command, ["--from", f"sqlite:{source}", "--to", postgres_url, "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.output)["proven"] is True
    kept = made["kept"].run_id
    on_sqlite = asyncio.run(_analytics(SqliteStore(source, readonly=True), made["trace_id"], kept))
    on_postgres = asyncio.run(_analytics(PostgresStore(postgres_url, readonly=True), made["trace_id"], kept))
    assert on_postgres == on_sqlite


@pytest.mark.slow
def test_a_copy_that_fails_after_the_rebuild_keeps_nothing(tmp_path: Path, postgres_url: str) -> None:
    """A target that fails the copy's last step (the OTLP log lines) is left empty, the failure a one-line error."""
    source = tmp_path / "f.db"
    _ledger_with_otlp(source)
    asyncio.run(_open_and_close(postgres_url))
    asyncio.run(
        _sql(
            postgres_url,
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE 'no lines here'; END $$",
            "CREATE TRIGGER refuse BEFORE INSERT ON logs FOR EACH ROW WHEN (NEW.source = 'otlp') "
            "EXECUTE FUNCTION refuse()",
        )
    )
    result = CliRunner().invoke(migrate_command, ["--from", f"sqlite:{source}", "--to", postgres_url])
    assert result.exit_code == 1, result.output
    assert "nothing of it was kept" in result.output
    assert "no lines here" in result.output
    held = asyncio.run(_counts(postgres_url))
    assert {t: n for t, n in held.items() if n} == {}


async def _otlp_only(url: str) -> None:
    """Spans, OTLP log records and metric points in ``url``, and no ledger."""
    from flowledger.receiver.otlp._logs import logs_from_request
    from flowledger.receiver.otlp._metrics import points_from_request
    from tests.receiver.store.conformance.test_conformance import _span
    from tests.receiver.store.conformance.test_otlp import _gauge_request, _logs_request

    run = simple_run()
    store = PostgresStore(url)
    await store.open()
    try:
        await store.store_spans([_span(run, "ab" * 8, parent=None, name="fetch", start_ns=1_000)])
        records = logs_from_request(_logs_request(run.trace_id, ["ab" * 8]), project=None, received_at=now_ts()).rows
        await store.store_logs(records, max_records=100)
        points = points_from_request(_gauge_request([("a", 1), ("a", 2), ("b", 1)]), project=None).rows
        await store.store_metric_points(points, max_series=10, max_points=100)
    finally:
        await store.close()


@pytest.mark.slow
def test_a_target_holding_otlp_data_without_a_ledger_is_refused_and_kept(tmp_path: Path, postgres_url: str) -> None:
    """Spans, OTLP records and metrics in the target stop the copy (exit 2, the rows per table named); none is
    deleted, and nothing is copied."""
    source = tmp_path / "f.db"
    _ledger_with_otlp(source)
    asyncio.run(_otlp_only(postgres_url))
    before = asyncio.run(_counts(postgres_url))
    assert (before["spans"], before["otlp_logs"], before["otlp_metric_points"]) == (1, 1, 3)
    result = CliRunner().invoke(migrate_command, ["--from", f"sqlite:{source}", "--to", postgres_url])
    assert result.exit_code == 2, result.output
    assert "is not empty" in result.output
    for held in ("spans 1", "otlp_logs 1", "otlp_metric_series 2", "otlp_metric_points 3"):
        assert held in result.output
    assert "deletes nothing" in result.output
    assert asyncio.run(_counts(postgres_url)) == before


def test_the_emptiness_check_covers_every_table_of_the_schema(postgres_url: str) -> None:
    """Every table a receiver makes (but the schema's version) is one the copy writes and checks empty first."""
    from flowledger.receiver.store.postgres._copy import WRITTEN

    asyncio.run(_open_and_close(postgres_url))
    assert len(set(WRITTEN)) == len(WRITTEN)
    assert set(asyncio.run(_counts(postgres_url))) == set(WRITTEN)
